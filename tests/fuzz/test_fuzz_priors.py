"""Fuzzing ``priors``: every public function keeps the contract of ``tests/fuzz/_contract.py``.

A call returns a finite result of the input's dtype (NaN only where the input is NaN, as numpy
does), or raises ``ValueError``/``TypeError`` naming the argument; it never hangs and never
touches the global RNG.  Run the large profile with
``python -m pytest tests/fuzz/test_fuzz_priors.py --hypothesis-profile=fuzz-large``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import priors
from priors import ImproperPriorError, Penalty, Prior
from priors.prior import to_sympy_number

from ..priors._priors_cases import NUMERIC
from ._contract import check_error, is_finite, no_hang, rng_state, same_rng

A = sp.Symbol("a", real=True)
HANG_S = 15  # one symbolic derivation (penalty + prox) takes well under a second

pytestmark = pytest.mark.usefixtures("one_thread")

# ----------------------------------------------------------------------------- strategies
NAMES = sorted(priors.CATALOG)
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
#: good parameters of every catalog prior (the fuzzed one is replaced)
GOOD = NUMERIC  # valid parameters of every catalog prior

extreme_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            0.0,
            -0.0,
            1e-300,
            1e-30,
            1e-8,
            0.5,
            1.0,
            1.5,
            2.0,
            3.0,
            1e5,
            1e6,
            1e10,
            1e13,
            1e20,
            1e300,
            -1.0,
            -1e300,
        ]
    ),
)
bad_values = st.sampled_from(["1", None, 1 + 2j, [1.0], True, object()])
param_values = st.one_of(extreme_floats, st.integers(-(10**30), 10**30), bad_values)
finite_v = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
any_v = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), finite_v)


def _call(fn, names):
    """``fn()`` within the contract: a result, or a clear error naming one of ``names`` (then
    None); never a hang, never a change of the global RNG."""
    before = rng_state()
    try:
        with no_hang(HANG_S):
            out = fn()
    except (ValueError, TypeError) as exc:
        check_error(exc, names)
        out = None
    assert same_rng(before, rng_state()), "the global RNG changed"
    return out


@lru_cache(maxsize=64)
def _good(name: str):
    pen = priors.penalty(priors.get(name, **GOOD[name]))
    return pen, pen.to_torch(), priors.prox(pen).to_torch()


def _inside(pen: Penalty, x: float) -> bool:
    return bool(pen.support.contains(x)) and x != 0


# ----------------------------------------------------------------------------- catalog
@given(name=st.sampled_from(NAMES), key=st.integers(0, 1), value=param_values)
def test_get_penalty_prox_with_extreme_parameters(name, key, value):
    params = dict(GOOD[name])
    pname = sorted(params)[key % len(params)]
    params[pname] = value
    names = [pname, "lambda" if pname == "lam" else pname, "varpi" if pname == "pi" else pname]
    prior = _call(lambda: priors.get(name, **params), names)
    if prior is None:
        return
    assert isinstance(prior, Prior)
    if prior.free_params:  # None leaves a parameter symbolic (documented)
        assert value is None
        return
    pen = _call(lambda: priors.penalty(prior), names)
    f = pen.to_torch()
    xs = [x for x in (-3.0, -0.5, 0.25, 1.0, 7.0) if _inside(pen, x)]
    y = _call(lambda: f(torch.tensor(xs, dtype=torch.float64)), "a")
    assert y.dtype == torch.float64
    # finite where the exact value fits in float64 (a²/(2σ²) with σ = 1e-300 does not), and
    # equal to it
    ref = [float(pen.expr.subs(pen.var, sp.Float(x, 30)).evalf(30)) for x in xs]
    for yi, ri in zip(y.tolist(), ref):
        if abs(ri) < 1e300:
            assert yi == pytest.approx(ri, rel=1e-9, abs=1e-12), (name, params, xs, y, ref)
    step = _call(lambda: priors.prox(pen).to_torch(), names)
    v = torch.tensor([-2.0, 0.0, 0.3, 5.0], dtype=torch.float64)
    out = _call(lambda: step(v, 0.7), ["v", "t"])
    assert out.dtype == torch.float64 and is_finite(out), (name, params, out)
    if priors.prox(pen).meta.get("zero"):
        assert torch.all(out == 0)  # pen(0) = -inf: the prox is identically 0 (documented)
        return
    # the prox is a minimiser: no worse than 0 and than v itself (where in the support)
    obj = 0.5 * (out - v) ** 2 + 0.7 * f(out)
    for x0 in (torch.zeros_like(v), v):
        ok = torch.tensor(
            [_inside(pen, float(x)) or (float(x) == 0 and 0 in pen.support) for x in x0]
        )
        ref = 0.5 * (x0 - v) ** 2 + 0.7 * f(x0)
        assert torch.all(~ok | (obj <= ref + 1e-7 * (1 + ref.abs()))), (name, params, out)


@given(
    name=st.one_of(
        st.sampled_from(NAMES + ["t", "normal", "gdp"]),
        st.text(max_size=8),
        st.integers(),
        st.none(),
    )
)
def test_get_names(name):
    prior = _call(lambda: priors.get(name), "name")
    if prior is not None:
        assert isinstance(prior, Prior)


# ----------------------------------------------------------------------------- to_torch
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(NAMES),
    dtype=st.sampled_from(DTYPES),
    xs=st.lists(any_v, min_size=1, max_size=8),
)
def test_to_torch_every_dtype(name, dtype, xs):
    pen, f, _ = _good(name)
    x = torch.tensor(xs, dtype=dtype, requires_grad=True)
    y = _call(lambda: f(x), "a")
    assert y.dtype == dtype and y.shape == x.shape
    (g,) = torch.autograd.grad(y.sum(), x)
    assert g.dtype == dtype
    x64 = x.detach().double()
    ref = f(x64)
    top = torch.finfo(dtype).max
    keep = torch.tensor([_inside(pen, float(v)) and math.isfinite(v) for v in x64]) & (
        ref.abs() < top
    )
    eps = torch.finfo(dtype).eps
    # the value the dtype can hold, to a few of its ulps (or its smallest normal near 0)
    assert is_finite(y.detach()[keep]), (name, dtype, xs, y)
    diff = (y.detach().double() - ref).abs()[keep]
    assert torch.all(diff <= 8 * eps * (1 + ref.abs()[keep])), (name, dtype, xs, y, ref)
    assert is_finite(g[keep]), (name, dtype, xs, g)


@given(
    bad=st.sampled_from(
        [torch.tensor([1 + 1j]), torch.tensor([1, 2]), torch.tensor([True]), np.ones(3), 1.0, "1"]
    )
)
def test_to_torch_wrong_types(bad):
    _, f, _ = _good("laplace")
    assert _call(lambda: f(bad), "a") is None


# ----------------------------------------------------------------------------- prox
t_values = st.one_of(
    st.floats(0, 1e6),
    st.sampled_from([0.0, 1e-300, math.inf]),
    st.floats(allow_nan=True, allow_infinity=True),
    bad_values,
    st.just(-1.0),
)


@given(
    name=st.sampled_from(NAMES),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    vs=st.lists(any_v, min_size=1, max_size=6),
    t=t_values,
)
def test_prox_contract(name, dtype, vs, t):
    pen, _, step = _good(name)
    v = torch.tensor(vs, dtype=dtype)
    out = _call(lambda: step(v, t), "t")
    if out is None:
        return
    assert out.dtype == dtype and out.shape == v.shape
    t_inf = math.isinf(float(t))
    expect_nan = torch.isnan(v) | (torch.isinf(v) & t_inf)
    assert torch.equal(torch.isnan(out), expect_nan), (name, vs, t, out)
    finite_in = torch.isfinite(v)
    assert is_finite(out[finite_in]), (name, vs, t, out)
    if t == 0:
        assert torch.equal(out[finite_in], v[finite_in])


@given(
    c=st.floats(1e-3, 1e3),
    v=st.lists(any_v, min_size=1, max_size=5),
    t=st.one_of(st.floats(0, 100), st.just(math.inf)),
)
def test_numeric_prox(c, v, t):
    """A penalty without a closed-form prox (log cosh): the numeric solver, same contract."""
    pen = Penalty(c * sp.log(sp.cosh(A)), A)
    px = priors.prox(pen)
    assert not px.closed_form
    step = px.to_torch()
    x = torch.tensor(v, dtype=torch.float64)
    out = _call(lambda: step(x, t), "t")
    assert torch.equal(torch.isnan(out), torch.isnan(x) | (torch.isinf(x) & math.isinf(t)))
    fin = torch.isfinite(x)
    assert is_finite(out[fin])
    # |prox(v)| <= |v| and the sign is kept (pen is even and increasing in |a|)
    assert torch.all(out[fin].abs() <= x[fin].abs() + 1e-9)


@given(name=st.sampled_from(NAMES), t=t_values)
def test_threshold(name, t):
    pen, _, _ = _good(name)
    px = priors.prox(pen)
    thr = _call(lambda: px.threshold(t), "t")
    if thr is not None:
        assert thr >= 0 and not math.isnan(thr)


# ----------------------------------------------------------------------------- from_density
_EXPRS = [
    sp.exp(-sp.Abs(A)),
    sp.exp(-(A**2)),
    1 / (1 + A**2),
    (1 + sp.Abs(A)) ** -3,
    -sp.exp(-(A**2)),
    (5000 - A**2) / (1 + A**2) ** 2,
    sp.exp(-(A**2)) * (80**2 - A**2),
    sp.exp(-(sp.Symbol("x") ** 2)),
    sp.sin(A) * sp.exp(-(A**2)),
    sp.Integer(1),
    sp.exp(A),
    "exp(-a**2)",
    "exp(-x**2)",
    "a**2",
    "not a (formula",
    3.0,
    None,
]


@given(
    expr=st.sampled_from(_EXPRS),
    support=st.sampled_from([None, "real", "positive", "banana", 3]),
    var=st.sampled_from([A, sp.Symbol("a", positive=True), sp.Symbol("x"), "a"]),
)
def test_from_density(expr, support, var):
    names = ["expr", "density", "var", "support", "diverges", "∫"]
    prior = _call(lambda: Prior.from_density(expr, var, support=support), names)
    if prior is None:
        return
    x = np.array([0.1, 0.5, 1.0, 3.0])
    p = prior.pdf(x)
    assert is_finite(p) and np.all(p >= 0)


# ----------------------------------------------------------------------------- inverse
@given(kind=st.sampled_from(["log", "power", "l1"]), c=param_values, positive=st.booleans())
def test_prior_from_penalty(kind, c, positive):
    a = sp.Symbol("a", positive=True) if positive else A

    def build():
        cc = to_sympy_number(c)
        return {"log": cc * sp.log(1 + sp.Abs(a)), "power": sp.Abs(a) ** cc, "l1": cc * sp.Abs(a)}[
            kind
        ]

    expr = _call(build, ["expected"])
    if expr is None:
        return
    names = ["penalty", "expr", "var", "support", "diverges", "improper"]
    try:
        with no_hang(HANG_S):
            prior = priors.prior_from_penalty(expr, a)
    except ImproperPriorError as exc:
        check_error(exc, names)
        return
    except (ValueError, TypeError) as exc:
        check_error(exc, names)
        return
    dens = prior.pdf(np.array([0.2, 1.0, 4.0]))
    assert is_finite(dens) and np.all(dens >= 0) and not prior.density.has(sp.nan)


# ----------------------------------------------------------------------------- joint
@given(
    kind=st.sampled_from(["group_laplace", "multivariate_t", "mutually_exclusive"]),
    d=st.one_of(st.integers(-2, 12), st.sampled_from([10**6, 2.0, "3", None, True])),
    value=st.one_of(st.sampled_from([0.3, 1.0, 3.0]), param_values),
)
def test_joint(kind, d, value):
    pname = {"group_laplace": "lam", "multivariate_t": "nu", "mutually_exclusive": "pi"}[kind]
    extra = {"sigma": 1.0} if kind == "mutually_exclusive" else {}
    fn = getattr(priors, kind)
    prior = _call(lambda: fn(d, **{pname: value}, **extra), ["d", pname])
    if prior is None:
        return
    step = priors.prox(priors.penalty(prior)).to_torch()
    v = torch.tensor([[1.0] * d, [-0.2] * d], dtype=torch.float32)
    out = _call(lambda: step(v, 0.5), ["v", "t"])
    assert out.dtype == torch.float32 and is_finite(out)


# ----------------------------------------------------------------------------- fit
@settings(max_examples=10)
@given(
    n=st.integers(0, 60),
    shape2=st.booleans(),
    poison=st.sampled_from([None, "nan", "inf", "const", "zeros"]),
    seed=st.one_of(st.integers(0, 2**32), st.sampled_from([-1, 1.5, "0", True, None])),
    families=st.sampled_from([None, ["laplace", "cauchy"], ["lomax"], ["bogus"], "norm"]),
)
def test_fit(n, shape2, poison, seed, families):
    x = np.random.default_rng(n).standard_cauchy(n)
    if poison == "nan" and n:
        x[0] = np.nan
    elif poison == "inf" and n:
        x[-1] = np.inf
    elif poison == "const":
        x[:] = 1.0
    elif poison == "zeros":
        x[: n // 2] = 0.0
    if shape2 and n % 2 == 0 and n:
        x = x.reshape(2, -1)
    names = ["samples", "seed", "families", "non-zero"]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the pooling warning
        report = _call(lambda: priors.fit(x, families=families, gof_top=0, seed=seed), names)
    if report is None:
        return
    best = report.best_fit
    assert best.ok and math.isfinite(best.loglik)
    pen = _call(lambda: priors.penalty(report.best), "prior")
    f = pen.to_torch()
    assert f(torch.tensor([0.5], dtype=torch.float64)).dtype == torch.float64
