"""Proximal operators: brute force on a grid, the Moreau identity, pyproximal's operators."""

import math

import numpy as np
import pytest
import sympy as sp
import torch

import priors
from priors import Penalty

A = sp.Symbol("a", real=True)
H = 1e-3  # grid spacing of the brute-force minimization
GRID = torch.arange(-9000, 9001, dtype=torch.float64) * H  # contains 0 exactly
V = torch.linspace(-6, 6, 97, dtype=torch.float64)

CASES = {
    "laplace": ("laplace", {"b": 0.7}),
    "gaussian": ("gaussian", {"sigma": 1.3}),
    "cauchy": ("cauchy", {"s": 0.8}),
    "student_t": ("student_t", {"nu": 3, "s": 1.5}),
    "gen_gauss_1/2": ("generalized_gaussian", {"p": sp.Rational(1, 2), "s": 1}),
    "gen_gauss_2/3": ("generalized_gaussian", {"p": sp.Rational(2, 3), "s": 1.2}),
    "gen_gauss_0.3": ("generalized_gaussian", {"p": 0.3, "s": 1}),
    "gen_gauss_4": ("generalized_gaussian", {"p": 4, "s": 2}),
    "double_pareto": ("double_pareto", {"lam": 2.5, "s": 0.5}),
    "spike_and_slab": ("spike_and_slab", {"pi": 0.3, "sigma": 2.0}),
    "spike_laplace": ("spike_and_slab", {"pi": 0.2, "slab": "laplace", "b": 1}),
    "exponential": ("exponential", {"lam": 1.7}),
    "half_cauchy": ("half_cauchy", {"s": 1.1}),
    "lognormal": ("lognormal", {"mu": 0.2, "sigma": 0.7}),
    "gamma": ("gamma", {"k": 2.5, "theta": 0.6}),
}
CLOSED = {"laplace", "gaussian", "cauchy", "student_t", "gen_gauss_1/2", "gen_gauss_2/3",
          "gen_gauss_4", "double_pareto", "spike_and_slab", "spike_laplace", "exponential",
          "half_cauchy", "gamma"}


def _brute_force(pen_t, v, t):
    pg = pen_t(GRID)
    obj = 0.5 * (GRID[None, :] - v[:, None]) ** 2 + t * pg[None, :]
    obj = torch.where(torch.isnan(obj), torch.full_like(obj, math.inf), obj)
    return obj.min(dim=1)


def _check_against_grid(pen, prox_fn, t):
    pen_t = pen.to_torch()
    out = prox_fn(V, t)
    ours = 0.5 * (out - V) ** 2 + t * pen_t(out)
    best, idx = _brute_force(pen_t, V, t)
    # never worse than any grid point ...
    assert torch.all(ours <= best + 1e-10), (ours - best).max()
    # ... and not better than the grid allows (the objective's local slope ≤ |x−v| + t|pen'|)
    slope = (out - V).abs() + 10 * t + 1
    assert torch.all(best - ours <= slope * H), (best - ours).max()
    # same minimizer as the grid, except at ties between two local minima (jump thresholds)
    x_bf = GRID[idx]
    far = (out - x_bf).abs() > 2 * H
    if far.any():
        # a tie: the objective at the grid's point is within grid error of ours
        at_bf = 0.5 * (x_bf - V) ** 2 + t * pen_t(x_bf)
        assert torch.all((at_bf - ours)[far].abs() <= slope[far] * H)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("t", [0.3, 1.0, 2.5])
def test_prox_matches_brute_force(case, t):
    name, params = CASES[case]
    pen = priors.penalty(priors.get(name, **params))
    px = priors.prox(pen)
    assert px.closed_form is (case in CLOSED), px.method
    _check_against_grid(pen, px.to_torch(), t)


