"""estimate_llc: input checks, no side effects, reproducibility, divergence handling."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import llc

FAST = {"num_burnin": 20, "num_draws": 30, "step_size": 1e-4, "progress": False, "num_chains": 3}


def test_result_fields_and_shapes(problem):
    model, x, y = problem
    res = llc.estimate_llc(model, (x, y), **FAST)
    assert res.per_chain.shape == (3,)
    assert res.loss_trace.shape == res.llc_trace.shape == (3, 30)
    assert res.mala_acceptance.shape == res.diverged.shape == (3,)
    assert res.nbeta == pytest.approx(200 / np.log(200))
    np.testing.assert_allclose(res.per_chain, res.llc_trace.mean(axis=1))
    assert res.mean == pytest.approx(res.per_chain.mean())
    with torch.no_grad():
        assert res.init_loss == pytest.approx(
            0.5 * ((model(x) - y) ** 2).sum(1).mean().item(), rel=1e-5
        )
    assert "λ̂" in res.summary()
    import matplotlib

    matplotlib.use("Agg")
    fig = res.plot()
    assert fig.axes and len(fig.axes[0].lines) >= 3


def test_same_seed_same_result_and_chain_batch_does_not_matter(problem):
    model, x, y = problem
    a = llc.estimate_llc(model, (x, y), seed=5, **FAST)
    b = llc.estimate_llc(model, (x, y), seed=5, chain_batch=2, **FAST)
    c = llc.estimate_llc(model, (x, y), seed=6, **FAST)
    np.testing.assert_array_equal(a.llc_trace, b.llc_trace)
    assert not np.array_equal(a.llc_trace, c.llc_trace)
    g1 = llc.estimate_llc(model, (x, y), seed=torch.Generator().manual_seed(3), **FAST)
    g2 = llc.estimate_llc(model, (x, y), seed=torch.Generator().manual_seed(3), **FAST)
    np.testing.assert_array_equal(g1.llc_trace, g2.llc_trace)


def test_data_forms_agree(problem):
    model, x, y = problem
    ref = llc.estimate_llc(model, (x, y), **FAST).llc_trace
    ds = TensorDataset(x, y)
    np.testing.assert_array_equal(llc.estimate_llc(model, ds, **FAST).llc_trace, ref)
    np.testing.assert_array_equal(
        llc.estimate_llc(model, DataLoader(ds, batch_size=17), **FAST).llc_trace, ref
    )


def test_no_side_effects_on_model_or_global_rng():
    gen = torch.Generator().manual_seed(1)
    model = nn.Sequential(
        nn.Linear(3, 8), nn.Dropout(0.2), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 1)
    )
    model[3].eval()  # running statistics frozen, the rest in train mode (dropout active)
    model[0].bias.requires_grad_(False)
    x = torch.randn(100, 3, generator=gen)
    y = torch.randn(100, 1, generator=gen)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    grads = [p.grad for p in model.parameters()]
    torch.manual_seed(1234)
    rng = torch.get_rng_state()
    llc.estimate_llc(model, (x, y), **FAST)
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert [p.requires_grad for p in model.parameters()] == flags
    assert [m.training for m in model.modules()] == modes
    assert [p.grad for p in model.parameters()] == grads


def test_cross_entropy_and_callable_losses():
    gen = torch.Generator().manual_seed(2)
    model = nn.Linear(4, 3)
    x = torch.randn(150, 4, generator=gen)
    labels = torch.randint(3, (150,), generator=gen)
    res = llc.estimate_llc(model, (x, labels), loss="cross_entropy", **FAST)
    assert np.isfinite(res.mean)

    def ce(outputs, targets):
        return nn.functional.cross_entropy(outputs, targets, reduction="none")

    res2 = llc.estimate_llc(model, (x, labels), loss=ce, **FAST)
    np.testing.assert_allclose(res.llc_trace, res2.llc_trace)


@pytest.mark.parametrize(
    ("kwargs", "exc", "word"),
    [
        ({"step_size": 0.0}, ValueError, "step_size"),
        ({"step_size": -1e-3}, ValueError, "step_size"),
        ({"nbeta": 0.0}, ValueError, "nbeta"),
        ({"nbeta": -3.0}, ValueError, "nbeta"),
        ({"num_chains": 0}, ValueError, "num_chains"),
        ({"num_chains": 2.5}, TypeError, "num_chains"),
        ({"num_draws": 0}, ValueError, "num_draws"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"localization": -1.0}, ValueError, "localization"),
        ({"sampler": "hmc"}, ValueError, "sampler"),
        ({"loss": "hinge"}, ValueError, "loss"),
        ({"loss": 3}, TypeError, "loss"),
        ({"seed": "abc"}, TypeError, "seed"),
        ({"dtype": torch.int64}, TypeError, "dtype"),
        ({"scheme": "heun"}, ValueError, "scheme"),
    ],
)
def test_bad_arguments(problem, kwargs, exc, word):
    model, x, y = problem
    with pytest.raises(exc, match=word):
        llc.estimate_llc(model, (x, y), **{**FAST, **kwargs})


def test_bad_data_and_models(problem):
    model, x, y = problem
    with pytest.raises(ValueError, match="empty"):
        llc.estimate_llc(model, (x[:0], y[:0]), **FAST)
    with pytest.raises(ValueError, match="mismatched lengths"):
        llc.estimate_llc(model, (x, y[:10]), **FAST)
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="inputs contain non-finite"):
        llc.estimate_llc(model, (bad, y), **FAST)
    bad_y = y.clone()
    bad_y[0, 0] = float("inf")
    with pytest.raises(ValueError, match="targets contain non-finite"):
        llc.estimate_llc(model, (x, bad_y), **FAST)
    with pytest.raises(ValueError, match="targets"):
        llc.estimate_llc(model, x, **FAST)
    with pytest.raises(ValueError, match="targets"):  # a dict is keyword inputs of the model
        llc.estimate_llc(model, {"x": x}, **FAST)
    with pytest.raises(TypeError, match="data"):
        llc.estimate_llc(model, "inputs.pt", **FAST)
    with pytest.raises(ValueError, match="no parameters"):
        llc.estimate_llc(nn.ReLU(), (x, y), **FAST)
    with pytest.raises(TypeError, match="model"):
        llc.estimate_llc(lambda t: t, (x, y), **FAST)
    with pytest.raises(ValueError, match="one value per sample"):
        llc.estimate_llc(model, (x, y), loss=lambda out, t: ((out - t) ** 2).mean(), **FAST)
    with pytest.raises(ValueError, match="one value per sample"):
        llc.estimate_llc(model, (x, y), loss=lambda out, t: (out - t) ** 2, **FAST)


class _Cliff(nn.Module):
    """f(x) = w x, non-finite once |w| > 0.3: chains that get there diverge."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.w * x + torch.where(self.w.abs() > 0.3, torch.inf, 0.0)


