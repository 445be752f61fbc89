"""Priors and penalties: normalizers by quadrature, known prior↔penalty pairs, bad input."""

import math

import numpy as np
import pytest
import sympy as sp
from scipy import integrate, stats

import priors
from priors import ImproperPriorError, Penalty, Prior
from priors.prior import NUMPY_MODULES

from ._priors_cases import NUMERIC

A = sp.Symbol("a", real=True)



def _mass(prior: Prior) -> float:
    if prior.name == "horseshoe":
        # exp(z) E1(z) overflows in float64 for z > 700: integrate in mpmath (log singularity at 0)
        import mpmath

        g = sp.lambdify(A, prior.density, modules="mpmath")
        return 2 * float(mpmath.quad(g, [0, 1, 10, mpmath.inf]))
    f = sp.lambdify(A, prior.density.subs(prior.var, A), modules=NUMPY_MODULES)
    lo = float(prior.support.inf) if prior.support.inf.is_finite else -np.inf
    pieces = [(lo, 0.0), (0.0, 1.0), (1.0, np.inf)] if lo < 0 else [(0.0, 1.0), (1.0, np.inf)]
    total = 0.0
    for a, b in pieces:
        val, _ = integrate.quad(lambda x: float(f(x)), a, b, limit=400, epsabs=1e-12,
                                epsrel=1e-10)
        total += val
    return total


def test_catalog_has_all_names():
    assert set(NUMERIC) == set(priors.CATALOG)


@pytest.mark.parametrize("name", sorted(NUMERIC))
def test_normalized_by_quadrature(name):
    prior = priors.get(name, **NUMERIC[name])
    atom = 0.0 if prior.atom is None else float(prior.atom)
    assert _mass(prior) + atom == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("name", sorted(NUMERIC))
def test_log_normalizer_reconstructs_density(name):
    """p(a) = exp(−pen(a) − log Z) off the atom, and pen(0) = 0 where p(0) is finite."""
    prior = priors.get(name, **NUMERIC[name])
    pen = priors.penalty(prior)
    xs = [0.3, 1.7, 4.0] + ([] if prior.support != sp.Reals else [-0.9, -2.5])
    for x in xs:
        p = float(prior.density.subs(A, x).evalf(30))
        q = float(sp.exp(-pen.expr.subs(A, x) - pen.log_normalizer).evalf(30))
        assert q == pytest.approx(p, rel=1e-12)
    if pen.zero_at_zero:
        assert pen.expr.subs(A, 0) == 0


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("laplace", {"b": 2}, sp.Abs(A) / 2),
        ("gaussian", {"sigma": 3}, A**2 / 18),
        ("cauchy", {"s": 2}, sp.log(1 + A**2 / 4)),
        ("student_t", {"nu": 5, "s": 1}, 3 * sp.log(1 + A**2 / 5)),
        ("generalized_gaussian", {"p": sp.Rational(1, 2), "s": 1}, sp.sqrt(sp.Abs(A))),
        ("double_pareto", {"lam": 3, "s": 2}, 3 * sp.log(1 + sp.Abs(A) / 2)),
        ("exponential", {"lam": 2}, 2 * A),
        ("half_cauchy", {"s": 1}, sp.log(1 + A**2)),
    ],
)
def test_known_pairs(name, params, expected):
    """REFERENCES §4 table."""
    pen = priors.penalty(priors.get(name, **params))
    assert sp.simplify(pen.expr - expected) == 0


def test_symbolic_student_t_matches_table():
    nu = sp.Symbol("nu", positive=True)
    pen = priors.penalty(priors.get("student_t", s=1))
    assert sp.simplify(pen.expr - (nu + 1) / 2 * sp.log(1 + A**2 / nu)) == 0
    assert pen.params == (nu,)


def test_horseshoe_penalty_form():
    """−θ²/2 − log E1(θ²/2) (τ = 1) up to a constant; p(0) = ∞ so pen(0) is not 0."""
    pen = priors.penalty(priors.get("horseshoe", tau=1))
    ref = -(A**2) / 2 - sp.log(sp.expint(1, A**2 / 2))
    for x in (0.5, 1.0, 3.0):
        assert float((pen.expr - ref).subs(A, x)) == pytest.approx(0.0, abs=1e-12)
    assert not pen.zero_at_zero


