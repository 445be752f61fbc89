"""The loss kernel and the Bayesian influence function against exact answers.

Bayesian linear regression: with ``f_w(x) = xᵀw``, ``ℓ_i = ½(y_i − x_iᵀw)²`` and the potential
``U(w) = nβ L_n(w) + (γ/2)‖w − w*‖²`` that :func:`llc.estimate_llc` samples, the posterior is
``N(μ, Σ)`` with ``Σ⁻¹ = (nβ/n) XᵀX + γ I`` and ``μ = Σ ((nβ/n) Xᵀy + γ w*)``. Writing
``ℓ_i = ½(r_i − a_i)²`` with ``r_i = y_i − x_iᵀμ`` and ``a_i = x_iᵀ(w − μ)`` (centred Gaussian,
``Cov(a_i, a_j) = s_ij = x_iᵀ Σ x_j``), the odd moments vanish and ``Cov(a_i², a_j²) = 2 s_ij²``,
so ``Cov(ℓ_i, ℓ_j) = r_i r_j s_ij + ½ s_ij²``. The formula is first checked against exact
Gaussian draws, then the SGLD matrices against it through their own per-entry MCSE: full batch,
where the Leimkuhler–Matthews scheme has no discretisation bias for a Gaussian target.

``z = (estimate − exact) / mcse`` is roughly Student-t with ``dof`` degrees of freedom (the chain
groups), with heavier tails: a group's estimate of a covariance of quadratic forms is skewed.
The entries share draws, so they are not independent either. The thresholds therefore come from
the null distribution of the same statistics for an exact sampler (:func:`_null_statistics`:
iid Gaussian draws, 16 groups of 200, about the effective draws per group of the SGLD runs),
at its 99.9 % quantile rounded up: over three seeds, the mean fraction of ``|z| > 3``, the mean
``z²`` and the mean ``z`` (loss kernel: 0.062, 2.31, ±0.71; BIF: 0.061, 2.63, ±0.72, from 1000
triples; a single seed: 0.13, 3.6, ±1.31). The mean z catches a bias of one sign: a 10 % error
in nβ shifts it by about +0.8.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import llc
from llc._posterior_cov import LossCovariance
from llc.sampling import Chains, run, values

SEEDS = (0, 1, 2)
RUN = dict(num_chains=16, groups=16, num_draws=2000, progress=False)
# 99.9 % quantiles under an exact sampler, rounded up (see the module notes)
KERNEL_LIMITS, BIF_LIMITS, ONE_SEED_LIMITS = (0.07, 2.4, 0.75), (0.07, 2.7, 0.75), (0.13, 3.6, 1.35)


def _within(summary, limits) -> bool:
    frac, mean_sq, mean = summary
    return frac <= limits[0] and mean_sq <= limits[1] and abs(mean) <= limits[2]


def _problem(n=20, d=3, seed=5):
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, d, generator=g, dtype=torch.float64))
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = model(x).detach() + 0.5 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return model, x, y


def _posterior(model, x, y, nbeta, gamma):
    """``(μ, Σ)`` of the localized tempered posterior of the linear model."""
    xs, ys = x.numpy(), y.numpy()[:, 0]
    n, d = xs.shape
    w_star = model.weight.detach().numpy()[0]
    cov = np.linalg.inv(nbeta / n * xs.T @ xs + gamma * np.eye(d))
    return cov @ (nbeta / n * xs.T @ ys + gamma * w_star), cov


def _loss_cov(mu, cov, xa, ya, xb, yb):
    """Closed-form ``Cov(ℓ_i, ℓ_j)`` for samples ``(xa, ya)`` against ``(xb, yb)``."""
    ra, rb = ya.numpy()[:, 0] - xa.numpy() @ mu, yb.numpy()[:, 0] - xb.numpy() @ mu
    s = xa.numpy() @ cov @ xb.numpy().T
    return np.outer(ra, rb) * s + 0.5 * s**2


def _z_summary(z: np.ndarray) -> tuple[float, float, float]:
    """Fraction of ``|z| > 3``, mean ``z²`` and mean ``z`` (a bias of one sign)."""
    return float(np.mean(np.abs(z) > 3)), float(np.mean(z**2)), float(np.mean(z))


def _null_statistics(reps=3000, groups=16, per_group=200, seed=2):
    """The test statistics for an exact sampler: per replication, :func:`_z_summary` of the loss
    kernel's upper triangle and of the BIF block, shape (reps, 6)."""
    model, x, y = _problem()
    _, xq, yq = _problem(n=6, seed=9)
    mu, cov = _posterior(model, x, y, 20 / np.log(20), 0.3)
    exact = np.zeros((26, 26))
    exact[:20, :20] = _loss_cov(mu, cov, x, y, x, y)
    exact[:20, 20:] = _loss_cov(mu, cov, x, y, xq, yq)
    xs, ys = torch.cat([x, xq]).numpy(), torch.cat([y, yq]).numpy()[:, 0]
    rng, out = np.random.default_rng(seed), []
    for _ in range(reps):
        w = rng.multivariate_normal(mu, cov, size=groups * per_group)
        losses = (0.5 * (ys[None] - w @ xs.T) ** 2).reshape(groups, per_group, 26)
        dev = losses - losses.mean(1, keepdims=True)
        group_cov = np.einsum("gni,gnj->gij", dev, dev) / (per_group - 1)
        pooled = np.cov(losses.reshape(-1, 26).T)
        z = (pooled - exact) / (group_cov.std(0, ddof=1) / np.sqrt(groups))
        out.append([*_z_summary(z[:20, :20][np.triu_indices(20)]), *_z_summary(z[:20, 20:])])
    return np.array(out)


