"""Natural latents on explicit discrete joints: exact examples, baselines, theorem, bad input."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.natural_latents import (
    common_part,
    isomorphism_bound,
    mediation_error,
    natural_latent_errors,
    redundancy_errors,
)

# --- independent reference implementations (plain loops over marginals, not the library) ---


def H(p, axes):
    """Entropy (nats) of the marginal on `axes`, via an explicit sum."""
    drop = tuple(a for a in range(p.ndim) if a not in axes)
    q = p.sum(axis=drop).ravel() if drop else p.ravel()
    return -sum(v * math.log(v) for v in q if v > 0)


def cond_H(p, a, c):
    return H(p, tuple(a) + tuple(c)) - H(p, tuple(c))


def cmi(p, a, b, c=()):
    return (H(p, tuple(a) + tuple(c)) + H(p, tuple(b) + tuple(c)) - H(p, tuple(a) + tuple(b)
            + tuple(c)) - H(p, tuple(c)))


def random_joint(rng, shape, sparsity=0.3):
    p = rng.dirichlet(np.full(int(np.prod(shape)), 0.7)).reshape(shape)
    p[rng.random(shape) < sparsity] = 0.0
    if p.sum() == 0:
        p.flat[0] = 1.0
    return p / p.sum()


# --- biased coin -----------------------------------------------------------------------------


def coin_joint(n):
    """p[θ, a, b]: θ ∈ {0.2, 0.8} equally likely, a, b head counts of two blocks of n flips."""
    p = np.zeros((2, n + 1, n + 1))
    for t, th in enumerate((0.2, 0.8)):
        pa = np.array([math.comb(n, k) * th**k * (1 - th) ** (n - k) for k in range(n + 1)])
        p[t] = 0.5 * np.outer(pa, pa)
    return p


def coin_redundancy_reference(n):
    """H(θ|X_A) and I(θ; X_B | X_A) from binomial posteriors, computed directly."""

    def lik(k, m, th):
        return math.comb(m, k) * th**k * (1 - th) ** (m - k)

    def h2(q):
        return 0.0 if q in (0.0, 1.0) else -(q * math.log(q) + (1 - q) * math.log(1 - q))

    # H(θ | X_A): posterior after k heads of n.
    h_a = 0.0
    for k in range(n + 1):
        w = 0.5 * lik(k, n, 0.2) + 0.5 * lik(k, n, 0.8)
        h_a += w * h2(0.5 * lik(k, n, 0.8) / w)
    # H(θ | X_A, X_B) = H(θ | total heads of 2n flips) since the count is sufficient.
    h_ab = 0.0
    for k in range(2 * n + 1):
        w = 0.5 * lik(k, 2 * n, 0.2) + 0.5 * lik(k, 2 * n, 0.8)
        h_ab += w * h2(0.5 * lik(k, 2 * n, 0.8) / w)
    return h_a, h_a - h_ab


@pytest.mark.parametrize("n", [1, 2, 5, 10, 20])
def test_biased_coin_matches_binomial_reference(n):
    p = coin_joint(n)
    det_ref, sto_ref = coin_redundancy_reference(n)
    r = natural_latent_errors(p, [1, 2], 0)
    assert abs(r.mediation) <= 1e-12
    assert r.redundancy == pytest.approx((sto_ref, sto_ref), abs=1e-12)
    rd = redundancy_errors(p, [1, 2], 0, "deterministic")
    assert rd == pytest.approx((det_ref, det_ref), abs=1e-12)


def test_biased_coin_redundancy_falls_with_n():
    sto = [natural_latent_errors(coin_joint(n), [1, 2], 0).redundancy[0] for n in range(1, 31)]
    det = [redundancy_errors(coin_joint(n), [1, 2], 0, "deterministic")[0] for n in range(1, 31)]
    # H(θ|X_A) falls from n = 1; I(θ; X_B | X_A) first rises (n = 1 -> 2: X_B carries more
    # about θ while X_A still leaves it uncertain), then falls.
    assert sto[1] > sto[0]
    assert all(b < a for a, b in zip(sto[1:], sto[2:]))
    assert all(b < a for a, b in zip(det, det[1:]))
    assert sto[-1] < 0.01 * max(sto) and det[-1] < 0.01 * max(det)  # towards 0


def test_coin_flip_blocks_as_tuples_of_axes_match_counts():
    # Each block as n separate flip axes: the count is sufficient, so the errors agree.
    n = 3
    p = np.zeros((2,) + (2,) * (2 * n))
    for t, th in enumerate((0.2, 0.8)):
        for idx in np.ndindex(*(2,) * (2 * n)):
            k = sum(idx)
            p[(t,) + idx] = 0.5 * th**k * (1 - th) ** (2 * n - k)
    blocks = [tuple(range(1, n + 1)), tuple(range(n + 1, 2 * n + 1))]
    r_flip = natural_latent_errors(p, blocks, 0, base=2)
    r_count = natural_latent_errors(coin_joint(n), [1, 2], 0, base=2)
    assert r_flip.mediation == pytest.approx(0.0, abs=1e-12)
    assert r_flip.redundancy == pytest.approx(r_count.redundancy, abs=1e-12)
    assert r_flip.observables == ((1, 2, 3), (4, 5, 6)) and r_flip.units == "bits"


# --- baselines -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_constant_latent_baseline(seed):
    rng = np.random.default_rng(seed)
    pxx = random_joint(rng, (3, 4))
    p = np.zeros((3, 4, 2))
    p[:, :, 1] = pxx  # Λ is always 1
    mi = H(pxx, (0,)) + H(pxx, (1,)) - H(pxx, (0, 1))
    for kind in ("stochastic", "deterministic"):
        r = natural_latent_errors(p, [0, 1], 2, kind)
        assert r.redundancy == pytest.approx((0.0, 0.0), abs=1e-12)
        assert r.mediation == pytest.approx(mi, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_latent_equal_to_one_view_baseline(seed):
    rng = np.random.default_rng(seed)
    pxx = random_joint(rng, (3, 4))
    p = np.zeros((3, 4, 3))
    for x1 in range(3):
        p[x1, :, x1] = pxx[x1]
    h12 = H(pxx, (0, 1)) - H(pxx, (1,))
    for kind in ("stochastic", "deterministic"):
        r = natural_latent_errors(p, [0, 1], 2, kind)
        assert r.mediation == pytest.approx(0.0, abs=1e-12)
        assert r.redundancy == pytest.approx((0.0, h12), abs=1e-12)


# --- random joints: formulas, theorem, zero safety ------------------------------------------


def test_errors_match_entropy_formulas_on_random_joints():
    rng = np.random.default_rng(1)
    for _ in range(200):
        shape = tuple(rng.integers(1, 4, size=5))
        p = random_joint(rng, shape, sparsity=rng.uniform(0, 0.6))
        blocks = [(0,), (1, 2), (3,)]
        lat = (4,)
        med_ref = sum(cond_H(p, b, lat) for b in blocks) - cond_H(p, (0, 1, 2, 3), lat)
        sto_ref = [cmi(p, lat, tuple(a for b in blocks if b is not blk for a in b), blk)
                   for blk in blocks]
        det_ref = [cond_H(p, lat, blk) for blk in blocks]
        assert mediation_error(p, blocks, 4) == pytest.approx(med_ref, abs=1e-10)
        assert redundancy_errors(p, blocks, 4) == pytest.approx(sto_ref, abs=1e-10)
        assert redundancy_errors(p, blocks, 4, "deterministic") == pytest.approx(det_ref,
                                                                                 abs=1e-10)


def test_isomorphism_theorem_on_thousands_of_random_joints():
    rng = np.random.default_rng(2024)
    worst = math.inf
    for t in range(3000):
        shape = tuple(rng.integers(2, 4, size=4))
        p = random_joint(rng, shape, sparsity=rng.uniform(0, 0.8))
        # Mix in near-natural cases: Λ' a noisy function of Λ, so both sides are small.
        if t % 3 == 0:
            k = min(shape[2], shape[3])
            p = p * 0.05
            diag = np.zeros(shape)
            for i in range(k):
                diag[:, :, i, i] = rng.random()
            p = p + diag * 0.95 / diag.sum()
        for lat, other in ((2, 3), (3, 2)):
            b = isomorphism_bound(p, [0, 1], lat, other)
            assert b.holds, (t, b)
            assert b.conditional_entropy <= b.sharp_bound + 1e-9 <= b.bound + 2e-9
            worst = min(worst, b.slack)
    assert worst >= -1e-9


@settings(max_examples=300, deadline=None)
@given(
    shape=st.tuples(*[st.integers(1, 3)] * 4),
    seed=st.integers(0, 2**32 - 1),
    sparsity=st.floats(0.0, 0.9),
    base=st.sampled_from([math.e, 2.0, 10.0]),
)
def test_theorem_and_invariants_hypothesis(shape, seed, sparsity, base):
    p = random_joint(np.random.default_rng(seed), shape, sparsity)
    b = isomorphism_bound(p, [0, 1], 2, 3, base=base)
    assert b.conditional_entropy <= b.bound + 1e-9
    sto = natural_latent_errors(p, [0, 1], 2, base=base)
    det = natural_latent_errors(p, [0, 1], 2, "deterministic", base=base)
    for v in (sto.mediation, *sto.redundancy, *det.redundancy, b.conditional_entropy):
        assert math.isfinite(v) and v >= -1e-12
    # Stochastic redundancy I(Λ;X_-i|X_i) ≤ H(Λ|X_i).
    assert all(s <= d + 1e-12 for s, d in zip(sto.redundancy, det.redundancy))
    nats = natural_latent_errors(p, [0, 1], 2)
    assert sto.mediation == pytest.approx(nats.mediation / math.log(base), abs=1e-12)


def test_stochastic_redundancy_does_not_give_the_theorem():
    # An independent fair coin Λ' has zero stochastic redundancy but H(Λ'|Λ) = log 2.
    pxx = np.array([[0.4, 0.1], [0.1, 0.4]])
    p = np.einsum("ab,c,d->abcd", pxx, [1.0], [0.5, 0.5])
    assert redundancy_errors(p, [0, 1], 3) == pytest.approx((0.0, 0.0), abs=1e-12)
    b = isomorphism_bound(p, [0, 1], 2, 3)
    assert b.conditional_entropy == pytest.approx(math.log(2))
    assert b.redundancy == pytest.approx((math.log(2), math.log(2)))


def test_zeros_are_safe_and_torch_matches_numpy():
    rng = np.random.default_rng(3)
    p = random_joint(rng, (4, 4, 3), sparsity=0.85)
    p[0] = 0.0
    p /= p.sum()
    r = natural_latent_errors(p, [0, 1], 2)
    vals = [r.mediation, *r.redundancy]
    assert all(math.isfinite(v) and v >= -1e-12 for v in vals)
    rt = natural_latent_errors(torch.tensor(p, dtype=torch.float64), [0, 1], 2)
    assert rt.mediation == pytest.approx(r.mediation, abs=1e-14)
    r32 = natural_latent_errors(torch.tensor(p, dtype=torch.float32), [0, 1], 2, normalize=True)
    assert r32.redundancy == pytest.approx(r.redundancy, abs=1e-5)
    # Point masses: everything is exactly 0.
    q = np.zeros((2, 2, 2))
    q[1, 0, 1] = 1.0
    r0 = natural_latent_errors(q, [0, 1], 2, "deterministic")
    assert (r0.mediation, *r0.redundancy) == (0.0, 0.0, 0.0)


def test_unnamed_axes_are_summed_out():
    rng = np.random.default_rng(4)
    p = random_joint(rng, (2, 3, 2, 3))
    full = natural_latent_errors(p, [0, 1], 3)
    marg = natural_latent_errors(p.sum(axis=2), [0, 1], 2)
    assert full.mediation == pytest.approx(marg.mediation, abs=1e-13)
    assert full.redundancy == pytest.approx(marg.redundancy, abs=1e-13)


def test_report_plot_returns_figure():
    import matplotlib

    matplotlib.use("Agg")
    fig = natural_latent_errors(coin_joint(3), [1, 2], 0).plot()
    assert fig.axes and len(fig.axes[0].patches) == 3


# --- common part -----------------------------------------------------------------------------


def test_common_part_recovers_block_structure():
    rng = np.random.default_rng(5)
    # A has 6 values, B has 5; the support is block-diagonal after hidden permutations.
    m = np.zeros((6, 5))
    m[np.ix_([0, 1], [0])] = rng.random((2, 1))
    m[np.ix_([2, 3, 4], [1, 2])] = rng.random((3, 2))
    m[np.ix_([5], [3, 4])] = rng.random((1, 2))
    pa, pb = rng.permutation(6), rng.permutation(5)
    m = m[pa][:, pb] / m.sum()
    cp = common_part(m, 0, 1)
    assert cp.n_components == 3
    # Same component <=> same original block.
    block_a = np.array([0, 0, 1, 1, 1, 2])[pa]
    block_b = np.array([0, 1, 1, 2, 2])[pb]
    for i in range(6):
        for j in range(5):
            assert (cp.labels_a[i] == cp.labels_b[j]) == (block_a[i] == block_b[j])
    hk = -sum(q * math.log(q) for q in cp.probabilities)
    assert cp.entropy == pytest.approx(hk)
    mi = H(m, (0,)) + H(m, (1,)) - H(m, (0, 1))
    assert cp.mutual_information == pytest.approx(mi, abs=1e-12)
    assert cp.entropy <= cp.mutual_information + 1e-12
    r = cp.errors()
    assert r.redundancy == pytest.approx((0.0, 0.0), abs=1e-12)
    assert r.mediation == pytest.approx(mi - cp.entropy, abs=1e-12)


def test_common_part_exact_natural_latent_iff_gk_equals_mi():
    # Within each block A and B are independent: then K is an exact natural latent.
    blk = [np.outer([0.3, 0.7], [0.5, 0.5]), np.outer([1.0], [0.2, 0.3, 0.5])]
    m = np.zeros((3, 5))
    m[:2, :2] = 0.4 * blk[0]
    m[2:, 2:] = 0.6 * blk[1]
    cp = common_part(m, 0, 1, base=2)
    assert cp.is_natural_latent and cp.n_components == 2
    assert cp.entropy == pytest.approx(-(0.4 * math.log2(0.4) + 0.6 * math.log2(0.6)))
    # Full support but dependent: common part is trivial, so no exact deterministic latent.
    full = common_part(np.array([[0.4, 0.1], [0.1, 0.4]]), 0, 1)
    assert full.n_components == 1 and full.entropy == 0.0 and not full.is_natural_latent


def test_common_part_blocks_and_zero_mass_values():
    p = np.zeros((2, 2, 3))  # A = axes (0, 1), B = axis 2; value (1, 1) of A never occurs
    p[0, 0, 0] = p[0, 1, 0] = 0.25
    p[1, 0, 1] = 0.5
    cp = common_part(p, (0, 1), 2)
    assert cp.labels_a.shape == (2, 2) and cp.labels_a[1, 1] == -1 and cp.labels_b[2] == -1
    assert cp.labels_a[0, 0] == cp.labels_a[0, 1] == cp.labels_b[0] != cp.labels_a[1, 0]
    assert cp.joint.shape == (2, 2, 3, 2) and cp.is_natural_latent


# --- bad input -------------------------------------------------------------------------------


def test_bad_joint_input():
    p = np.full((2, 2, 2), 1 / 8)
    neg = p.copy()
    neg[0, 0, 0], neg[1, 1, 1] = -0.1, 0.125 + 0.1 + 0.125
    with pytest.raises(ValueError, match="joint has negative entries"):
        natural_latent_errors(neg, [0, 1], 2)
    with pytest.raises(ValueError, match="joint sums to 2.*normalize=True"):
        natural_latent_errors(2 * p, [0, 1], 2)
    r = natural_latent_errors(2 * p, [0, 1], 2, normalize=True)
    assert r.mediation == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="NaN"):
        natural_latent_errors(np.full((2, 2, 2), np.nan), [0, 1], 2)
    with pytest.raises(ValueError, match="cannot normalise"):
        mediation_error(np.zeros((2, 2, 2)), [0, 1], 2, normalize=True)
    with pytest.raises(TypeError, match="joint must be a real numeric"):
        mediation_error("abc", [0, 1], 2)


def test_bad_roles():
    p = np.full((2, 2, 2, 2), 1 / 16)
    with pytest.raises(ValueError, match="axis 1 is used by both observables\\[0\\] and latent"):
        natural_latent_errors(p, [(0, 1), 2], 1)
    with pytest.raises(ValueError, match="used by both observables\\[0\\] and observables\\[1\\]"):
        natural_latent_errors(p, [(0, 1), (1, 2)], 3)
    with pytest.raises(ValueError, match="latent refers to axis 5, but the joint has only 4"):
        natural_latent_errors(p, [0, 1], 5)
    with pytest.raises(ValueError, match="observables\\[1\\] refers to axis -7"):
        natural_latent_errors(p, [0, -7], 3)
    with pytest.raises(ValueError, match="observables\\[0\\] is an empty block"):
        natural_latent_errors(p, [(), 1], 3)
    with pytest.raises(ValueError, match="at least 2 blocks"):
        natural_latent_errors(p, [0], 3)
    with pytest.raises(TypeError, match="observables must be a list"):
        natural_latent_errors(p, 0, 3)
    with pytest.raises(ValueError, match="kind must be"):
        natural_latent_errors(p, [0, 1], 3, kind="exact")
    with pytest.raises(ValueError, match="base must be"):
        natural_latent_errors(p, [0, 1], 3, base=1)
    with pytest.raises(ValueError, match="used by both latent and other_latent"):
        isomorphism_bound(p, [0, 1], 2, 2)
    with pytest.raises(ValueError, match="used by both observables\\[0\\] and observables\\[1\\]"):
        common_part(p, 0, (0, 1))
