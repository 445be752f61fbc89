"""priors.sae and priors.superposition: the SAE objective, seeding, and the toy's statistics."""

import math

import pytest
import torch

from priors.sae import SparseAutoencoder, sae_metrics, train_sae
from priors.superposition import superposition_toy


def test_one_step_is_adam_on_the_documented_loss(one_thread):
    """train_sae(steps=1) equals one Adam step on s‖x − x̂‖² + λ Σ pen(f), then unit rows."""
    x = torch.randn(64, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pen = lambda f: torch.log1p(f)  # noqa: E731
    s, lam, lr = 3.0, 0.7, 1e-2
    got = train_sae(x, pen, n_latents=7, coefficient=lam, steps=1, batch_size=16, lr=lr,
                    reconstruction_scale=s, seed=4)  # fmt: skip
    gen = torch.Generator().manual_seed(4)
    ref = SparseAutoencoder(5, 7, seed=gen, dtype=torch.float64)
    xb = x[torch.randint(64, (16,), generator=gen)]
    opt = torch.optim.Adam(ref.parameters(), lr=lr)
    w_enc, b_dec = ref.W_enc.detach().clone(), ref.b_dec.detach().clone()
    f = torch.relu((xb - b_dec) @ w_enc)
    assert torch.equal(f, ref.encode(xb))
    fb, xh = ref(xb)
    loss = s * ((xb - xh) ** 2).sum(1).mean() + lam * pen(fb).sum(1).mean()
    loss.backward()
    opt.step()
    with torch.no_grad():
        ref.W_dec /= ref.W_dec.norm(dim=1, keepdim=True)
    for name, p in ref.named_parameters():
        torch.testing.assert_close(getattr(got, name), p, rtol=0, atol=1e-12)
    torch.testing.assert_close(got.W_dec.norm(dim=1), torch.ones(7, dtype=torch.float64))


def test_l1_sae_finds_the_features(one_thread):
    """8 sparse features in 8 dimensions: the L1 SAE's decoder moves onto them (MMCS well above
    its initialisation's) and it is sparser than an SAE trained without the penalty."""
    toy = superposition_toy(m=8, d=8, pi=0.1, slab="expon", sigma=0.05, seed=0)
    _, x = toy.sample(4000, seed=1)
    _, x_test = toy.sample(1000, seed=2)
    kw = dict(n_latents=16, steps=1500, batch_size=256, reconstruction_scale=200.0, seed=0)
    sae = train_sae(x, torch.abs, coefficient=30.0, **kw)
    dense = train_sae(x, torch.abs, coefficient=0.0, **kw)
    start = sae_metrics(SparseAutoencoder(8, 16, seed=torch.Generator().manual_seed(0)), x_test,
                        toy.w)  # fmt: skip
    m, md = sae_metrics(sae, x_test, toy.w), sae_metrics(dense, x_test)
    assert m["mmcs"] > 0.9 > start["mmcs"] + 0.2, (m, start)
    assert m["nmse"] < 0.05 and m["l0"] < 0.5 * md["l0"], (m, md)


def test_seeded_and_global_rng_untouched():
    x = torch.randn(100, 4, generator=torch.Generator().manual_seed(0))
    state = torch.random.get_rng_state()
    a = train_sae(x, torch.abs, n_latents=6, steps=5, batch_size=8, seed=3)
    b = train_sae(x, torch.abs, n_latents=6, steps=5, batch_size=8, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_toy_statistics():
    """P(active) = π and x − aW has standard deviation σ, within Monte Carlo error."""
    toy = superposition_toy(m=20, d=10, pi=0.2, slab="expon", sigma=0.3, seed=1)
    a, x = toy.sample(20_000, seed=0)
    frac, n = float((a > 0).float().mean()), a.numel()
    assert abs(frac - 0.2) < 5 * math.sqrt(0.2 * 0.8 / n)
    resid = x - a @ toy.w
    assert abs(float(resid.std()) - 0.3) < 5 * 0.3 / math.sqrt(2 * resid.numel())
    torch.testing.assert_close(toy.w.norm(dim=1), torch.ones(20))


@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        ({"x": torch.zeros(3)}, ValueError, "x"),
        ({"x": [[1.0]]}, TypeError, "x"),
        ({"x": torch.tensor([[float("nan")]])}, ValueError, "x"),
        ({"penalty": 3}, TypeError, "penalty"),
        ({"n_latents": 0}, ValueError, "n_latents"),
        ({"steps": 1.5}, TypeError, "steps"),
        ({"coefficient": -1.0}, ValueError, "coefficient"),
        ({"lr": 0.0}, ValueError, "lr"),
        ({"seed": "a"}, TypeError, "seed"),
    ],
)
def test_bad_input_is_named(kwargs, exc, name):
    args = {"x": torch.randn(10, 3), "penalty": torch.abs, "n_latents": 4, "steps": 1}
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        train_sae(args.pop("x"), args.pop("penalty"), **args)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"m": 0}, "m"), ({"pi": 0.0}, "pi"), ({"sigma": -1.0}, "sigma"), ({"slab": "nope"}, "slab")],
)
def test_toy_bad_input_is_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        superposition_toy(**kwargs)