if __name__ == "__main__":  # the thresholds: python tests/llc/test_loss_kernel.py
    stats = _null_statistics()
    triples = stats[: len(stats) // 3 * 3].reshape(-1, 3, 6).mean(1)
    names = ("kernel |z|>3", "kernel z²", "kernel |mean z|", "BIF |z|>3", "BIF z²", "BIF |mean z|")
    for i, name in enumerate(names):
        one, three = np.quantile(abs(stats[:, i]), 0.999), np.quantile(abs(triples[:, i]), 0.999)
        print(f"{name}: 99.9 % quantile, one seed {one:.3f}, mean of three {three:.3f}")


def test_closed_form_matches_exact_gaussian_draws():
    model, x, y = _problem()
    mu, cov = _posterior(model, x, y, nbeta=6.7, gamma=0.3)
    rng = np.random.default_rng(0)
    w = rng.multivariate_normal(mu, cov, size=200_000)
    losses = 0.5 * (y.numpy()[:, 0][None] - w @ x.numpy().T) ** 2  # (draw, sample)
    batches = np.stack([np.cov(b.T) for b in np.split(losses, 20)])  # independent batches
    z = (batches.mean(0) - _loss_cov(mu, cov, x, y, x, y)) / (batches.std(0, ddof=1) / np.sqrt(20))
    z = z[np.triu_indices(20)]
    assert _within(_z_summary(z), ONE_SEED_LIMITS), _z_summary(z)


def test_streamed_groups_equal_the_moments_of_the_stored_draws(one_thread):
    # the chain groups' sums against np.cov over the very positions the observable recorded
    model, x, y = _problem()
    pot = llc.Potential(model, (x, y))
    chains = Chains.from_seed(pot, 6, seed=3, batch_size=8)
    kernel = llc.get_kernel("sgld")
    p = kernel.params(step_size=0.02, localization=1.0, nbeta=5.0, center=pot.center)
    st = kernel.init(pot.center.expand(6, -1).clone(), chains.randomness.noise(), p)
    positions = []

    class Positions(llc.observables.Trace):
        def value(self, step):
            positions.append(step.position.clone())
            return step.loss

    cov_obs = LossCovariance((x, y), (x[:4], y[:4]), groups=3, every=2)
    observed = [cov_obs, Positions(name="pos")]
    st, accs = run(chains, kernel, p, st, 60, observed)
    stats = values(chains, observed, accs, first=0)["loss_covariance"]
    w = torch.stack(positions[::2])  # (draw, chain, D)
    a = torch.stack([pot.per_sample_losses(v, x, y) for v in w]).numpy()  # (draw, chain, 20)
    b = a[..., :4]
    assert stats.count == 30 * 6
    for g in range(3):
        rows = [c for c in range(6) if c % 3 == g]
        fa, fb = a[:, rows].reshape(-1, 20), b[:, rows].reshape(-1, 4)
        full = np.cov(np.concatenate([fa, fb], 1).T)
        np.testing.assert_allclose(stats.group_covariance[g], full[:20, 20:], rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(stats.group_var_a[g], np.diag(full)[:20], rtol=1e-9)
    full = np.cov(np.concatenate([a.reshape(-1, 20), b.reshape(-1, 4)], 1).T)
    np.testing.assert_allclose(stats.covariance, full[:20, 20:], rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(stats.mean_b, b.reshape(-1, 4).mean(0), rtol=1e-12)
    spread = stats.group_covariance.std(0, ddof=1) / np.sqrt(3)
    np.testing.assert_allclose(stats.mcse(False), spread)
    assert stats.dof == 2


@pytest.mark.slow
def test_loss_kernel_matches_the_gaussian_closed_form(one_thread):
    model, x, y = _problem()
    summaries = []
    for seed in SEEDS:
        k = llc.loss_kernel(model, (x, y), batch_size=20, seed=seed, **RUN)
        mu, cov = _posterior(model, x, y, k.llc.nbeta, k.llc.localization)
        exact = _loss_cov(mu, cov, x, y, x, y)
        assert k.matrix.shape == k.mcse.shape == (20, 20) and k.dof == 15
        np.testing.assert_allclose(k.matrix, k.matrix.T)
        summaries.append(_z_summary(((k.matrix - exact) / k.mcse)[np.triu_indices(20)]))
    assert _within(np.mean(summaries, axis=0), KERNEL_LIMITS), summaries


def test_normalized_loss_kernel_matches_the_closed_form_correlation(one_thread):
    model, x, y = _problem()
    k = llc.loss_kernel(model, (x, y), batch_size=20, seed=0, normalize=True, **RUN)
    mu, cov = _posterior(model, x, y, k.llc.nbeta, k.llc.localization)
    exact = _loss_cov(mu, cov, x, y, x, y)
    sd = np.sqrt(np.diag(exact))
    np.testing.assert_allclose(np.diag(k.matrix), 1.0)
    z = ((k.matrix - exact / np.outer(sd, sd)) / k.mcse)[np.triu_indices(20, 1)]
    assert _within(_z_summary(z), ONE_SEED_LIMITS), _z_summary(z)


@pytest.mark.slow
def test_bif_matches_the_gaussian_closed_form(one_thread):
    model, x, y = _problem()
    _, xq, yq = _problem(n=6, seed=9)  # query samples from another draw of the inputs
    summaries = []
    for seed in SEEDS:
        b = llc.bif(model, (x, y), (xq, yq), batch_size=20, seed=seed, **RUN)
        mu, cov = _posterior(model, x, y, b.llc.nbeta, b.llc.localization)
        exact = -_loss_cov(mu, cov, x, y, xq, yq)
        assert b.matrix.shape == b.mcse.shape == (20, 6)
        summaries.append(_z_summary(((b.matrix - exact) / b.mcse).ravel()))
    assert _within(np.mean(summaries, axis=0), BIF_LIMITS), summaries


def _small(**kw):
    model, x, y = _problem()
    return model, x, y, dict(num_chains=4, num_draws=40, num_burnin=20, step_size=0.02, **kw)


def test_same_seed_same_matrix_and_the_model_is_left_alone(one_thread):
    model, x, y, kw = _small(progress=False)
    before = [p.clone() for p in model.parameters()]
    a = llc.loss_kernel(model, (x, y), seed=1, every=2, **kw)
    b = llc.loss_kernel(model, (x, y), seed=1, every=2, **kw)
    c = llc.loss_kernel(model, (x, y), seed=2, every=2, **kw)
    np.testing.assert_array_equal(a.matrix, b.matrix)
    np.testing.assert_array_equal(a.mcse, b.mcse)
    assert not np.allclose(a.matrix, c.matrix)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))
    # the BIF of a sample on itself is minus its variance in the loss kernel of the same run
    q = llc.bif(model, (x, y), (x[:3], y[:3]), seed=1, every=2, **kw)
    np.testing.assert_allclose(q.matrix, -a.matrix[:, :3], rtol=1e-10, atol=1e-15)
    assert a.count == 4 * 20 and a.dof == 3


def test_per_token_kernel_sums_to_the_sequence_kernel(one_thread):
    # a sequence's loss is the mean of its T token losses, so on the same draws
    # Cov(seq_i, seq_j) = Σ_{s,t} Cov(tok_is, tok_jt) / T²
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Embedding(7, 4), nn.Linear(4, 7)).double()
    tokens = torch.randint(7, (12, 5), generator=g)
    kw = dict(loss="next_token", num_chains=3, num_draws=30, num_burnin=10, step_size=1e-3)
    kw.update(seed=4, every=3, progress=False)
    seq = llc.loss_kernel(model, tokens, probe=tokens[:4], **kw)
    tok = llc.loss_kernel(model, tokens, probe=tokens[:4], per_token=True, **kw)
    assert tok.matrix.shape == (16, 16) and tok.per_token
    blocks = tok.matrix.reshape(4, 4, 4, 4).sum(axis=(1, 3)) / 16
    np.testing.assert_allclose(blocks, seq.matrix, rtol=1e-8, atol=1e-14)
    bif = llc.bif(model, tokens, tokens[4:6], train=tokens[:4], per_token=True, **kw)
    assert bif.matrix.shape == (16, 8)


