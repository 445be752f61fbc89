"""Gaussian closed form: independent formulas, invariances, binned grids and binned samples."""

import math

import numpy as np
import pytest
import torch

from theory.natural_latents import (
    gaussian_natural_latent_errors,
    natural_latent_errors,
    natural_latent_errors_from_samples,
    redundancy_errors,
)

A, B, C = 0.7, 1.0, 0.5
# Z ~ N(0,1); X1 = Z + A n1, X2 = Z + B n2, Λ = Z + C n3 (a noisy estimate of the shared cause).
COV = np.array([[1 + A * A, 1, 1], [1, 1 + B * B, 1], [1, 1, 1 + C * C]])


def partial_corr_mi(cov, i, j, k):
    """I(V_i; V_j | V_k) = -½ log(1 - ρ²_{ij·k}) from the precision matrix of (i, j, k)."""
    sub = cov[np.ix_([i, j, k], [i, j, k])]
    prec = np.linalg.inv(sub)
    rho = -prec[0, 1] / math.sqrt(prec[0, 0] * prec[1, 1])
    return -0.5 * math.log(1 - rho**2)


def test_scalar_case_matches_partial_correlations():
    g = gaussian_natural_latent_errors(COV, [0, 1], 2)
    assert g.mediation == pytest.approx(partial_corr_mi(COV, 0, 1, 2), rel=1e-12)
    assert g.redundancy[0] == pytest.approx(partial_corr_mi(COV, 2, 1, 0), rel=1e-12)
    assert g.redundancy[1] == pytest.approx(partial_corr_mi(COV, 2, 0, 1), rel=1e-12)
    # h(Λ|X1) = ½ log(2πe Var(Λ|X1)).
    var = COV[2, 2] - COV[2, 0] ** 2 / COV[0, 0]
    assert g.conditional_differential_entropy[0] == pytest.approx(
        0.5 * math.log(2 * math.pi * math.e * var), rel=1e-12)
    bits = gaussian_natural_latent_errors(torch.tensor(COV), [0, 1], 2, base=2)
    assert bits.mediation == pytest.approx(g.mediation / math.log(2), rel=1e-12)


def test_shared_cause_itself_is_an_exact_mediator_and_deterministic_is_infinite():
    # Variables (Z, X1, X2): Z mediates exactly; redundancy is I(Z; X2 | X1) > 0.
    cov = np.array([[1, 1, 1], [1, 1 + A * A, 1], [1, 1, 1 + B * B]])
    g = gaussian_natural_latent_errors(cov, [1, 2], 0)
    assert g.mediation == pytest.approx(0.0, abs=1e-12)
    assert g.redundancy[0] == pytest.approx(partial_corr_mi(cov, 0, 2, 1), rel=1e-12)
    d = gaussian_natural_latent_errors(cov, [1, 2], 0, kind="deterministic")
    assert d.redundancy == (math.inf, math.inf) and d.mediation == g.mediation
    # Λ = X1 exactly (a copy): mediation 0, deterministic redundancy 0 for block 1.
    cov4 = np.array([[1 + A * A, 1, 1 + A * A], [1, 1 + B * B, 1], [1 + A * A, 1, 1 + A * A]])
    e = gaussian_natural_latent_errors(cov4, [0, 1], 2, kind="deterministic")
    assert e.mediation == pytest.approx(0.0, abs=1e-9)
    assert e.redundancy[0] == 0.0 and e.redundancy[1] == math.inf
    assert e.conditional_differential_entropy[0] == -math.inf
    s = gaussian_natural_latent_errors(cov4, [0, 1], 2)
    assert s.redundancy[0] == pytest.approx(0.0, abs=1e-9) and s.redundancy[1] == math.inf


def test_blockwise_linear_invariance_and_vector_blocks():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((7, 7))
    cov = m @ m.T + 0.1 * np.eye(7)
    blocks, lat = [(0, 1), (2, 3, 4)], (5, 6)
    g = gaussian_natural_latent_errors(cov, blocks, lat)
    t = np.zeros((7, 7))
    for grp in blocks + [lat]:
        t[np.ix_(grp, grp)] = rng.standard_normal((len(grp), len(grp)))
    g2 = gaussian_natural_latent_errors(t @ cov @ t.T, blocks, lat)
    assert g2.mediation == pytest.approx(g.mediation, rel=1e-8)
    assert g2.redundancy == pytest.approx(g.redundancy, rel=1e-8)
    assert g.mediation > 0 and all(r > 0 for r in g.redundancy)


def grid_joint(cov, g, half_width=6.0):
    """Gaussian density on a g^3 grid (±half_width sd), normalised: a finely binned joint."""
    sd = np.sqrt(np.diag(cov))
    axes = [np.linspace(-half_width * s, half_width * s, g) for s in sd]
    x = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    q = np.einsum("...i,ij,...j->...", x, np.linalg.inv(cov), x)
    p = np.exp(-0.5 * q)
    return p / p.sum(), [ax[1] - ax[0] for ax in axes]


