"""priors.sae adapters: SAELens (`PriorTrainingSAE`, `train_saelens`) and the
dictionary_learning trainer protocol (`PriorTrainer`), checked against the installed SAELens.

The one test that runs dictionary_learning's own ``trainSAE`` skips unless that package imports
(it is not in the ``sae`` extra: its PyPI release pins nnsight 0.3, which pulls another torch),
so it skips in CI.
"""

import importlib
import json

import pytest
import torch

sae_lens = pytest.importorskip("sae_lens")

from sae_lens import JumpReLUTrainingSAEConfig, StandardTrainingSAEConfig  # noqa: E402
from sae_lens.saes.sae import TrainStepInput  # noqa: E402

import priors  # noqa: E402
from priors.sae import SparsityPenalty, l0_penalty  # noqa: E402
from priors.sae.dictionary_learning import PriorAutoEncoder, PriorTrainer  # noqa: E402
from priors.sae.saelens import (  # noqa: E402
    PriorTrainingSAE,
    PriorTrainingSAEConfig,
    build_training_sae,
    train_saelens,
)

L0 = l0_penalty()  # 1[a ≠ 0]


def val(t):
    return float(t.detach())


def laplace():
    return priors.get("laplace", b=1)


def step_input(x, coefficients):
    return TrainStepInput(sae_in=x, coefficients=coefficients, dead_neuron_mask=None,
                          n_training_steps=0, is_logging_step=False)  # fmt: skip


def sparse_data(n=2048, d_in=16, m=24, pi=0.08, seed=0):
    """x = s D: m unit directions, each active with probability pi, exponential magnitudes."""
    g = torch.Generator().manual_seed(seed)
    D = torch.nn.functional.normalize(torch.randn(m, d_in, generator=g), dim=1)
    on = torch.rand(n, m, generator=g) < pi
    mag = -torch.log(torch.rand(n, m, generator=g))
    return (on * mag) @ D


def standard_and_prior_saes(c, d_in=8, d_sae=16):
    """SAELens' L1 SAE and the derived-L1 SAE with the same weights (decoder rows not unit)."""
    ref = build_training_sae(StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=c),
                             seed=0)  # fmt: skip
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        ref.W_enc.mul_(10.0)  # SAELens initialises at norm 0.1: make latents O(1)
        ref.W_dec.mul_(0.5 + 2 * torch.rand(d_sae, 1, generator=g))
        ref.b_enc.copy_(0.1 * torch.randn(d_sae, generator=g))
        ref.b_dec.copy_(0.1 * torch.randn(d_in, generator=g))
    cfg = PriorTrainingSAEConfig(d_in=d_in, d_sae=d_sae, prior=laplace(), coefficient=c,
                                 activation="relu", decoder_norm=True)  # fmt: skip
    ours = build_training_sae(cfg, seed=5)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def test_derived_l1_equals_saelens_l1(one_thread):
    """TARGET: on the same weights and input, the Laplace(b=1) penalty with decoder norms gives
    SAELens' StandardTrainingSAE l1_loss (and the same MSE and gradients) to 1e-6."""
    c = 0.37
    ref, ours = standard_and_prior_saes(c)
    x = torch.randn(128, 8, generator=torch.Generator().manual_seed(2))
    out_ref = ref.training_forward_pass(step_input(x, {"l1": c}))
    out = ours.training_forward_pass(step_input(x, {"prior": c}))
    l1_ref = out_ref.losses["l1_loss"]
    assert val(l1_ref) > 0.1  # latents are active, so the comparison is not 0 == 0
    derived = SparsityPenalty(laplace(), coefficient=c, decoder_norm=True)
    direct = derived(out_ref.feature_acts, ref.W_dec)
    assert abs(val(direct - l1_ref)) <= 1e-6
    assert abs(val(out.losses["prior_loss"] - l1_ref)) <= 1e-6
    assert abs(val(out.losses["mse_loss"] - out_ref.losses["mse_loss"])) <= 1e-6
    out_ref.loss.backward()
    out.loss.backward()
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        torch.testing.assert_close(getattr(ours, name).grad, getattr(ref, name).grad,
                                   rtol=0, atol=1e-6)  # fmt: skip