def test_user_penalty_without_closed_form_uses_numeric_solver():
    """tanh penalty (REFERENCES: no closed form) and log-normal: the numeric torch solver."""
    pen = Penalty(2 * sp.tanh(3 * sp.Abs(A)), A)
    px = priors.prox(pen)
    assert not px.closed_form and "numeric" in px.method
    for t in (0.2, 1.0):
        _check_against_grid(pen, px.to_torch(), t)


@pytest.mark.parametrize(("name", "params"), [("horseshoe", {"tau": 1.0}),
                                              ("gamma", {"k": 0.5, "theta": 1.0})])
def test_prox_is_zero_when_pen0_is_minus_infinity(name, params):
    """p(0) = ∞ (horseshoe; Gamma with k < 1): the MAP is always 0."""
    px = priors.prox(priors.penalty(priors.get(name, **params)))
    assert torch.equal(px.to_torch()(V, 1.0), torch.zeros_like(V))


# ----------------------------------------------------------------------------- Moreau identity
def _clip(z, lo, hi):
    return torch.clamp(z, min=lo, max=hi)


MOREAU = {
    # name, params, prox of the conjugate f* with step 1/t evaluated at z = v/t
    "laplace": ("laplace", {"b": 0.7}, lambda z, t: _clip(z, -1 / 0.7, 1 / 0.7)),
    "gaussian": ("gaussian", {"sigma": 1.3}, lambda z, t: z / (1 + 1.3**2 / t)),
    "exponential": ("exponential", {"lam": 1.7}, lambda z, t: torch.clamp(z, max=1.7)),
}


@pytest.mark.parametrize("case", sorted(MOREAU))
@pytest.mark.parametrize("t", [0.4, 2.0])
def test_moreau_identity(case, t):
    """v = prox_{t f}(v) + t prox_{f*/t}(v/t) for convex f."""
    name, params, prox_conj = MOREAU[case]
    pen = priors.penalty(priors.get(name, **params))
    assert pen.is_convex
    out = priors.prox(pen).to_torch()(V, t)
    torch.testing.assert_close(out + t * prox_conj(V / t, t), V, rtol=0, atol=1e-12)


@pytest.mark.parametrize("p", [sp.Integer(4), sp.Rational(3, 2)])
def test_moreau_identity_generalized_gaussian(p):
    """f = |x|^p, f*(y) = (p−1)(|y|/p)^{p/(p−1)}; both proxes derived by the package."""
    t = 0.8
    f = Penalty(sp.Abs(A) ** p, A)
    q = p / (p - 1)
    fstar = Penalty((p - 1) * (sp.Abs(A) / p) ** q, A)
    assert f.is_convex and fstar.is_convex
    pf, pc = priors.prox(f), priors.prox(fstar)
    assert pf.closed_form and pc.closed_form
    out = pf.to_torch()(V, t) + t * pc.to_torch()(V / t, 1 / t)
    torch.testing.assert_close(out, V, rtol=0, atol=1e-10)


