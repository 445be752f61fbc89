r"""Catalog of activation priors with closed-form normalized densities.

``priors.get(name, **params)``: numeric parameters give numeric expressions; omitted parameters
stay symbolic (positive symbols, ``mu`` real).

=====================  ========================  =================================================
name                   parameters                density
=====================  ========================  =================================================
laplace                b                         exp(-|a|/b) / (2b)
gaussian               sigma                     exp(-a²/(2σ²)) / (σ√(2π))
cauchy                 s                         1 / (π s (1 + a²/s²))
student_t              nu, s                     Γ((ν+1)/2)/(Γ(ν/2)√(νπ)s) (1+a²/(νs²))^{-(ν+1)/2}
generalized_gaussian   p, s                      p/(2sΓ(1/p)) exp(-(|a|/s)^p)
double_pareto          lam (> 1), s              (λ-1)/(2s) (1 + |a|/s)^{-λ}
horseshoe              tau                       exp(a²/(2τ²)) E₁(a²/(2τ²)) / (τ√(2π³))
spike_and_slab         pi, slab (+ slab params)  (1-π) δ₀ + π g(a)
exponential            lam                       λ e^{-λa} on a ≥ 0
half_cauchy            s                         2 / (π s (1 + a²/s²)) on a ≥ 0
lognormal              mu, sigma                 exp(-(log a - μ)²/(2σ²)) / (aσ√(2π)) on a > 0
gamma                  k, theta                  a^{k-1} e^{-a/θ} / (Γ(k) θ^k) on a > 0
=====================  ========================  =================================================

References
----------
Armagan, Dunson & Lee (2011), generalized double Pareto, arXiv:1104.0861.
Carvalho, Polson & Scott (2010), the horseshoe, Biometrika 97(2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sympy as sp

from ._symbolic import ImproperPriorError, check_param_value, param_symbol, to_sympy_number
from .prior import Prior

__all__ = ["CATALOG", "get", "spike_and_slab"]

A = sp.Symbol("a", real=True)
R_PLUS = sp.Interval(0, sp.oo)


#: the range of a positive parameter: scales beyond 1e±100 overflow float64 (a²/s² at s = 1e-300)
#: and p = 1e5 makes the generalized Gaussian an indicator that the prox solver cannot resolve
_RANGE = {"p": (1e-2, 100.0), "nu": (1e-100, 1e10)}


def _p(name: str, values: dict, *, lower: float | None = None) -> sp.Expr:
    """Parameter ``name``: its numeric value if given (checked), else its symbol."""
    sym = param_symbol(name)
    if name not in values or values[name] is None:
        return sym
    raw = values.pop(name)
    try:
        val = to_sympy_number(raw)
    except TypeError as err:
        raise TypeError(f"parameter {name}: {err}") from None
    except ValueError as err:
        raise ValueError(f"parameter {name}: {err}") from None
    check_param_value(sym, val)
    lo, hi = _RANGE.get(name, (1e-100, 1e100))
    if sym.is_positive and val.is_number and not lo * (1 - 1e-12) <= float(val) <= hi * (1 + 1e-12):
        raise ValueError(
            f"parameter {name}: expected a value in [{lo:g}, {hi:g}] (float64 overflows or the "
            f"penalty degenerates beyond), got {raw}"
        )
    if lower is not None and val.is_number and not val > lower:
        raise ImproperPriorError(
            f"parameter {name}: the prior is proper only for {name} > {lower}, got {raw}"
        )
    return val


def _finish(name: str, density: sp.Expr, support: sp.Set, values: dict, **kw: Any) -> Prior:
    if values:
        raise ValueError(f"{name}: unknown parameter(s) {sorted(values)}")
    params = tuple(sorted(density.free_symbols - {A}, key=lambda s: s.name))
    return Prior(density=density, var=A, support=support, params=params, name=name, **kw)


def laplace(**v) -> Prior:
    b = _p("b", v)
    return _finish("laplace", sp.exp(-sp.Abs(A) / b) / (2 * b), sp.Reals, v)


def gaussian(**v) -> Prior:
    s = _p("sigma", v)
    return _finish("gaussian", sp.exp(-(A**2) / (2 * s**2)) / (s * sp.sqrt(2 * sp.pi)), sp.Reals, v)


def cauchy(**v) -> Prior:
    s = _p("s", v)
    return _finish("cauchy", 1 / (sp.pi * s * (1 + A**2 / s**2)), sp.Reals, v)


#: the largest ν accepted: beyond it the Student-t is the Gaussian to within float64 (log-density
#: error ~ a⁴/(4ν)) and the prox's cubic has coefficients whose cube overflows
NU_MAX = 1e10


def _gamma_ratio(nu: sp.Expr) -> sp.Expr:
    """``Γ((ν+1)/2)/Γ(ν/2)``: exact for small rational ν, else from log-gammas (a Float)."""
    if not nu.is_number or (nu.is_Rational and nu <= 200):
        return sp.gamma((nu + 1) / 2) / sp.gamma(nu / 2)
    import mpmath

    with mpmath.workdps(30):
        x = mpmath.mpf(str(sp.Float(nu, 30)))
        return sp.Float(mpmath.exp(mpmath.loggamma((x + 1) / 2) - mpmath.loggamma(x / 2)), 17)


def student_t(**v) -> Prior:
    nu, s = _p("nu", v), _p("s", v)
    if nu.is_number and nu > NU_MAX:
        raise ValueError(
            f"parameter nu: at most {NU_MAX:g} is supported, got {float(nu):g}; the Student-t is "
            "then the Gaussian to within float64: use priors.get('gaussian', sigma=s)"
        )
    c = _gamma_ratio(nu) / (sp.sqrt(nu * sp.pi) * s)
    return _finish("student_t", c * (1 + A**2 / (nu * s**2)) ** (-(nu + 1) / 2), sp.Reals, v,
                   meta={"param_max": {"nu": NU_MAX}})


def generalized_gaussian(**v) -> Prior:
    p, s = _p("p", v), _p("s", v)
    dens = p / (2 * s * sp.gamma(1 / p)) * sp.exp(-((sp.Abs(A) / s) ** p))
    return _finish("generalized_gaussian", dens, sp.Reals, v)


def double_pareto(**v) -> Prior:
    lam, s = _p("lam", v, lower=1), _p("s", v)
    dens = (lam - 1) / (2 * s) * (1 + sp.Abs(A) / s) ** (-lam)
    return _finish("double_pareto", dens, sp.Reals, v, meta={"normalizable_if": lam > 1})


def horseshoe(**v) -> Prior:
    tau = _p("tau", v)
    z = A**2 / (2 * tau**2)
    dens = sp.exp(z) * sp.expint(1, z) / (tau * sp.sqrt(2 * sp.pi**3))
    return _finish("horseshoe", dens, sp.Reals, v)


def exponential(**v) -> Prior:
    lam = _p("lam", v)
    return _finish("exponential", lam * sp.exp(-lam * A), R_PLUS, v)


def half_cauchy(**v) -> Prior:
    s = _p("s", v)
    return _finish("half_cauchy", 2 / (sp.pi * s * (1 + A**2 / s**2)), R_PLUS, v)


def lognormal(**v) -> Prior:
    mu, s = _p("mu", v), _p("sigma", v)
    dens = sp.exp(-((sp.log(A) - mu) ** 2) / (2 * s**2)) / (A * s * sp.sqrt(2 * sp.pi))
    return _finish("lognormal", dens, sp.Interval.Lopen(0, sp.oo), v)


def gamma(**v) -> Prior:
    k, theta = _p("k", v), _p("theta", v)
    dens = A ** (k - 1) * sp.exp(-A / theta) / (sp.gamma(k) * theta**k)
    return _finish("gamma", dens, sp.Interval.Lopen(0, sp.oo), v)


def spike_and_slab(slab: Prior | str = "gaussian", pi: float | None = None, **slab_params) -> Prior:
    r"""``(1 − π) δ₀ + π g``: a point mass at 0 and a slab ``g`` (any univariate prior).

    Parameters
    ----------
    slab : Prior or str
        The slab, a catalog name (with ``slab_params``) or a :class:`Prior`.
    pi : float, optional
        Probability of a non-zero activation, in (0, 1); symbolic if omitted.
    """
    if isinstance(slab, str):
        slab = get(slab, **slab_params)
    elif not isinstance(slab, Prior):
        raise TypeError(f"slab: expected a Prior or a catalog name, got {type(slab).__name__}")
    elif slab_params:
        slab = slab.subs(**slab_params)
    if slab.dim != 1 or slab.atom is not None:
        raise ValueError("slab: expected a univariate prior without a point mass")
    w = param_symbol("pi")
    if pi is not None:
        if isinstance(pi, bool) or not isinstance(pi, (int, float)) or not 0 < pi < 1:
            raise ValueError(f"pi: expected a probability in (0, 1), got {pi!r}")
        w = to_sympy_number(pi)
    dens = (w * slab.density).subs(slab.var, A)
    params = tuple(sorted(dens.free_symbols - {A}, key=lambda s: s.name))
    return Prior(
        density=dens,
        var=A,
        support=sp.Union(slab.support, sp.FiniteSet(0)),
        params=params,
        name=f"spike_and_slab({slab.name})",
        atom=1 - w,
        meta={"slab": slab, "pi": w},
    )


CATALOG: dict[str, Callable[..., Prior]] = {
    "laplace": laplace,
    "gaussian": gaussian,
    "cauchy": cauchy,
    "student_t": student_t,
    "generalized_gaussian": generalized_gaussian,
    "double_pareto": double_pareto,
    "horseshoe": horseshoe,
    "spike_and_slab": spike_and_slab,
    "exponential": exponential,
    "half_cauchy": half_cauchy,
    "lognormal": lognormal,
    "gamma": gamma,
}

_ALIASES = {"normal": "gaussian", "t": "student_t", "gennorm": "generalized_gaussian",
            "halfcauchy": "half_cauchy", "expon": "exponential", "gdp": "double_pareto"}


def get(name: str, **params: Any) -> Prior:
    """Catalog prior by name, e.g. ``get("student_t", nu=3)`` (omitted parameters stay symbolic).

    Raises
    ------
    ValueError
        Unknown name or parameter, or a parameter outside its domain.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a string, got {type(name).__name__}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in CATALOG:
        raise ValueError(f"name: unknown prior {name!r}; known: {', '.join(sorted(CATALOG))}")
    if "lambda" in params:
        params["lam"] = params.pop("lambda")
    return CATALOG[key](**params)