def test_plots_and_labelled_export(one_thread):
    import matplotlib

    matplotlib.use("Agg")
    model, x, y, kw = _small(progress=False)
    k = llc.loss_kernel(model, (x, y), probe=(x[:5], y[:5]), every=2, **kw)
    fig = k.plot()
    assert fig.axes and fig.axes[0].images
    ds = k.to_xarray()
    assert ds["matrix"].dims == ("sample", "sample2") and ds.attrs["nbeta"] == k.llc.nbeta
    b = llc.bif(model, (x, y), (x[:2], y[:2]), every=2, **kw)
    assert b.to_xarray()["mcse"].dims == ("train", "query")
    assert b.plot().axes
    matplotlib.pyplot.close("all")


def test_bad_input_names_the_argument():
    model, x, y, kw = _small(progress=False)
    with pytest.raises(ValueError, match="probe"):
        llc.loss_kernel(model, (x, y), probe=(torch.zeros(5, 4), torch.zeros(5, 1)), **kw)
    with pytest.raises(ValueError, match="query"):
        llc.bif(model, (x, y), (torch.zeros(0, 3), torch.zeros(0, 1)), **kw)
    with pytest.raises(ValueError, match="train"):
        llc.bif(model, (x, y), (x, y), train=(x[:, :2], y), **kw)
    with pytest.raises(ValueError, match="per_token"):
        llc.loss_kernel(model, (x, y), per_token=True, **kw)
    with pytest.raises(ValueError, match="groups"):
        llc.loss_kernel(model, (x, y), groups=1, **kw)
    with pytest.raises(TypeError, match="observables"):
        llc.loss_kernel(model, (x, y), observables=[], **kw)
    with pytest.raises(ValueError, match="probe"):
        llc.loss_kernel(model, (x, y), probe=({"a": x}, y), **kw)


