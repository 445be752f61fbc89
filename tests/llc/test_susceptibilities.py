"""Susceptibilities against the Gaussian closed form of Bayesian linear regression.

With the weights outside component C frozen at w*, the restricted posterior of a linear model
with squared-error loss is Gaussian: precision ``P_C = (nβ/n) X_Cᵀ X_C + γ I`` and mean
``P_C⁻¹ ((nβ/n) X_Cᵀ (y − X_{¬C} w*_{¬C}) + γ w*_C)``. The covariances of mean losses are
block means of the loss kernel's closed form (tests/llc/test_loss_kernel.py), so
``χ = Var(L_R) − Cov(L_R, L_s)`` is exact. ``z = (χ̂ − χ) / mcse`` over 3 components × 3 shifts
× 3 seeds is compared with the 99.9 % quantiles of the same statistics for an exact sampler
(:func:`_null_statistics`: iid restricted-posterior draws, 16 groups of 200; run this file to
print them; for the mean over three seeds: fraction of |z| > 3: 0.148, mean z²: 3.38,
|mean z|: 0.553).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import llc

from .test_loss_kernel import RUN, SEEDS, _loss_cov, _problem, _within, _z_summary

LIMITS = (0.15, 3.4, 0.6)  # 99.9 % quantiles under an exact sampler, rounded up
MASKS = {
    "w0": torch.tensor([[True, False, False]]),
    "w12": torch.tensor([[False, True, True]]),
    "all": torch.ones(1, 3, dtype=torch.bool),
}


def _shifts(model):
    g = torch.Generator().manual_seed(21)
    out = {}
    for name, scale in (("narrow", 0.5), ("same", 1.0), ("wide", 2.0)):
        xs = scale * torch.randn(10, 3, generator=g, dtype=torch.float64)
        noise = 0.5 * torch.randn(10, 1, generator=g, dtype=torch.float64)
        out[name] = (xs, model(xs).detach() + noise)
    return out


def _restricted(model, x, y, mask, nbeta, gamma):
    """``(μ, Σ)`` of the posterior restricted to the weights in ``mask`` (Σ zero elsewhere)."""
    xs, ys, c = x.numpy(), y.numpy()[:, 0], mask.numpy()[0]
    n, w_star = len(xs), model.weight.detach().numpy()[0]
    prec = nbeta / n * xs[:, c].T @ xs[:, c] + gamma * np.eye(c.sum())
    rhs = nbeta / n * xs[:, c].T @ (ys - xs[:, ~c] @ w_star[~c]) + gamma * w_star[c]
    mu, cov = w_star.copy(), np.zeros((3, 3))
    mu[c] = np.linalg.solve(prec, rhs)
    cov[np.ix_(c, c)] = np.linalg.inv(prec)
    return mu, cov


def _exact(model, x, y, shifts, nbeta, gamma) -> np.ndarray:
    rows = []
    for mask in MASKS.values():
        mu, cov = _restricted(model, x, y, mask, nbeta, gamma)
        var = _loss_cov(mu, cov, x, y, x, y).mean()
        rows.append([var - _loss_cov(mu, cov, x, y, xs, ys).mean() for xs, ys in shifts.values()])
    return np.array(rows)


def _null_statistics(reps=3000, groups=16, per_group=200, seed=3):
    """:func:`_z_summary` of ``z`` over the 3 × 3 entries for an exact sampler, (reps, 3)."""
    model, x, y = _problem()
    shifts = _shifts(model)
    nbeta = 20 / np.log(20)
    exact = _exact(model, x, y, shifts, nbeta, 0.3)
    sets = [(x, y), *shifts.values()]
    xs = torch.cat([s[0] for s in sets]).numpy()
    ys = torch.cat([s[1] for s in sets]).numpy()[:, 0]
    cuts = np.cumsum([0, *[len(s[0]) for s in sets]])
    rng, out = np.random.default_rng(seed), []
    for _ in range(reps):
        z = np.empty_like(exact)
        for r, mask in enumerate(MASKS.values()):
            mu, cov = _restricted(model, x, y, mask, nbeta, 0.3)
            w = rng.multivariate_normal(mu, cov, size=groups * per_group)
            losses = 0.5 * (ys[None] - w @ xs.T) ** 2
            means = np.stack([losses[:, a:b].mean(1) for a, b in zip(cuts, cuts[1:])], 1)
            means = means.reshape(groups, per_group, -1)

            def chi(m):  # Var(L_R) − Cov(L_R, L_s) from draws (..., draw, 1 + shifts)
                dev = m - m.mean(-2, keepdims=True)
                c = (dev[..., :1] * dev).sum(-2) / (m.shape[-2] - 1)
                return c[..., :1] - c[..., 1:]

            spread = chi(means).std(0, ddof=1) / np.sqrt(groups)
            z[r] = (chi(means.reshape(-1, means.shape[-1])) - exact[r]) / spread
        out.append(_z_summary(z.ravel()))
    return np.array(out)


if __name__ == "__main__":  # the thresholds: python -m tests.llc.test_susceptibilities
    stats = _null_statistics()
    triples = stats[: len(stats) // 3 * 3].reshape(-1, 3, 3).mean(1)
    for i, name in enumerate(("|z|>3", "z²", "|mean z|")):
        q = np.quantile(abs(triples[:, i]), 0.999)
        print(f"{name}: 99.9 % quantile of the mean of three {q:.3f}")


@pytest.mark.slow
def test_susceptibilities_match_the_gaussian_closed_form(one_thread):
    model, x, y = _problem()
    shifts = _shifts(model)
    components = {k: {"weight": m} for k, m in MASKS.items()}
    summaries = []
    for seed in SEEDS:
        chi = llc.susceptibilities(model, (x, y), components=components, shifts=shifts,
                                   seed=seed, **RUN)  # fmt: skip
        assert chi.matrix.shape == chi.mcse.shape == (3, 3) and chi.dof == 15
        assert chi.components == ("w0", "w12", "all") and chi.shifts == ("narrow", "same", "wide")
        full = chi.llc["all"]
        exact = _exact(model, x, y, shifts, full.nbeta, full.localization)
        summaries.append(_z_summary(((chi.matrix - exact) / chi.mcse).ravel()))
    assert _within(np.mean(summaries, axis=0), LIMITS), summaries


def test_per_token_contributions_average_to_the_matrix(one_thread):
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(7, 4), torch.nn.Linear(4, 7)).double()
    tokens = torch.randint(7, (12, 5), generator=g)
    shifted = {
        "a": torch.randint(3, (4, 5), generator=g),  # a narrower vocabulary
        "b": torch.randint(7, (3, 6), generator=g),  # longer sequences
    }
    comps = {"embed": "0", "unembed": "1"}
    chi = llc.susceptibilities(
        model, tokens, loss="next_token", components=comps, shifts=shifted, per_token=True,
        num_chains=3, num_draws=30, num_burnin=10, step_size=1e-3, seed=4, every=3,
        progress=False,
    )  # fmt: skip
    assert chi.matrix.shape == (2, 2)
    assert chi.per_token["a"].shape == (2, 4, 4) and chi.per_token["b"].shape == (2, 3, 5)
    for j, name in enumerate(chi.shifts):
        # every token counted: the matrix entry is the mean of the token contributions
        np.testing.assert_allclose(chi.per_token[name].mean(axis=(1, 2)), chi.matrix[:, j])


def test_plot_svd_and_export(one_thread):
    import matplotlib

    matplotlib.use("Agg")
    model, x, y = _problem()
    comps = {k: {"weight": m} for k, m in MASKS.items()}
    chi = llc.susceptibilities(
        model, (x, y), components=comps, shifts=_shifts(model), num_chains=4, num_draws=40,
        num_burnin=20, step_size=0.02, progress=False, every=2,
    )  # fmt: skip
    u, s, vt = chi.svd()
    np.testing.assert_allclose((u * s) @ vt, chi.matrix, atol=1e-12)
    fig = chi.plot()
    assert len(fig.axes) >= 2
    ds = chi.to_xarray()
    assert list(ds["component"].values) == ["w0", "w12", "all"]
    matplotlib.pyplot.close("all")


def test_bad_input_names_the_argument():
    model, x, y = _problem()
    kw = dict(num_chains=2, num_draws=8, num_burnin=4, step_size=0.02, progress=False)
    good = {"all": {"weight": True}}
    shifts = _shifts(model)
    with pytest.raises(ValueError, match=r"components\['none'\]"):
        llc.susceptibilities(model, (x, y), components={"none": {"weight": torch.zeros(1, 3,
                             dtype=torch.bool)}}, shifts=shifts, **kw)  # fmt: skip
    with pytest.raises(ValueError, match=r"components\['typo'\]"):
        llc.susceptibilities(model, (x, y), components={"typo": "wieght"}, shifts=shifts, **kw)
    with pytest.raises(ValueError, match=r"shifts\['tokens'\]"):
        tokens = {"tokens": (torch.randint(5, (4, 3)), y[:4])}
        llc.susceptibilities(model, (x, y), components=good, shifts=tokens, **kw)
    with pytest.raises(TypeError, match=r"shifts\['text'\]"):
        llc.susceptibilities(model, (x, y), components=good, shifts={"text": "abc"}, **kw)
    with pytest.raises(ValueError, match="shifts"):
        llc.susceptibilities(model, (x, y), components=good, shifts={}, **kw)
    with pytest.raises(TypeError, match="params"):
        llc.susceptibilities(model, (x, y), components=good, shifts=shifts, params="weight", **kw)