def test_diverging_chains_are_reported_and_left_out():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, generator=gen)
    y = torch.zeros(400, 1)
    kw = {
        "num_chains": 8,
        "num_burnin": 0,
        "num_draws": 200,
        "progress": False,
        "localization": 0.0,
    }
    with pytest.warns(RuntimeWarning, match=r"chain \d+ diverged .*smaller step_size"):
        res = llc.estimate_llc(_Cliff(), (x, y), step_size=3e-4, nbeta=1.0, **kw)
    assert res.diverged.any() and not res.diverged.all()
    assert np.isnan(res.per_chain[res.diverged]).all()
    assert np.isfinite(res.mean) and res.mean == pytest.approx(
        np.mean(res.per_chain[~res.diverged])
    )
    with pytest.raises(RuntimeError, match="every chain diverged.*smaller"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            llc.estimate_llc(_Cliff(), (x, y), step_size=10.0, nbeta=1.0, **kw)


def test_weight_refined_selection(problem):
    model, x, y = problem
    res = llc.estimate_llc(model, (x, y), params=["2.weight"], **FAST)
    assert res.config["params"] == ["2.weight"] and res.config["d"] == 12
    res = llc.estimate_llc(model, (x, y), params=model[0], **FAST)
    assert res.config["params"] == ["0.weight", "0.bias"]
    with pytest.raises(ValueError, match="params"):
        llc.estimate_llc(model, (x, y), params=["nothing"], **FAST)


def test_explicit_device_and_dtype_leave_the_model_alone(problem):
    # The GPU path is this code with another device: sampling happens on copies in (device, dtype).
    model, x, y = problem
    res = llc.estimate_llc(model, (x, y), device="cpu", dtype=torch.float64, **FAST)
    ref = llc.estimate_llc(
        model, (x.double(), y.double()), device=torch.device("cpu"), dtype=torch.float64, **FAST
    )
    np.testing.assert_array_equal(res.llc_trace, ref.llc_trace)
    assert res.config["dtype"] == "torch.float64" and res.config["device"] == "cpu"
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("init_seed", [1, 5])
def test_trained_relu_nets_with_dead_units_do_not_derail_warmup(init_seed):
    # Regression: on these Adam-trained ReLU nets two chains blew up in warm-up, their gradients
    # poisoned the learned metric (NaN), and every chain then "diverged" while ε halved to 1e-34;
    # with a milder fix the estimate still came out at 28.8 > d/2 = 16.5.
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(2000, 2, generator=gen)
    ys = torch.sin(2 * xs[:, :1]) * xs[:, 1:]
    with torch.random.fork_rng():
        torch.manual_seed(init_seed)
        net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(1500):
            opt.zero_grad()
            (0.5 * ((net(xs) - ys) ** 2).sum(1).mean()).backward()
            opt.step()
    res = llc.estimate_llc(net, (xs, ys), seed=0, progress=False, max_draws=1000)
    d = sum(p.numel() for p in net.parameters())
    assert not res.diverged.any()
    assert res.config["warmup_restarts"] == 0
    assert -4 * res.mcse < res.mean < d / 2 + 4 * res.mcse


def test_precondition_and_noise_compensation_switches(problem):
    model, x, y = problem
    kw = dict(progress=False, num_chains=3, num_draws=50, batch_size=50)
    plain = llc.estimate_llc(model, (x, y), precondition=False, compensate_noise=False, **kw)
    assert plain.config["metric"] == "identity"
    assert plain.config["minibatch_heating"] == 0.0
    default = llc.estimate_llc(model, (x, y), **kw)
    assert default.config["metric"].startswith("diagonal")
    assert default.config["minibatch_heating"] > 0.0  # label noise: minibatch gradients are noisy
    full = llc.estimate_llc(model, (x, y), progress=False, num_chains=3, num_draws=50)
    assert full.batch_size == 200 and full.config["minibatch_heating"] == 0.0


def test_mse_targets_must_match_output_shape():
    # (n, 1) outputs against (n,) targets would broadcast to an (n, n) loss without this check
    model = nn.Sequential(nn.Linear(3, 1))
    x = torch.randn(50, 3)
    with pytest.raises(ValueError, match="targets shaped like the model's outputs"):
        llc.estimate_llc(model, (x, torch.randn(50)), **FAST)


def test_divergence_in_the_draws_repeats_warmup_at_a_smaller_step(problem, monkeypatch):
    # Simulate a warm-up that ended with far too large a step: the draws diverge, so the
    # estimator warms up again with ε capped at half that step and draws afresh.
    from dataclasses import replace

    import llc.estimator as est

    model, x, y = problem
    calls = []
    original = est._warm_up

    def too_large_first(chains, kernel, params, state, s, limits, cap, spreads, carried=False):
        warm = original(chains, kernel, params, state, s, limits, cap, spreads, carried)
        calls.append((cap, spreads))
        if len(calls) == 1:
            bad = replace(warm.params, step_size=50 * warm.params.step_size)
            return replace(warm, params=bad)
        return warm

    monkeypatch.setattr(est, "_warm_up", too_large_first)
    res = llc.estimate_llc(model, (x, y), progress=False, num_chains=3, num_draws=400)
    assert res.config["draw_restarts"] >= 1
    # the repeated warm-up is capped at half the step, and has no spreading phase
    assert calls[0] == (np.inf, True) and calls[1][0] < np.inf and not calls[1][1]
    assert not res.diverged.any() and np.isfinite(res.mean)
    assert res.llc_trace.shape == (3, 400)


def test_dropout_draws_depend_on_the_seed_not_on_the_global_rng():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.3), nn.Tanh(), nn.Linear(8, 1))  # train
    x = torch.randn(300, 3)
    with torch.no_grad():
        y = model.eval()(x)
    model.train()
    kw = dict(num_chains=3, num_burnin=30, num_draws=40, step_size=1e-4, progress=False)
    results = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        results.append(llc.estimate_llc(model, (x, y), seed=5, **kw).llc_trace)
        assert torch.equal(torch.get_rng_state(), state)  # untouched
    np.testing.assert_array_equal(results[0], results[1])
    other = llc.estimate_llc(model, (x, y), seed=6, **kw).llc_trace
    assert not np.array_equal(other, results[0])


