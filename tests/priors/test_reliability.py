"""Defects found by fuzzing (issue 18) and a new user's first hour (issue 19), one test each.

Large parameters, stable torch penalties in every dtype, the proxes' contract on NaN/inf/t,
densities that are checked, the CLI's messages, and ``priors.fit``'s pooling and Laplace row.
"""

import math
import subprocess
import sys
import time
import warnings

import mpmath
import numpy as np
import pytest
import sympy as sp
import torch
from scipy import stats

import priors
from priors import Penalty, Prior

A = sp.Symbol("a", real=True)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    pass


def _ref_logpdf_t(x, nu, s):
    """log density of Student-t in mpmath (50 digits)."""
    with mpmath.workdps(50):
        nu, s, x = mpmath.mpf(nu), mpmath.mpf(s), mpmath.mpf(x)
        return float(
            mpmath.loggamma((nu + 1) / 2)
            - mpmath.loggamma(nu / 2)
            - mpmath.log(mpmath.sqrt(nu * mpmath.pi) * s)
            - (nu + 1) / 2 * mpmath.log1p(x**2 / (nu * s**2))
        )


# ----------------------------------------------------------------------------- defect 9
@pytest.mark.parametrize("nu", [1e5, 1e6, 1e8, 1e10])
def test_student_t_large_nu_is_fast_and_matches_scipy(nu):
    t0 = time.perf_counter()
    prior = priors.get("student_t", nu=nu, s=1.5)
    pen = priors.penalty(prior)
    f = pen.to_torch()
    px = priors.prox(pen).to_torch()
    assert time.perf_counter() - t0 < 10
    x = np.array([0.0, 0.3, 1.0, 5.0, 30.0, 1e3])
    ref = np.array([_ref_logpdf_t(xi, nu, 1.5) for xi in x])
    np.testing.assert_allclose(prior.logpdf(x), ref, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(stats.t(df=nu, scale=1.5).logpdf(x), ref, rtol=1e-9, atol=1e-9)
    got = -f(torch.tensor(x, dtype=torch.float64)) - float(pen.log_normalizer)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12, atol=1e-10)
    # the prox of a nearly quadratic penalty: x = v / (1 + t/s²) to O(1/nu)
    v = torch.tensor([-3.0, 0.1, 1.0, 10.0], dtype=torch.float64)
    np.testing.assert_allclose(px(v, 1.0).numpy(), (v / (1 + 1 / 1.5**2)).numpy(), rtol=1e-3)


@pytest.mark.parametrize("nu", [1e11, 1e20, 1e300])
def test_student_t_beyond_nu_max_is_refused(nu):
    with pytest.raises(ValueError, match="nu"):
        priors.get("student_t", nu=nu)
    with pytest.raises(ValueError, match="nu"):
        priors.get("student_t").subs(nu=nu)


def test_large_integer_parameters_are_floats_not_huge_exact_numbers():
    t0 = time.perf_counter()
    p = priors.get("student_t", s=1).subs(nu=10**6)
    priors.penalty(p)
    assert time.perf_counter() - t0 < 5


# ----------------------------------------------------------------------------- defect 10
@pytest.mark.parametrize("kind", ["halfnorm", "uniform", "exponential", "near_constant"])
def test_degenerate_lomax_fit_gives_penalty_and_prox_quickly(kind):
    rng = np.random.default_rng(0)
    x = {
        "halfnorm": np.abs(rng.normal(size=500)),
        "uniform": rng.uniform(size=500),
        "exponential": rng.exponential(size=500),
        "near_constant": 1 + 1e-9 * rng.normal(size=500),
    }[kind]
    fitted = priors.fit(x, families=["lomax"], gof_top=0).fits[0]
    t0 = time.perf_counter()
    pen = priors.penalty(fitted.prior())
    f = priors.prox(pen).to_torch()
    assert time.perf_counter() - t0 < 10
    a = np.array([0.0, 0.1, 1.0, 3.0])
    logp = stats.lomax(**fitted.params).logpdf(a)
    got = -pen.to_torch()(torch.tensor(a, dtype=torch.float64)).numpy() - float(pen.log_normalizer)
    np.testing.assert_allclose(got, logp, rtol=1e-10, atol=1e-10)
    v = torch.tensor([-1.0, 0.01, 0.5, 2.0, 10.0], dtype=torch.float64)
    out = f(v, 1.0)
    # brute force on a grid of the support [0, 12]
    grid = torch.linspace(0, 12, 120001, dtype=torch.float64)
    obj = 0.5 * (grid[None] - v[:, None]) ** 2 + pen.to_torch()(grid)[None]
    ref = grid[obj.argmin(1)]
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=2e-4)