def test_discrete_computation_on_fine_grid_matches_closed_form():
    g = gaussian_natural_latent_errors(COV, [0, 1], 2)
    p, widths = grid_joint(COV, 60)
    r = natural_latent_errors(p, [0, 1], 2)
    assert r.mediation == pytest.approx(g.mediation, abs=1e-6)
    assert r.redundancy == pytest.approx(g.redundancy, abs=1e-6)
    # Discrete H(Λ_δ|X_i) = h(Λ|X_i) - log δ: diverges as δ -> 0 (hence inf for "deterministic").
    det = redundancy_errors(p, [0, 1], 2, "deterministic")
    for i in range(2):
        assert det[i] + math.log(widths[2]) == pytest.approx(
            g.conditional_differential_entropy[i], abs=1e-6)


def cell_integrated_joint(cov, edges, sub=5, half_width=7.0):
    """P(bin_1, bin_2, bin_3) for fixed bin edges, integrating on a finer sub-grid."""
    sd = np.sqrt(np.diag(cov))
    step = (edges[0][1] - edges[0][0]) / sd[0] / sub  # in sd units, same for every axis
    nf = int(round(2 * half_width / step))
    axes = [((np.arange(nf) + 0.5) * step - half_width) * s for s in sd]
    x = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    p = np.exp(-0.5 * np.einsum("...i,ij,...j->...", x, np.linalg.inv(cov), x))
    p /= p.sum()
    for ax in range(3):
        idx = np.digitize(axes[ax], edges[ax])
        m = np.zeros((nf, len(edges[ax]) + 1))
        m[np.arange(nf), idx] = 1.0
        p = np.moveaxis(np.tensordot(p, m, axes=([ax], [0])), -1, ax)
    return p


def binned_truth(width):
    sd = np.sqrt(np.diag(COV))
    edges = [np.arange(-3.5, 3.5 + 1e-9, width) * s for s in sd]
    return natural_latent_errors(cell_integrated_joint(COV, edges), [0, 1], 2), edges


def test_binning_error_shrinks_as_bins_get_finer():
    g = gaussian_natural_latent_errors(COV, [0, 1], 2)
    closed = np.array([g.mediation, *g.redundancy])
    gaps = []
    for width in (1.0, 0.5):
        r, _ = binned_truth(width)
        gaps.append(np.abs(np.array([r.mediation, *r.redundancy]) - closed))
    # Second-order convergence in the bin width: halving it cuts the error ~4-fold
    # (first order would give 2-fold).
    assert np.all(gaps[1] < 0.4 * gaps[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finely_binned_samples_agree_with_closed_form(seed):
    g = gaussian_natural_latent_errors(COV, [0, 1], 2)
    r, edges = binned_truth(0.5)
    x = np.random.default_rng(seed).multivariate_normal(np.zeros(3), COV, size=200_000)
    codes = [np.digitize(x[:, i], edges[i]) for i in range(3)]
    s = natural_latent_errors_from_samples(codes[:2], codes[2], "miller_madow", n_bootstrap=100,
                                           seed=seed)
    est = np.array([s.mediation, *s.redundancy]) - np.array([s.mediation_bias, *s.redundancy_bias])
    se = np.array([s.mediation_se, *s.redundancy_se])
    binned = np.array([r.mediation, *r.redundancy])
    closed = np.array([g.mediation, *g.redundancy])
    # Against the exact errors of the same binning: sampling error only.
    assert np.all(np.abs(est - binned) <= 4 * se)
    # Against the closed form: sampling error plus the (measured) binning error.
    assert np.all(np.abs(est - closed) <= 4 * se + np.abs(binned - closed))


def test_bad_covariances():
    with pytest.raises(ValueError, match="cov must be a square"):
        gaussian_natural_latent_errors(np.ones((3, 2)), [0, 1], 2)
    with pytest.raises(ValueError, match="cov must be symmetric"):
        gaussian_natural_latent_errors(COV + np.triu(np.ones((3, 3)), 1), [0, 1], 2)
    with pytest.raises(ValueError, match="positive semi-definite"):
        gaussian_natural_latent_errors(-COV, [0, 1], 2)
    with pytest.raises(ValueError, match="NaN"):
        gaussian_natural_latent_errors(np.full((3, 3), np.nan), [0, 1], 2)
    with pytest.raises(ValueError, match="used by both observables\\[1\\] and latent"):
        gaussian_natural_latent_errors(COV, [0, (1, 2)], 2)
    with pytest.raises(ValueError, match="latent refers to axis 3"):
        gaussian_natural_latent_errors(COV, [0, 1], 3)
    with pytest.raises(ValueError, match="kind must be"):
        gaussian_natural_latent_errors(COV, [0, 1], 2, kind="both")


def test_degenerate_directions_are_projected_out():
    # Append to X1 an exact copy of Λ: it is constant given Λ, so mediation is unchanged; an
    # exact copy of X1 inside X2 makes X1 and X2 share a noiseless function: infinite mediation.
    t = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]], dtype=float)  # -> (X1, Λ, X2, Λ)
    cov4 = t @ COV @ t.T  # COV is over (X1, X2, Λ)
    g = gaussian_natural_latent_errors(COV, [0, 1], 2)
    g4 = gaussian_natural_latent_errors(cov4, [(0, 1), 2], 3)
    assert g4.mediation == pytest.approx(g.mediation, rel=1e-9)
    t2 = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=float)  # (X1, X2, X1, Λ)
    cov_copy = t2 @ COV @ t2.T
    assert gaussian_natural_latent_errors(cov_copy, [0, (1, 2)], 3).mediation == math.inf