def test_a_draw_restart_after_carried_chains_warms_up_in_full(problem, monkeypatch):
    """Chains carried over from an earlier estimate get the short warm-up; after a chain
    diverges in the draws the repeated warm-up is the full one, capped at half the step."""
    from dataclasses import replace

    import llc.estimator as est

    model, x, y = problem
    pot = llc.Potential(model, (x, y))
    s = llc.LLCSettings(num_chains=3, num_draws=400, progress=False)
    _, carry = est._estimate(pot, s, hand=True)
    calls, original = [], est._warm_up

    def too_large_first(chains, kernel, params, state, s, limits, cap, spreads, carried=False):
        warm = original(chains, kernel, params, state, s, limits, cap, spreads, carried)
        calls.append((cap, spreads, carried))
        if len(calls) == 1:
            return replace(warm, params=replace(warm.params, step_size=50 * warm.params.step_size))
        return warm

    monkeypatch.setattr(est, "_warm_up", too_large_first)
    res, _ = est._estimate(pot, s, start=carry)
    assert res.config["carried"] and res.config["draw_restarts"] >= 1
    assert calls[0] == (np.inf, False, True)
    assert calls[1][0] < np.inf and calls[1][1:] == (False, False)
    assert not res.diverged.any() and np.isfinite(res.mean)