# ----------------------------------------------------------------------------- defect 11
def _ref_penalty_mp(name, x):
    """mpmath reference values of the catalog penalties (pen(0) = 0 except the horseshoe)."""
    if name == "horseshoe":  # tau = 1: -log(e^z E1(z)), z = x²/2
        z = x**2 / 2
        return -(z + mpmath.log(mpmath.e1(z)))
    if name == "student_t":  # nu = 3, s = 1
        return 2 * mpmath.log1p(x**2 / 3)
    return mpmath.log1p(x**2)  # cauchy, s = 1


def _ref_penalty(name, x):
    with mpmath.workdps(120):  # z + log E1(z) cancels ~2·log10(x) digits
        return float(_ref_penalty_mp(name, mpmath.mpf(x)))


_PRIORS = {"horseshoe": {"tau": 1}, "student_t": {"nu": 3, "s": 1}, "cauchy": {"s": 1}}
_DTYPES = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 1e-2, torch.float16: 2e-3}


@pytest.mark.parametrize("name", sorted(_PRIORS))
@pytest.mark.parametrize("dtype", list(_DTYPES), ids=str)
def test_torch_penalty_values_and_gradients_in_every_dtype(name, dtype):
    f = priors.penalty(priors.get(name, **_PRIORS[name])).to_torch()
    top = torch.finfo(dtype).max
    xs = [x for x in (0.3, 1.0, 100.0, 250.0, 300.0, 1e4, 1e10, 1e30) if x < top]
    x = torch.tensor(xs, dtype=dtype, requires_grad=True)
    y = f(x)
    assert y.dtype == dtype
    (g,) = torch.autograd.grad(y.sum(), x)
    assert g.dtype == dtype and torch.isfinite(g).all() and torch.isfinite(y).all()
    xr = x.detach().double().tolist()  # the values the dtype can hold
    ref = [_ref_penalty(name, xi) for xi in xr]
    np.testing.assert_allclose(y.detach().double().numpy(), ref, rtol=_DTYPES[dtype])
    # gradient against a central difference of the reference, in 120-digit arithmetic
    with mpmath.workdps(120):
        fd = [
            float(
                (
                    mpmath.mpf(_ref_penalty_mp(name, mpmath.mpf(xi) * (1 + mpmath.mpf(1e-30))))
                    - _ref_penalty_mp(name, mpmath.mpf(xi) * (1 - mpmath.mpf(1e-30)))
                )
                / (2 * mpmath.mpf(xi) * mpmath.mpf(1e-30))
            )
            for xi in xr
        ]
    np.testing.assert_allclose(g.double().numpy(), fd, rtol=max(10 * _DTYPES[dtype], 1e-12))


def test_piecewise_constant_penalty_keeps_the_input_dtype():
    l0 = Penalty(sp.Piecewise((0, sp.Eq(A, 0)), (1, True)), A).to_torch()
    for dtype in (torch.float16, torch.float32, torch.float64):
        assert l0(torch.tensor([0.0, 2.0], dtype=dtype)).dtype == dtype


@pytest.mark.parametrize(
    "bad",
    [torch.tensor([1 + 1j]), torch.tensor([1, 2]), torch.tensor([True])],
    ids=["complex", "int", "bool"],
)
def test_torch_penalty_refuses_non_real_float_tensors(bad):
    f = priors.penalty(priors.get("laplace", b=1)).to_torch()
    with pytest.raises(TypeError, match="a: expected a real floating-point"):
        f(bad)