def _probe_losses(xp: np.ndarray, yp: np.ndarray):
    """``observe`` for :func:`theory.dln_gibbs_llc`: ``½‖y − W_L⋯W_1 x‖²`` per probe sample."""

    def observe(ws):
        p = ws[0]
        for w in ws[1:]:
            p = w @ p
        return 0.5 * ((yp[None] - np.einsum("coi,mi->cmo", p, xp)) ** 2).sum(-1)

    return observe


def test_gibbs_sampler_records_the_gaussian_loss_kernel():
    # one layer: each Gibbs sweep is an exact, independent draw from N(μ, Σ)
    from theory import dln_gibbs_llc

    model, x, y = _problem()
    g = dln_gibbs_llc(
        nn.Sequential(model), (x, y), num_chains=16, num_sweeps=250, num_burnin=50, seed=0,
        progress=False, observe=_probe_losses(x.numpy(), y.numpy()),
    )  # fmt: skip
    mu, cov = _posterior(model, x, y, g.nbeta, g.localization)
    moments = g.observed
    assert moments.count == 16 * 200 and moments.covariance.shape == (20, 20)
    z = ((moments.covariance - _loss_cov(mu, cov, x, y, x, y)) / moments.mcse)[np.triu_indices(20)]
    assert _within(_z_summary(z), ONE_SEED_LIMITS), _z_summary(z)
    with pytest.raises(ValueError, match="observe"):
        dln_gibbs_llc(nn.Sequential(model), (x, y), num_sweeps=8, progress=False,
                      observe=lambda ws: np.zeros(3))  # fmt: skip