def test_dataloaders_give_every_sample_once_without_touching_the_global_rng(problem):
    from torch.utils.data import DataLoader, Dataset

    model, x, y = problem

    class Pairs(Dataset):  # not a TensorDataset: the loader's batches are collated
        def __len__(self):
            return x.shape[0]

        def __getitem__(self, i):
            return x[i], y[i]

    ref = llc.estimate_llc(model, (x, y), **FAST).llc_trace
    for loader in (
        DataLoader(Pairs(), batch_size=64, shuffle=True, drop_last=True),
        DataLoader(Pairs(), batch_size=None),
    ):
        state = torch.get_rng_state()
        got = llc.estimate_llc(model, loader, **FAST)
        assert torch.equal(torch.get_rng_state(), state)
        assert got.config["n"] == x.shape[0]  # drop_last drops nothing here
        np.testing.assert_array_equal(got.llc_trace, ref)  # shuffling changes nothing


def test_float_buffers_follow_the_requested_dtype():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)).eval()
    x, y = torch.randn(100, 3), torch.randn(100, 1)
    res = llc.estimate_llc(model, (x, y), dtype=torch.float64, **FAST)
    assert np.isfinite(res.mean) and res.config["dtype"] == "torch.float64"
    b = llc.bounds.bounds(model, (x, y))  # float64 by default, float32 model with BatchNorm
    assert b.lower <= b.upper
