"""Penalty → prior (normalizers, properness), joint priors, scale mixtures, command line."""

import math

import numpy as np
import pytest
import sympy as sp
from scipy import integrate, special

import priors
from priors import ImproperPriorError, Penalty
from priors.__main__ import main
from priors.prior import NUMPY_MODULES

A = sp.Symbol("a", real=True)
LAM = sp.Symbol("lambda", positive=True)


def _quad_real(f):
    return sum(integrate.quad(f, lo, hi, limit=400)[0]
               for lo, hi in [(-np.inf, -1), (-1, 0), (0, 1), (1, np.inf)])


def test_log_penalty_is_generalized_double_pareto_above_weight_one():
    """λ log(1+|a|) ↔ (λ−1)/2 (1+|a|)^{−λ}, proper only for λ > 1 (REFERENCES §4)."""
    prior = priors.prior_from_penalty(LAM * sp.log(1 + sp.Abs(A)), A)
    assert prior.meta["normalizable_if"] == (LAM > 1)
    expected = (LAM - 1) / 2 * (1 + sp.Abs(A)) ** (-LAM)
    assert sp.simplify(prior.density - expected) == 0
    dens = sp.lambdify(A, prior.density.subs(LAM, 3.5))
    assert _quad_real(dens) == pytest.approx(1.0, abs=1e-9)
    # same family as the catalog's double_pareto with s = 1
    gdp = priors.get("double_pareto", s=1)
    lam_c = [s for s in gdp.params if s.name == "lambda"][0]
    assert sp.simplify(gdp.density.subs(lam_c, LAM) - expected) == 0


def test_log_penalty_weight_one_is_improper_and_says_why():
    with pytest.raises(ImproperPriorError) as err:
        priors.prior_from_penalty(sp.log(1 + sp.Abs(A)), A)
    msg = str(err.value)
    assert "tail" in msg and "w > 1" in msg


def test_reweighted_l1_and_tanh_improper():
    with pytest.raises(ImproperPriorError, match="w > 1"):
        priors.prior_from_penalty(sp.log(sp.Rational(1, 10) + sp.Abs(A)), A)
    with pytest.raises(ImproperPriorError, match="not 0"):
        priors.prior_from_penalty(2 * sp.tanh(sp.Abs(A)), A)


@pytest.mark.parametrize(
    ("expr", "support"),
    [
        (sp.Abs(A) ** sp.Rational(1, 2), "real"),
        (A**2 / 2 + sp.Abs(A), "real"),
        (3 * sp.log(1 + A**2 / 2), "real"),
        (2 * A + sp.log(1 + A), "positive"),
    ],
)
def test_normalizer_matches_quadrature(expr, support):
    prior = priors.prior_from_penalty(expr, A, support=support)
    f = sp.lambdify(A, prior.density, modules=NUMPY_MODULES)
    if support == "real":
        mass = _quad_real(f)
    else:
        mass = integrate.quad(f, 0, 1)[0] + integrate.quad(f, 1, np.inf)[0]
    assert mass == pytest.approx(1.0, abs=1e-9)


def test_catalog_roundtrip():
    """penalty(prior) then prior_from_penalty gives the prior back."""
    for name, params in [("laplace", {"b": 2}), ("student_t", {"nu": 3, "s": 1}),
                         ("generalized_gaussian", {"p": 3, "s": 1})]:
        prior = priors.get(name, **params)
        back = priors.prior_from_penalty(priors.penalty(prior))
        for x in (0.0, 0.7, -2.0):
            assert float(back.density.subs(A, x)) == pytest.approx(
                float(prior.density.subs(A, x)), rel=1e-12)


def test_group_laplace_normalizer():
    """Z = 2π^{d/2}Γ(d)/(Γ(d/2)λ^d), checked by 2-D quadrature (d = 2) and radially (d = 5)."""
    g2 = priors.group_laplace(2, lam=1.5)
    f = sp.lambdify(g2.vars, g2.density)
    mass, _ = integrate.dblquad(lambda y, x: f(x, y), -30, 30, -30, 30, epsabs=1e-11)
    assert mass == pytest.approx(1.0, abs=1e-7)
    d, lam = 5, 0.8
    pen = priors.penalty(priors.group_laplace(d, lam=lam))
    z = 2 * math.pi ** (d / 2) * math.gamma(d) / (math.gamma(d / 2) * lam**d)
    assert float(pen.log_normalizer) == pytest.approx(math.log(z), rel=1e-12)
    back = priors.prior_from_penalty(pen)
    assert float(back.meta["log_normalizer"]) == pytest.approx(math.log(z), rel=1e-12)