def test_derived_l1_differs_without_decoder_norm(one_thread):
    """The comparison above can fail: without decoder norms the derived loss differs."""
    ref, _ = standard_and_prior_saes(0.37)
    x = torch.randn(128, 8, generator=torch.Generator().manual_seed(2))
    out_ref = ref.training_forward_pass(step_input(x, {"l1": 0.37}))
    plain = SparsityPenalty(laplace(), coefficient=0.37)(out_ref.feature_acts)
    assert abs(val(plain - out_ref.losses["l1_loss"])) > 1e-2


def jumprelu_pair(theta, bandwidth):
    d = theta.numel()
    cfg = JumpReLUTrainingSAEConfig(d_in=d, d_sae=d, jumprelu_bandwidth=bandwidth)
    ref = build_training_sae(cfg, seed=0)
    with torch.no_grad():
        ref.W_enc.copy_(torch.eye(d))  # hidden_pre = x exactly
        ref.b_enc.zero_()
        ref.b_dec.zero_()
        ref.threshold.copy_(theta)
    return ref


def test_derived_l0_activation_is_saelens_jumprelu(one_thread):
    """TARGET: the prox of t·1[a ≠ 0] is SAELens' JumpReLU with θ = sqrt(2t): bit-identical
    forward on inputs at, one ulp around and near the threshold, and equal gradients (the
    parameter is θ itself, so dθ/dt does not enter; ∂/∂t = (∂/∂θ)/θ)."""
    from priors.sae.activation import ProxActivation

    d, eps = 12, 0.05
    g = torch.Generator().manual_seed(3)
    theta = 0.2 + torch.rand(d, generator=g)
    act = ProxActivation(L0, d, t=0.5 * 0.7**2, bandwidth=eps)
    assert val(act.threshold[0]) == pytest.approx(0.7, rel=1e-6)  # θ = sqrt(2t)
    with torch.no_grad():
        act.threshold.copy_(theta)
    up, down = torch.nextafter(theta, theta + 1), torch.nextafter(theta, theta - 1)
    near = theta + eps * (torch.rand(40, d, generator=g) - 0.5)
    x = torch.cat([theta[None], up[None], down[None], near, 2 * torch.randn(200, d, generator=g),
                   torch.zeros(1, d)])  # fmt: skip
    ref = jumprelu_pair(theta, eps)
    f_ref, pre = ref.encode_with_hidden_pre(x)
    assert torch.equal(pre, x)
    f = act(pre)
    assert torch.equal(f, f_ref)
    assert bool((f[0] == 0).all()) and bool((f[1] == up).all())  # strict >, as JumpReLU

    # gradients, with a random upstream gradient and the input as a leaf
    gout = torch.randn(f.shape, generator=g)
    xr, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    (ref.encode_with_hidden_pre(xr)[0] * gout).sum().backward()
    (act(xo) * gout).sum().backward()
    assert float(ref.threshold.grad.abs().max()) > 1.0  # the kernel term is exercised
    torch.testing.assert_close(act.threshold.grad, ref.threshold.grad, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(xo.grad, xr.grad, rtol=0, atol=0)

    # the same through the SAE adapter: PriorTrainingSAE with the L0 prox is SAELens' JumpReLU
    cfg = PriorTrainingSAEConfig(d_in=d, d_sae=d, prior=L0, bandwidth=eps, coefficient=1.0)
    ours = build_training_sae(cfg, seed=0)
    state = dict(ref.state_dict())
    state["activation_fn.threshold"] = state.pop("threshold")
    ours.load_state_dict(state)
    assert torch.equal(ours.encode(x), f_ref)


def test_derived_l0_sae_loss_values_are_saelens_jumprelu(one_thread):
    """PriorTrainingSAE with the L0 penalty and its prox has SAELens' JumpReLU ("step" mode)
    latents, l0_loss value and gradients on the same weights: the penalty's jump at the
    threshold sends SAELens' Step pseudo-gradient to the threshold."""
    c, d = 0.3, 12
    jr = JumpReLUTrainingSAEConfig(
        d_in=8,
        d_sae=d,
        l0_coefficient=c,
        jumprelu_bandwidth=0.05,
        jumprelu_init_threshold=0.05,
        decoder_init_norm=None,
    )
    ref = build_training_sae(jr, seed=0)
    cfg = PriorTrainingSAEConfig(d_in=8, d_sae=d, prior=L0, coefficient=c, bandwidth=0.05)
    ours = build_training_sae(cfg, seed=0)
    state = dict(ref.state_dict())
    state["activation_fn.threshold"] = state.pop("threshold")
    ours.load_state_dict(state)
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    out_ref = ref.training_forward_pass(step_input(x, {"l0": c}))
    out = ours.training_forward_pass(step_input(x, {"prior": c}))
    assert torch.equal(out.feature_acts, out_ref.feature_acts)
    assert 0 < val(out_ref.losses["l0_loss"]) < c * d
    assert abs(val(out.losses["prior_loss"] - out_ref.losses["l0_loss"])) <= 1e-6
    out.loss.backward()
    out_ref.loss.backward()
    assert float(ref.threshold.grad.abs().max()) > 0.1
    torch.testing.assert_close(ours.activation_fn.threshold.grad, ref.threshold.grad,
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(getattr(ours, name).grad, getattr(ref, name).grad,
                                   rtol=1e-5, atol=1e-6)  # fmt: skip


def test_train_saelens_prior_sae_learns_and_logs_the_derived_penalty(one_thread):
    """A few hundred SAELens steps of the derived SAE: loss falls by more than half, the
    logged prior_loss is the SparsityPenalty of the same latents, the caller's RNG state is
    unchanged, and the same seed gives the same SAE."""
    x = sparse_data()
    c = 0.05
    # decoder_init_norm=None: SAELens' kaiming init (its 0.1 heuristic needs more steps)
    cfg = dict(d_in=16, d_sae=32, prior=laplace(), coefficient=c, t=0.05, decoder_init_norm=None)
    rng = torch.random.get_rng_state()
    sae, log = train_saelens(build_training_sae(PriorTrainingSAEConfig(**cfg), seed=0), x,
                             steps=300, batch_size=64, lr=3e-3, seed=0, progress=False)  # fmt: skip
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert set(log) == {"loss", "mse_loss", "prior_loss"} and len(log["loss"]) == 300
    first, last = (torch.tensor(log["loss"][s]).mean() for s in (slice(0, 30), slice(-30, None)))
    assert last < 0.5 * first, (float(first), float(last))
    out = sae.training_forward_pass(step_input(x[:256], {"prior": c}))
    derived = SparsityPenalty(laplace(), coefficient=c, decoder_norm=True)
    assert val(out.losses["prior_loss"]) > 1e-3
    assert abs(val(out.losses["prior_loss"] - derived(out.feature_acts, sae.W_dec))) <= 1e-6
    runs = [
        train_saelens(build_training_sae(PriorTrainingSAEConfig(**cfg), seed=0), x, steps=20,
                      batch_size=64, lr=3e-3, seed=0, progress=False)[0]
        for _ in range(2)
    ]  # fmt: skip
    for (name, p), q in zip(runs[0].named_parameters(), runs[1].parameters(), strict=True):
        assert torch.equal(p, q), name


def test_coefficient_goes_through_saelens_warm_up(one_thread):
    """λ is SAELens' scheduled "prior" coefficient: 0 at the first step of a warm-up."""
    cfg = PriorTrainingSAEConfig(d_in=16, d_sae=32, prior=laplace(), coefficient=0.5, t=0.01,
                                 coefficient_warm_up_steps=4)  # fmt: skip
    _, log = train_saelens(build_training_sae(cfg, seed=0), sparse_data(n=256), steps=6,
                           batch_size=32, lr=1e-3, seed=0, progress=False)  # fmt: skip
    assert log["prior_loss"][0] == 0.0 and log["prior_loss"][-1] > 0.0


def test_saved_prior_sae_reloads_as_the_inference_sae(one_thread, tmp_path):
    """SAELens' save_model / save_inference_model write JSON (the prior by name); the inference
    PriorSAE given the same prior and the saved weights encodes as the training SAE."""
    from safetensors.torch import load_file

    from priors.sae.saelens import PriorSAE, PriorSAEConfig

    prior = laplace()
    cfg = PriorTrainingSAEConfig(d_in=6, d_sae=12, prior=prior, t=0.01)
    sae = build_training_sae(cfg, seed=0)
    sae.save_model(tmp_path / "train")
    weights, cfg_path = sae.save_inference_model(tmp_path / "inf")
    saved = json.loads(cfg_path.read_text())
    assert saved["architecture"] == "prior" and saved["prior"] == "laplace"
    assert cfg.prior is prior  # the config object keeps the prior itself
    inf = PriorSAE(PriorSAEConfig(d_in=6, d_sae=12, prior=prior, t=0.01))
    inf.load_state_dict(load_file(weights))
    x = 10 * torch.randn(64, 6, generator=torch.Generator().manual_seed(0))
    f = sae.encode(x)
    assert bool((f > 0).any()) and torch.equal(inf.encode(x), f)


def dl_batches(x, batch_size, seed):
    g = torch.Generator().manual_seed(seed)
    while True:
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            if len(idx) == batch_size:
                yield x[idx]


def test_prior_trainer_protocol_learns_and_logs_the_derived_penalty(one_thread):
    """PriorTrainer driven like dictionary_learning's trainSAE (update per step): loss falls by
    more than half, loss(logging=True) reports the SparsityPenalty of the same latents, the
    global RNG is untouched and config is JSON."""
    x = sparse_data()
    c, steps = 0.05, 300
    rng = torch.random.get_rng_state()
    trainer = PriorTrainer(steps=steps, activation_dim=16, dict_size=32, prior=laplace(),
                           coefficient=c, t=0.05, lr=3e-3, seed=0)  # fmt: skip
    losses = []
    for step, act in enumerate(dl_batches(x, 64, seed=0)):
        if step >= steps:
            break
        losses.append(trainer.update(step, act))
    assert torch.equal(torch.random.get_rng_state(), rng)
    first, last = torch.tensor(losses[:30]).mean(), torch.tensor(losses[-30:]).mean()
    assert last < 0.5 * first, (float(first), float(last))
    log = trainer.loss(x[:256], step=steps, logging=True)
    derived = SparsityPenalty(laplace(), coefficient=c, decoder_norm=True)
    assert log.losses["sparsity_loss"] > 1e-3 / c
    got = c * log.losses["sparsity_loss"]
    assert abs(got - val(derived(log.f, trainer.ae.W_dec))) <= 1e-6
    assert isinstance(trainer.ae, PriorAutoEncoder)
    json.dumps(trainer.config)


class _LinearDecoderDict(torch.nn.Module):
    """Shaped like dictionary_learning's AutoEncoder (nn.Linear decoder, weight (d_in, d_sae))."""

    def __init__(self, activation_dim, dict_size):
        super().__init__()
        self.activation_dim, self.dict_size = activation_dim, dict_size
        self.encoder = torch.nn.Linear(activation_dim, dict_size)
        self.decoder = torch.nn.Linear(dict_size, activation_dim, bias=False)

    def forward(self, x, output_features=False):
        f = torch.relu(self.encoder(x))
        return (self.decoder(f), f) if output_features else self.decoder(f)


class _NoDecoderDict(_LinearDecoderDict):
    def __init__(self, activation_dim, dict_size):
        super().__init__(activation_dim, dict_size)
        del self.decoder
        self.decoder = torch.nn.Identity()


def test_prior_trainer_uses_a_foreign_dictionarys_decoder_rows(one_thread):
    """With their AutoEncoder layout the decoder norms are the columns of decoder.weight."""
    trainer = PriorTrainer(steps=10, activation_dim=6, dict_size=10, prior=laplace(),
                           dict_class=_LinearDecoderDict, coefficient=1.0, seed=0)  # fmt: skip
    with torch.no_grad():
        trainer.ae.decoder.weight.mul_(torch.arange(1, 11))
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(0))
    log = trainer.loss(x, logging=True)
    want = (log.f * trainer.ae.decoder.weight.norm(dim=0)).sum(-1).mean()
    assert log.losses["sparsity_loss"] == pytest.approx(val(want), rel=1e-6)


def test_dictionary_learning_trainSAE_runs_the_prior_trainer(one_thread, tmp_path):
    """dictionary_learning's own trainSAE with PriorTrainer (skips where it is not installed,
    as in CI)."""
    training = pytest.importorskip("dictionary_learning.training")
    x = sparse_data(n=1024)
    cfg = {"trainer": PriorTrainer, "steps": 100, "activation_dim": 16, "dict_size": 32,
           "prior": laplace(), "coefficient": 0.05, "t": 0.05, "lr": 3e-3, "seed": 0,
           "layer": 0, "lm_name": "synthetic", "wandb_name": "prior"}  # fmt: skip
    training.trainSAE(data=dl_batches(x, 64, seed=0), trainer_configs=[cfg], steps=100,
                      save_dir=str(tmp_path), device="cpu")  # fmt: skip
    saved = json.loads((tmp_path / "trainer_0" / "config.json").read_text())
    assert saved["trainer"]["trainer_class"] == "PriorTrainer"
    state = torch.load(tmp_path / "trainer_0" / "ae.pt")
    assert state["W_dec"].shape == (32, 16)


# --- bad input -------------------------------------------------------------------------------


def test_decoder_norm_without_a_decoder_is_refused():
    with pytest.raises(ValueError, match="decoder_norm"):
        PriorTrainer(steps=10, activation_dim=6, dict_size=10, prior=laplace(),
                     dict_class=_NoDecoderDict, decoder_norm=True)  # fmt: skip
    PriorTrainer(steps=10, activation_dim=6, dict_size=10, prior=laplace(),
                 dict_class=_NoDecoderDict, decoder_norm=False)  # fmt: skip


def test_unbound_free_parameters_are_refused():
    free = priors.get("laplace")  # b left symbolic
    with pytest.raises(ValueError, match=r"prior: free parameters \['b'\] are unbound"):
        build_training_sae(PriorTrainingSAEConfig(d_in=4, d_sae=8, prior=free), seed=0)
    with pytest.raises(ValueError, match=r"prior: free parameters \['b'\] are unbound"):
        PriorTrainer(steps=10, activation_dim=4, dict_size=8, prior=free)
    sae = build_training_sae(PriorTrainingSAEConfig(d_in=4, d_sae=8, prior=free,
                                                    params={"b": 1.0}), seed=0)  # fmt: skip
    assert isinstance(sae, PriorTrainingSAE)


def test_nan_activations_are_refused(one_thread):
    x = torch.randn(64, 4)
    x[3, 1] = float("nan")
    sae = build_training_sae(PriorTrainingSAEConfig(d_in=4, d_sae=8, prior=laplace()), seed=0)
    with pytest.raises(ValueError, match="activations contains NaN"):
        train_saelens(sae, x, steps=2, batch_size=8, seed=0, progress=False)
    trainer = PriorTrainer(steps=10, activation_dim=4, dict_size=8, prior=laplace())
    with pytest.raises(ValueError, match="activations contains NaN"):
        trainer.update(0, x)


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"activation": "tanh"}, ValueError, "activation"),
        ({"coefficient": -1.0}, ValueError, "coefficient"),
        ({"decoder_norm": 1}, TypeError, "decoder_norm"),
        ({"prior": None}, TypeError, "prior"),
        ({"prior": "laplace"}, TypeError, "prior"),
    ],
)
def test_bad_config_is_refused(kwargs, exc, name):
    cfg = {"d_in": 4, "d_sae": 8, "prior": laplace(), **kwargs}
    with pytest.raises(exc, match=name):
        build_training_sae(PriorTrainingSAEConfig(**cfg), seed=0)