def test_moreau_identity_group_lasso():
    t, lam = 0.7, 1.5
    pen = priors.penalty(priors.group_laplace(3, lam=lam))
    v = torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    out = priors.prox(pen).to_torch()(v, t)
    n = (v / t).norm(dim=-1, keepdim=True)
    proj = (v / t) * torch.clamp(lam / n, max=1.0)  # projection onto the λ-ball (f* = ι)
    torch.testing.assert_close(out + t * proj, v, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- pyproximal
pyproximal = pytest.importorskip("pyproximal")
XS = np.linspace(-5, 5, 201)


def _ours(pen, t):
    return priors.prox(pen).to_torch()(torch.tensor(XS, dtype=torch.float64), t).numpy()


@pytest.mark.parametrize("tau", [0.3, 1.7])
def test_pyproximal_l1_l2_log_geman(tau):
    np.testing.assert_allclose(
        _ours(priors.penalty(priors.get("laplace", b=0.5)), tau),
        pyproximal.L1(sigma=2.0).prox(XS, tau), atol=1e-12)
    # pyproximal.L2(sigma) is sigma/2 ||x||^2
    np.testing.assert_allclose(
        _ours(priors.penalty(priors.get("gaussian", sigma=0.5)), tau),
        pyproximal.L2(sigma=4.0).prox(XS, tau), atol=1e-12)
    sigma, gamma = 1.3, 2.0
    log_pen = Penalty(sigma / sp.log(gamma + 1) * sp.log(gamma * sp.Abs(A) + 1), A)
    np.testing.assert_allclose(_ours(log_pen, tau),
                               pyproximal.Log(sigma=sigma, gamma=gamma).prox(XS, tau), atol=1e-10)
    geman = Penalty(sigma * sp.Abs(A) / (sp.Abs(A) + 0.5), A)
    assert priors.prox(geman).closed_form
    np.testing.assert_allclose(_ours(geman, tau),
                               pyproximal.Geman(sigma=sigma, gamma=0.5).prox(XS, tau), atol=1e-8)


@pytest.mark.parametrize("tau", [0.3, 1.7])
def test_pyproximal_etp_numeric(tau):
    """Exponential-type penalty: no polynomial stationarity, our numeric solver vs pyproximal."""
    sigma, gamma = 1.0, 1.5
    etp = Penalty(sigma / (1 - sp.exp(-gamma)) * (1 - sp.exp(-gamma * sp.Abs(A))), A)
    assert not priors.prox(etp).closed_form
    np.testing.assert_allclose(_ours(etp, tau),
                               pyproximal.ETP(sigma=sigma, gamma=gamma).prox(XS, tau), atol=1e-7)


def test_pyproximal_l0_and_threshold_convention():
    """L0: ours is v·1[|v| > √(2t)] (REFERENCES); pyproximal.L0 thresholds at τσ instead."""
    t = 0.8
    l0 = Penalty(sp.Piecewise((0, sp.Eq(A, 0)), (1, True)), A)
    px = priors.prox(l0)
    assert px.closed_form
    thr = math.sqrt(2 * t)
    np.testing.assert_array_equal(_ours(l0, t), pyproximal.L0(sigma=thr).prox(XS, 1.0))
    assert px.threshold(t) == pytest.approx(thr, rel=1e-7)


def test_pyproximal_group_lasso():
    lam, tau = 1.2, 0.9
    v = np.random.default_rng(0).normal(size=(40, 3)) * 2
    ours = priors.prox(priors.penalty(priors.group_laplace(3, lam=lam))).to_torch()(
        torch.tensor(v), tau).numpy()
    ref = pyproximal.L21(ndim=3, sigma=lam).prox(v.T.ravel(), tau).reshape(3, -1).T
    np.testing.assert_allclose(ours, ref, atol=1e-12)


# ----------------------------------------------------------------------------- thresholds, joint
def test_thresholds():
    lap = priors.prox(priors.penalty(priors.get("laplace")))
    b, t = sp.Symbol("b", positive=True), sp.Symbol("t", positive=True)
    assert sp.simplify(lap.threshold_expr - t / b) == 0
    assert lap.threshold(0.6, b=1.0) == pytest.approx(0.6, rel=1e-7)
    # log(1+|x|): threshold t for t ≤ 1; for t > 1 the prox jumps at a larger |v|
    log_px = priors.prox(Penalty(sp.log(1 + sp.Abs(A)), A))
    assert log_px.threshold(0.5) == pytest.approx(0.5, rel=1e-7)
    jump = log_px.threshold(2.0)
    f = log_px.to_torch()
    just_above = f(torch.tensor([jump * (1 + 1e-6)], dtype=torch.float64), 2.0).item()
    assert just_above > 0.5  # a jump, not a continuous start at 0

    # independent: the v where F(z(v)) = F(0), z = ½[(v−1) + √((v+1)² − 4t)] (REFERENCES)
    def gap(v, t=2.0):
        z = 0.5 * ((v - 1) + math.sqrt((v + 1) ** 2 - 4 * t))
        return 0.5 * (z - v) ** 2 + t * math.log1p(z) - 0.5 * v**2

    from scipy.optimize import brentq

    assert jump == pytest.approx(brentq(gap, 2 * math.sqrt(2) - 1, 5.0, xtol=1e-14), rel=1e-7)
    # L1/2 (Xu et al. 2012, objective (x−y)² + λ|x|^{1/2}, λ = 2t): threshold (54^{1/3}/4) λ^{2/3}
    half = priors.prox(priors.penalty(priors.get("generalized_gaussian", p=0.5, s=1)))
    t = 0.7
    assert half.threshold(t) == pytest.approx(54 ** (1 / 3) / 4 * (2 * t) ** (2 / 3), rel=1e-6)


def test_multivariate_t_and_exclusive_prox_brute_force():
    pen = priors.penalty(priors.multivariate_t(2, nu=3))
    px = priors.prox(pen)
    assert px.closed_form
    f, pen_t = px.to_torch(), pen.to_torch()
    g = torch.linspace(-5, 5, 401, dtype=torch.float64)
    gx, gy = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([gx.ravel(), gy.ravel()], -1)
    pg = pen_t(pts)
    for v in ([3.0, -1.0], [0.4, 0.2], [-4.5, 2.0]):
        vt = torch.tensor(v, dtype=torch.float64)
        out = f(vt[None], 1.5)[0]
        ours = 0.5 * ((out - vt) ** 2).sum() + 1.5 * pen_t(out[None])[0]
        best = (0.5 * ((pts - vt) ** 2).sum(-1) + 1.5 * pg).min()
        assert ours <= best + 1e-12
    ex = priors.penalty(priors.mutually_exclusive(3, pi=0.4, sigma=1))
    fx = priors.prox(ex).to_torch()
    v = torch.tensor([[3.0, -3.5, 0.2], [0.5, 0.1, -0.3]], dtype=torch.float64)
    out = fx(v, 1.0)
    assert (out != 0).sum(-1).tolist() == [1, 0]
    assert out[0, 1].item() == pytest.approx(-3.5 / 2)  # Gaussian slab σ = 1: x = v/(1 + t)


def test_bad_input():
    px = priors.prox(priors.penalty(priors.get("laplace", b=1)))
    f = px.to_torch()
    with pytest.raises(TypeError, match="Tensor"):
        f([1.0], 1.0)
    with pytest.raises(ValueError, match="non-negative"):
        f(torch.ones(2), -1.0)
    with pytest.raises(ValueError, match="parameters"):
        priors.prox(priors.penalty(priors.get("lognormal"))).to_torch()
    with pytest.raises(TypeError, match="Penalty"):
        priors.prox(priors.get("laplace"))
    a1, a2 = sp.symbols("a1 a2", real=True)
    with pytest.raises(NotImplementedError, match="radial"):
        priors.prox(Penalty(sp.Abs(a1 * a2), (a1, a2)))


def test_dtype_preserved_and_t_tensor():
    f = priors.prox(priors.penalty(priors.get("cauchy", s=1))).to_torch()
    v = torch.linspace(-4, 4, 9)
    out = f(v, torch.full_like(v, 0.5))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, f(v.double(), 0.5).float())


@pytest.mark.parametrize(
    ("name", "params", "pi"),
    [("laplace", {"loc": 0.5, "scale": 0.8}, None),
     ("t", {"df": 2.7, "scale": 0.6}, 0.6),
     ("lognorm", {"s": 0.5, "scale": 1.5}, 0.4),
     ("gennorm", {"beta": 0.8}, None)],
)
def test_prox_of_scipy_priors_brute_force(name, params, pi):
    """Priors as priors.fit returns them (shifted, hurdle/spike-and-slab, positive slabs)."""
    prior = priors.Prior.from_scipy(name, **params)
    if pi is not None:
        prior = priors.spike_and_slab(prior, pi=pi)
    pen = priors.penalty(prior)
    _check_against_grid(pen, priors.prox(pen).to_torch(), 0.7)