def test_multivariate_t_normalizer_and_penalty():
    nu = 3.0
    m = priors.multivariate_t(2, nu=nu)
    f = sp.lambdify(m.vars, m.density)
    # radial quadrature: ∫ 2π r p(r) dr
    mass = integrate.quad(lambda r: 2 * math.pi * r * f(r, 0.0), 0, np.inf)[0]
    assert mass == pytest.approx(1.0, abs=1e-9)
    pen = priors.penalty(m)
    a1, a2 = m.vars
    ref = (nu + 2) / 2 * sp.log(1 + (a1**2 + a2**2) / nu)
    assert float((pen.expr - ref).subs({a1: 0.3, a2: -1.2})) == pytest.approx(0, abs=1e-12)
    assert not pen.separable


def test_mutually_exclusive_penalty():
    ex = priors.mutually_exclusive(3, pi=0.4, sigma=1)
    pen = priors.penalty(ex)
    a1, a2, a3 = ex.vars
    l0 = math.log(0.6 * 3 / 0.4 * math.sqrt(2 * math.pi))
    assert float(pen.expr.subs({a1: 0, a2: 0, a3: 0})) == 0
    assert float(pen.expr.subs({a1: 0, a2: 1.5, a3: 0})) == pytest.approx(l0 + 1.125)
    assert pen.expr.subs({a1: 1, a2: 1.5, a3: 0}) == sp.oo
    assert pen.is_convex is False and not pen.separable


def test_scale_mixtures():
    """Exponential mixing of the variance → Laplace; Gamma mixing of the precision → t."""
    s = sp.Symbol("s", positive=True)
    lap = priors.scale_mixture(LAM**2 / 2 * sp.exp(-(LAM**2) * s / 2), s)
    assert sp.simplify(lap.density - LAM / 2 * sp.exp(-LAM * sp.Abs(A))) == 0
    t = priors.scale_mixture(priors.get("gamma", k=1.5, theta=2), over="precision")
    # Gamma(k, θ) on the precision: ν = 2k, scale² = 1/(kθ)
    ref = priors.get("student_t", nu=3, s=1 / math.sqrt(3))
    for x in (0.0, 0.4, -2.5):
        assert float(t.density.subs(A, x)) == pytest.approx(float(ref.density.subs(A, x)),
                                                            rel=1e-12)
    with pytest.raises(ValueError, match="over"):
        priors.scale_mixture(priors.get("exponential"), over="std")


def test_horseshoe_density_matches_half_cauchy_scale_mixture_numerically():
    """Half-Cauchy scale mixture (τ = 1) → horseshoe, by quadrature of the mixture."""
    hs = priors.get("horseshoe", tau=1)
    f = sp.lambdify(A, hs.density, modules=[{"expint": special.expn}, "numpy"])
    for x in (0.3, 1.0, 2.5):
        def integrand(lam, x=x):
            normal = math.exp(-x * x / (2 * lam * lam)) / (lam * math.sqrt(2 * math.pi))
            return normal * 2 / (math.pi * (1 + lam * lam))

        mix = integrate.quad(integrand, 0, np.inf)[0]
        assert float(f(x)) == pytest.approx(mix, rel=1e-8)


def test_cli_derive(capsys):
    assert main(["derive", "student_t", "--nu", "3", "--s", "1"]) == 0
    out = capsys.readouterr().out
    assert "2*log(a**2/3 + 1)" in out and "closed form" in out and "threshold(t=1)" in out
    assert main(["derive", "laplace", "--b", "2", "--latex"]) == 0
    out = capsys.readouterr().out
    assert r"\frac{\left|{a}\right|}{2}" in out
    assert main(["derive", "nope"]) == 2
    assert "unknown prior" in capsys.readouterr().err


def test_cli_fit(tmp_path, capsys):
    x = np.random.default_rng(0).laplace(size=400)
    path = tmp_path / "act.npy"
    np.save(path, x)
    assert main(["fit", str(path), "--families", "laplace,norm", "--penalty"]) == 0
    out = capsys.readouterr().out
    assert "laplace" in out and "penalty of the best fit" in out


def test_penalty_bad_input():
    with pytest.raises(ValueError, match="support"):
        Penalty(A, A, support="sphere")
    with pytest.raises(TypeError, match="Symbol"):
        Penalty(A, "a")
    with pytest.raises(ValueError, match="group size"):
        priors.group_laplace(0)