# ----------------------------------------------------------------------------- defect 12
_PROX = {
    "laplace": {"b": 1},
    "student_t": {"nu": 3, "s": 1},
    "cauchy": {"s": 1},
    "double_pareto": {"lam": 2.5, "s": 0.5},
    "exponential": {"lam": 1},
    "half_cauchy": {"s": 1},
    "generalized_gaussian": {"p": 0.5, "s": 1},
    "spike_and_slab": {"pi": 0.3, "sigma": 1},
    "gamma": {"k": 2.5, "theta": 1},
    "lognormal": {"mu": 0, "sigma": 1},
    "horseshoe": {"tau": 1},
}


@pytest.mark.parametrize("name", sorted(_PROX))
def test_prox_contract_on_nan_inf_and_t(name):
    pen = priors.penalty(priors.get(name, **_PROX[name]))
    f = priors.prox(pen).to_torch()
    v = torch.tensor([math.nan, math.inf, -math.inf, 1.0], dtype=torch.float64)
    out = f(v, 1.0)
    sup = pen.support
    hi = math.inf if sup.sup is sp.oo else float(sup.sup)
    lo = -math.inf if sup.inf is -sp.oo else float(sup.inf)
    if name == "horseshoe":  # identically 0 (pen(0) = -inf)
        hi = lo = 0.0
    assert math.isnan(out[0]) and out[1] == hi and out[2] == lo and math.isfinite(out[3])
    # t = inf: the penalty's minimiser, for every finite v
    m = f(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), math.inf)
    assert torch.all(m == m[0])
    grid = torch.linspace(1e-9 if lo >= 0 else -5, 5, 200001, dtype=torch.float64)
    vals = pen.to_torch()(grid)
    assert float(pen.to_torch()(m[:1])) <= float(vals.min()) + 1e-9
    assert math.isnan(f(torch.tensor([math.inf], dtype=torch.float64), math.inf))
    for bad, exc in [
        ("1", TypeError),
        (-1.0, ValueError),
        (math.nan, ValueError),
        (1 + 1j, TypeError),
        (None, TypeError),
    ]:
        with pytest.raises(exc, match="t"):
            f(v, bad)
    with pytest.raises(TypeError, match="v"):
        f(torch.tensor([1 + 1j]), 1.0)


def test_lognormal_prox_at_infinite_step_is_the_penalty_minimiser():
    f = priors.prox(priors.penalty(priors.get("lognormal", mu=0, sigma=1))).to_torch()
    out = f(torch.tensor([1.0], dtype=torch.float64), math.inf)
    assert out.item() == pytest.approx(math.exp(-1), rel=1e-10)


def test_prox_nan_inf_like_pyproximal():
    pyproximal = pytest.importorskip("pyproximal")
    v = np.array([math.nan, math.inf, -math.inf, 2.0, -0.3])
    f = priors.prox(priors.penalty(priors.get("laplace", b=0.5))).to_torch()
    with np.errstate(invalid="ignore"):
        ref = pyproximal.L1(sigma=2.0).prox(v, 1.0)
    np.testing.assert_array_equal(f(torch.tensor(v), 1.0).numpy(), ref)


@pytest.mark.parametrize(
    "prior",
    [priors.group_laplace(3, lam=1), priors.mutually_exclusive(3, pi=0.3, sigma=1)],
    ids=["group_lasso", "exclusive"],
)
def test_group_prox_contract(prior):
    """A group with a NaN or inf is NaN (its direction is undefined); finite groups are finite."""
    f = priors.prox(priors.penalty(prior)).to_torch()
    v = torch.tensor(
        [[1.0, math.nan, 0.0], [math.inf, 1.0, 0.0], [2.0, -1.0, 0.5]], dtype=torch.float64
    )
    out = f(v, 1.0)
    assert torch.isnan(out[:2]).all() and torch.isfinite(out[2]).all()
    with pytest.raises(TypeError, match="t"):
        f(v, "1")
    with pytest.raises(ValueError, match="t"):
        f(v, -1.0)


# ----------------------------------------------------------------------------- defect 13
def test_from_density_negative_far_out_is_refused():
    with pytest.raises(ValueError, match="negative"):
        Prior.from_density((5000 - A**2) / (1 + A**2) ** 2, A)
    with pytest.raises(ValueError, match="negative"):  # negative only where float64 underflows
        Prior.from_density(sp.exp(-(A**2)) * (80**2 - A**2), A)