@pytest.mark.slow
def test_loss_kernel_matches_the_exact_gibbs_sampler_on_a_singular_network(one_thread):
    # a rank-1 teacher in a 3-3-3 deep linear network (singular), noisy targets: the SGLD loss
    # kernel (default step, full batch) against the exact Gibbs sampler's, z from both MCSEs;
    # the limits are the one-seed limits, applied to the mean over two seeds
    from theory import dln_gibbs_llc, normal_form_teacher, teacher_student_data

    teacher = normal_form_teacher([3, 3, 3], 1, seed=3, dtype=torch.float64)
    x, y = teacher_student_data(teacher, 200, 3, noise_std=0.5, seed=4)
    observe = _probe_losses(x[:8].numpy(), y[:8].numpy())
    summaries = []
    for seed in (0, 1):
        k = llc.loss_kernel(teacher, (x, y), probe=(x[:8], y[:8]), seed=seed, num_draws=4000,
                            num_chains=16, groups=16, progress=False)  # fmt: skip
        g = dln_gibbs_llc(
            teacher, (x, y), nbeta=k.llc.nbeta, localization=k.llc.localization, num_chains=16,
            num_sweeps=2000, seed=seed, progress=False, observe=observe,
        )  # fmt: skip
        z = (k.matrix - g.observed.covariance) / np.hypot(k.mcse, g.observed.mcse)
        summaries.append(_z_summary(z[np.triu_indices(8)]))
    assert _within(np.mean(summaries, axis=0), ONE_SEED_LIMITS), summaries


def test_default_groups_keep_the_grouped_sums_within_two_gib():
    from llc._posterior_cov import with_groups
    from llc.settings import LLCSettings

    def obs(m):
        return LossCovariance((torch.zeros(m, 1), torch.zeros(m, 1)))

    assert with_groups(obs(100), None, LLCSettings()).groups == 8  # 8 chains by default
    assert with_groups(obs(100), None, LLCSettings(num_chains=3)).groups == 3
    assert with_groups(obs(8000), None, LLCSettings()).groups == 4  # 4·8·8000² B = 2.05 GB
    assert with_groups(obs(20_000), None, LLCSettings()).groups == 2  # the floor: 6.4 GB
    assert with_groups(obs(20_000), 5, LLCSettings()).groups == 5  # as asked