def test_bad_training_arguments_are_refused():
    sae = build_training_sae(PriorTrainingSAEConfig(d_in=4, d_sae=8, prior=laplace()), seed=0)
    x = torch.randn(16, 4)
    for kwargs, name in [({"steps": 0}, "steps"), ({"batch_size": 32}, "batch_size"),
                         ({"lr": 0.0}, "lr")]:  # fmt: skip
        args = {"steps": 1, "batch_size": 8, "lr": 1e-3, "seed": 0, "progress": False, **kwargs}
        with pytest.raises(ValueError, match=name):
            train_saelens(sae, x, **args)
    with pytest.raises(ValueError, match="activations"):
        train_saelens(sae, torch.randn(16, 5), steps=1, batch_size=8, progress=False)
    with pytest.raises(TypeError, match="sae"):
        train_saelens(torch.nn.Linear(4, 4), x, steps=1, batch_size=8, progress=False)


def test_reimport_keeps_the_registration():
    """Reloading the adapter replaces its own registry entry instead of failing."""
    import priors.sae.saelens as mod

    mod = importlib.reload(mod)
    assert sae_lens.registry.get_sae_training_class("prior")[0] is mod.PriorTrainingSAE
    assert sae_lens.registry.get_sae_class("prior")[0] is mod.PriorSAE