def test_from_density_in_the_wrong_symbol_is_refused():
    x = sp.Symbol("x")
    with pytest.raises(ValueError, match="does not depend on var a"):
        Prior.from_density(sp.exp(-(x**2)), A)


def test_from_density_matches_symbols_by_name():
    plain = sp.Symbol("a")  # no assumptions: the same variable as the real a
    p = Prior.from_density(sp.exp(-(plain**2)), A)
    assert p.density.equals(sp.exp(-(A**2)) / sp.sqrt(sp.pi))


# ----------------------------------------------------------------------------- issue 19
def test_readme_prior_from_penalty_snippet():
    """The README's line, and a positive symbol meaning the support [0, oo)."""
    a = sp.Symbol("a", real=True)
    lam = sp.Symbol("lam", positive=True)
    p = priors.prior_from_penalty(lam * sp.log(1 + abs(a)), a)
    assert sp.simplify(p.density - (lam - 1) / 2 * (1 + abs(a)) ** (-lam)) == 0
    assert p.meta["normalizable_if"] == (lam > 1)
    ap = sp.Symbol("a", positive=True)
    q = priors.prior_from_penalty(lam * sp.log(1 + abs(ap)), ap)
    assert q.support == sp.Interval(0, sp.oo) and not q.density.has(sp.nan)
    assert sp.simplify(q.density - (lam - 1) * (1 + ap) ** (-lam)) == 0
    with pytest.raises(ValueError, match="support"):
        priors.prior_from_penalty(lam * sp.log(1 + abs(ap)), ap, support="real")


def test_fit_warns_when_pooling_and_laplace_row_is_finite_on_cauchy_data():
    x = np.random.default_rng(0).standard_cauchy(5000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = priors.fit(x, families=["laplace", "cauchy"], gof_top=0)
    row = report["laplace"]
    assert row.ok and math.isfinite(row.loglik)
    loc, scale = row.params["loc"], row.params["scale"]
    assert row.loglik == pytest.approx(np.sum(-np.log(2 * scale) - np.abs(x - loc) / scale))
    with pytest.warns(UserWarning, match="pooled"):
        priors.fit(x.reshape(50, 100), families=["laplace"], gof_top=0)


@pytest.mark.parametrize(
    "seed, exc", [(-1, ValueError), (1.5, TypeError), ("0", TypeError), (True, TypeError)]
)
def test_fit_seed_is_checked(seed, exc):
    x = np.random.default_rng(0).laplace(size=100)
    with pytest.raises(exc, match="seed"):
        priors.fit(x, gof_top=0, seed=seed)


def test_fit_complex_samples_refused():
    with pytest.raises(TypeError, match="samples"):
        priors.fit(np.ones(20) * (1 + 1j))


# ----------------------------------------------------------------------------- CLI (16, 19)
def _cli(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "priors", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("t", ["-1", "nan", "inf", "abc"])
def test_cli_bad_step_exits_2_with_a_message(t):
    r = _cli("derive", "laplace", "--b", "1", "--t", t)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--t" in r.stderr and "finite number >= 0" in r.stderr


def test_cli_help_and_derive(tmp_path):
    r = _cli("--help")
    assert r.returncode == 0 and "ranks them." in r.stdout
    r = _cli("derive", "--help")
    assert "student_t" in r.stdout and "--nu --s" in r.stdout
    r = _cli("derive", "student_t", "--nu", "3", "--latex")
    assert r.returncode == 0 and len(r.stdout) < 1500 and "|v|" in r.stdout
    assert "\\sqrt[3]" not in r.stdout and " w " not in r.stdout
    r = _cli("derive", "student_t", "--nu", "1e6", "--s", "1", timeout=60)
    assert r.returncode == 0 and "threshold" in r.stdout


def test_cli_fit_text_file_and_seed(tmp_path):
    txt = tmp_path / "acts.txt"
    txt.write_text("1 2 3\n")
    r = _cli("fit", str(txt))
    assert r.returncode == 2 and "numpy.save" in r.stderr and "pickled" not in r.stderr
    npy = tmp_path / "acts.npy"
    np.save(npy, np.random.default_rng(0).laplace(size=200))
    r = _cli("fit", str(npy), "--seed", "-1")
    assert r.returncode == 2 and "--seed" in r.stderr