def test_spike_and_slab_penalty_is_l0_plus_slab():
    pen = priors.penalty(priors.get("spike_and_slab", pi=0.2, sigma=1))
    l0 = math.log(0.8 / 0.2 * math.sqrt(2 * math.pi))  # log((1−π)/(π g(0)))
    assert float(pen.meta["l0_weight"]) == pytest.approx(l0, rel=1e-12)
    assert pen.expr.subs(A, 0) == 0
    assert float(pen.expr.subs(A, 1.5)) == pytest.approx(l0 + 1.5**2 / 2, rel=1e-12)
    assert float(pen.log_normalizer) == pytest.approx(-math.log(0.8))


@pytest.mark.parametrize(
    ("name", "params", "scipy_dist"),
    [
        ("t", {"df": 3.5, "loc": 0.1, "scale": 0.7}, stats.t(3.5, 0.1, 0.7)),
        ("laplace", {"scale": 2.0}, stats.laplace(scale=2.0)),
        ("gennorm", {"beta": 0.7, "scale": 1.5}, stats.gennorm(0.7, scale=1.5)),
        ("halfgennorm", {"beta": 1.4}, stats.halfgennorm(1.4)),
        ("lognorm", {"s": 0.6, "scale": 2.0}, stats.lognorm(0.6, scale=2.0)),
        ("gamma", {"a": 1.8, "scale": 0.5}, stats.gamma(1.8, scale=0.5)),
        ("invgamma", {"a": 2.2}, stats.invgamma(2.2)),
        ("lomax", {"c": 2.5, "scale": 0.3}, stats.lomax(2.5, scale=0.3)),
        ("genpareto", {"c": 0.4}, stats.genpareto(0.4)),
        ("genpareto", {"c": -0.5}, stats.genpareto(-0.5)),
        ("halfcauchy", {"scale": 0.5}, stats.halfcauchy(scale=0.5)),
        ("expon", {"scale": 0.5}, stats.expon(scale=0.5)),
        ("cauchy", {"loc": -1.0}, stats.cauchy(-1.0)),
        ("norm", {"scale": 2.0}, stats.norm(scale=2.0)),
        ("weibull_min", {"c": 1.5}, stats.weibull_min(1.5)),
    ],
)
def test_from_scipy_matches_scipy_pdf(name, params, scipy_dist):
    prior = Prior.from_scipy(name, **params)
    x = np.array([-2.0, -0.3, 0.05, 0.4, 1.0, 1.9, 3.7])
    np.testing.assert_allclose(prior.pdf(x), scipy_dist.pdf(x), rtol=1e-10, atol=1e-14)
    pen = priors.penalty(prior)
    inside = scipy_dist.pdf(x) > 0
    logp = -pen.to_numpy()(x[inside]) - float(pen.log_normalizer)
    np.testing.assert_allclose(logp, scipy_dist.logpdf(x[inside]), rtol=1e-10)


def test_from_density_normalizes_and_checks():
    lam = sp.Symbol("lambda", positive=True)
    prior = Prior.from_density(sp.exp(-lam * sp.Abs(A)), A)
    assert sp.simplify(prior.density - lam / 2 * sp.exp(-lam * sp.Abs(A))) == 0
    with pytest.raises(ValueError, match="negative"):
        Prior.from_density(A**2 - 1, A)
    with pytest.raises(ImproperPriorError, match="diverges"):
        Prior.from_density(1 / (1 + sp.Abs(A)), A)
    with pytest.raises(TypeError, match="var"):
        Prior.from_density(sp.exp(-A), "a")
    with pytest.raises(ValueError, match="support"):
        Prior.from_density(sp.exp(-A), A, support="complex")


def test_bad_input():
    with pytest.raises(ValueError, match="unknown prior"):
        priors.get("laplacian")
    with pytest.raises(ValueError, match="b: must be > 0"):
        priors.get("laplace", b=-1)
    with pytest.raises(ValueError, match="unknown parameter"):
        priors.get("laplace", scale=1)
    with pytest.raises(ImproperPriorError, match="lam > 1"):
        priors.get("double_pareto", lam=1)
    with pytest.raises(ValueError, match="pi"):
        priors.get("spike_and_slab", pi=1.5, sigma=1)
    with pytest.raises(ValueError, match="unknown scipy.stats family"):
        Prior.from_scipy("studentt", df=3)
    with pytest.raises(ValueError, match="missing shape"):
        Prior.from_scipy("t", scale=1)
    with pytest.raises(ValueError, match="df: must be > 0"):
        Prior.from_scipy("t", df=-2)
    with pytest.raises(ValueError, match="finite"):
        priors.get("gaussian", sigma=float("nan"))
    with pytest.raises(TypeError, match="Prior"):
        priors.penalty("laplace")


def test_score_separability_latex():
    pen = priors.penalty(priors.get("cauchy", s=1))
    assert sp.simplify(pen.diff() - 2 * A / (1 + A**2)) == 0
    assert sp.simplify(pen.score() + pen.diff()) == 0
    assert pen.separable
    assert r"\log" in pen.latex()
    exp_pen = priors.penalty(priors.get("exponential", lam=1))
    assert r"\iota" in exp_pen.latex()
    a1, a2 = sp.symbols("a1 a2", real=True)
    assert Penalty(sp.Abs(a1) + a2**2, (a1, a2)).separable
    assert not Penalty(sp.sqrt(a1**2 + a2**2), (a1, a2)).separable
    assert not priors.penalty(priors.mutually_exclusive(3, pi=0.5, sigma=1)).separable


@pytest.mark.parametrize(
    ("name", "params", "convex"),
    [
        ("laplace", {"b": 1}, True),
        ("gaussian", {"sigma": 1}, True),
        ("generalized_gaussian", {"p": 1.5, "s": 1}, True),
        ("generalized_gaussian", {"p": 0.5, "s": 1}, False),
        ("student_t", {"nu": 3, "s": 1}, False),
        ("exponential", {"lam": 1}, True),
        ("gamma", {"k": 2, "theta": 1}, True),
        ("lognormal", {"mu": 0, "sigma": 1}, False),
        ("spike_and_slab", {"pi": 0.5, "sigma": 1}, False),
    ],
)
def test_convexity(name, params, convex):
    assert priors.penalty(priors.get(name, **params)).is_convex is convex


def test_convexity_region_cauchy():
    """log(1 + a²/s²) is convex exactly on |a| ≤ s."""
    pen = priors.penalty(priors.get("cauchy", s=2))
    region = pen.convexity_region()
    assert region.contains(1.9) is sp.true and region.contains(-1.9) is sp.true
    assert region.contains(2.1) is sp.false and region.contains(-2.1) is sp.false


# Spike-and-slab with slabs whose support is open at 0 (g(0+) = 0 or oo): the atom puts mass at
# exactly 0, so pen(0) = 0 (counting measure) with a finite gradient, and for a > 0
# pen(a) = log((1 - pi)/pi) - log g(a) (see priors.penalty).
OPEN_SLABS = {
    "gamma": (lambda: priors.get("gamma", k=2.5, theta=0.6), stats.gamma(2.5, scale=0.6)),
    "gamma_k<1": (lambda: priors.get("gamma", k=0.6, theta=1.5), stats.gamma(0.6, scale=1.5)),
    "lognormal": (lambda: priors.get("lognormal", mu=0.2, sigma=0.7),
                  stats.lognorm(0.7, scale=math.exp(0.2))),
    "scipy.lognorm": (lambda: Prior.from_scipy("lognorm", s=0.77012, scale=1.11013),
                      stats.lognorm(0.77012, scale=1.11013)),
    "scipy.invgamma": (lambda: Prior.from_scipy("invgamma", a=2.2, scale=0.9),
                       stats.invgamma(2.2, scale=0.9)),
    # slab support (0.5, oo): the penalty's support {0} u (0.5, oo) is not an interval
    "scipy.gamma_loc": (lambda: Prior.from_scipy("gamma", a=2.0, loc=0.5),
                        stats.gamma(2.0, loc=0.5)),
}


@pytest.mark.parametrize("name", sorted(OPEN_SLABS))
def test_spike_and_slab_with_open_slab_support_torch(name):
    import torch

    make, dist = OPEN_SLABS[name]
    pi = 0.3
    pen = priors.penalty(priors.spike_and_slab(make(), pi=pi))
    assert 0 in pen.support and pen.zero_at_zero
    lo = float(dist.support()[0])
    a = torch.tensor([-0.7, 0.0, 0.05, 0.4, 0.9, 1.3, 2.0, 4.5], dtype=torch.float64,
                     requires_grad=True)
    val = pen.to_torch()(a)
    val.sum().backward()
    x = a.detach().numpy()
    on_slab = x > lo
    # direct computation: -log((pi g(a)) / (1 - pi)) and its derivative -(log g)'(a)
    ref = np.where(x == 0, 0.0, np.inf)
    ref[on_slab] = math.log((1 - pi) / pi) - dist.logpdf(x[on_slab])
    h = 1e-6
    dref = np.zeros_like(x)
    dref[on_slab] = -(dist.logpdf(x[on_slab] + h) - dist.logpdf(x[on_slab] - h)) / (2 * h)
    np.testing.assert_allclose(val.detach().numpy(), ref, rtol=1e-10, atol=1e-12)
    assert torch.isfinite(a.grad).all()  # also at 0 and off the support (gradient 0 there)
    np.testing.assert_allclose(a.grad.numpy(), dref, rtol=1e-6, atol=1e-7)
    # float32 input: same dtype, finite gradient at 0
    a32 = torch.zeros(3, requires_grad=True)
    out = pen.to_torch()(a32)
    out.sum().backward()
    assert out.dtype == torch.float32 and torch.equal(a32.grad, torch.zeros(3))


def test_spike_and_slab_open_slab_symbolic_pi_and_subs():
    import torch

    pen = priors.penalty(priors.spike_and_slab("gamma", k=3, theta=0.5))  # pi symbolic
    f = pen.to_torch()
    a = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    pi = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    out = f(a, varpi=pi)
    out.sum().backward()
    g = stats.gamma(3, scale=0.5)
    assert out[0].item() == 0.0
    assert out[1].item() == pytest.approx(math.log(0.8 / 0.2) - g.logpdf(1.0), rel=1e-12)
    assert a.grad[0].item() == 0.0 and torch.isfinite(pi.grad)
    assert pi.grad.item() == pytest.approx(-1 / 0.8 - 1 / 0.2, rel=1e-12)  # d/dpi log((1-pi)/pi)
    fixed = pen.subs(pi=0.2).to_torch()(a.detach())
    torch.testing.assert_close(fixed, out.detach())


def _prox_brute_force_check(pen, t):
    """prox(v) attains the grid minimum of ½(x − v)² + t·pen(x) (grid spacing 1e-3, has 0)."""
    import torch

    h = 1e-3
    grid = torch.arange(0, 9001, dtype=torch.float64) * h
    grid = torch.cat([-grid.flip(0)[:-1], grid])
    v = torch.linspace(-2, 6, 81, dtype=torch.float64)
    pen_t = pen.to_torch()
    out = priors.prox(pen).to_torch()(v, t)
    ours = 0.5 * (out - v) ** 2 + t * pen_t(out)
    obj = 0.5 * (grid[None, :] - v[:, None]) ** 2 + t * pen_t(grid)[None, :]
    best = torch.where(torch.isnan(obj), math.inf, obj).min(dim=1).values
    assert torch.isfinite(ours).all()
    assert torch.all(ours <= best + 1e-10), (ours - best).max()
    assert torch.all(best - ours <= ((out - v).abs() + 10 * t + 1) * h), (best - ours).max()


@pytest.mark.parametrize("name", ["gamma", "lognormal", "scipy.invgamma", "scipy.gamma_loc"])
def test_prox_of_spike_and_open_slab_brute_force(name):
    # gamma_k<1 is left out: there pen(0+) = -inf, so the prox objective has no minimum
    pen = priors.penalty(priors.spike_and_slab(OPEN_SLABS[name][0](), pi=0.3))
    for t in (0.3, 1.0, 2.5):
        _prox_brute_force_check(pen, t)
