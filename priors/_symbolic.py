"""Symbolic primitives shared by priors and penalties (private).

Parameter symbols, supports, exact numbers, the numpy modules for ``lambdify`` and the branch
substitution ``a = ±y``.  Both :mod:`priors.prior` and :mod:`priors.penalty` build on these, so
they live below both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp

__all__ = [
    "NUMPY_MODULES",
    "PARAM_LATEX",
    "ImproperPriorError",
    "as_support",
    "as_vars",
    "branch",
    "by_name",
    "check_param_value",
    "default_support",
    "param_symbol",
    "real_var",
    "stable_form",
    "to_sympy_number",
]

#: numbers are kept exact (Integer/Rational) only up to this size: exact arithmetic on larger
#: ones (Γ(ν/2) with ν = 10⁶, (1 + a)^(10¹³/64)) takes minutes to hours
_EXACT_MAX = 1000

_Y = sp.Symbol("y_", positive=True)


def _expint_np(n, z):
    from scipy import special

    return special.expn(n, z)


#: lambdify modules for numpy evaluation (scipy's printer does not know ``expint``)
NUMPY_MODULES = [{"expint": _expint_np}, "scipy", "numpy"]


class ImproperPriorError(ValueError):
    """Raised when a density (or ``exp(-penalty)``) does not integrate to a finite value."""


#: assumptions of the named parameters used by the catalog and :meth:`Prior.from_scipy`
_PARAM_ASSUMPTIONS: dict[str, dict[str, bool]] = {
    "mu": {"real": True},
    "loc": {"real": True},
}

#: names under which parameters are printed (``pi`` would clash with the constant)
PARAM_LATEX = {"pi": "varpi", "lam": "lambda", "lambda": "lambda"}


def param_symbol(name: str) -> sp.Symbol:
    """The sympy symbol of a named parameter, with its assumptions (positive unless a location).

    The weight ``pi`` of spike-and-slab is printed as ``varpi`` to keep it apart from the constant.
    """
    assumptions = _PARAM_ASSUMPTIONS.get(name, {"positive": True})
    return sp.Symbol(PARAM_LATEX.get(name, name), **assumptions)


def as_support(support: Any, dim: int = 1) -> sp.Set:
    """Convert ``"real"``, ``"positive"``/``"nonnegative"`` or a sympy Set into a sympy Set.

    For ``dim > 1`` a string gives the product set (e.g. ``Reals**dim``).
    """
    if isinstance(support, sp.Set):
        return support
    if not isinstance(support, str):
        raise TypeError(
            f"support: expected 'real', 'positive', 'nonnegative' or a sympy Set, got {support!r}"
        )
    key = support.lower()
    if key in ("real", "reals", "r"):
        base = sp.Reals
    elif key in ("positive", "nonnegative", "r+", "halfline"):
        base = sp.Interval(0, sp.oo)
    else:
        raise ValueError(
            "support: expected 'real', 'positive' or 'nonnegative' (or a sympy Set), "
            f"got {support!r}"
        )
    return base if dim == 1 else sp.ProductSet(*([base] * dim))


def default_support(support: Any, vars_: tuple) -> Any:
    """``support`` for variables ``vars_``: None means ℝ, or [0, ∞) for positive/non-negative
    symbols (sympy rewrites ``|a|`` as ``a`` for those, so ℝ would be wrong)."""
    signed = [v for v in vars_ if v.is_nonnegative]
    if support is None:
        return "positive" if signed and len(signed) == len(vars_) else "real"
    if signed and isinstance(support, str) and support.lower() in ("real", "reals", "r"):
        raise ValueError(
            f"support: var {signed[0]} is declared positive/non-negative but support is the real "
            f"line; declare it with sympy.Symbol({signed[0].name!r}, real=True), or pass "
            "support='positive'"
        )
    return support


def by_name(expr: sp.Expr, vars_: tuple, rv: tuple) -> sp.Expr:
    """``expr`` with every symbol named like one of ``vars_`` (whatever its assumptions) replaced
    by the corresponding real variable of ``rv``."""
    names = {v.name: r for v, r in zip(vars_, rv)}
    return expr.subs({s: names[s.name] for s in expr.free_symbols
                      if isinstance(s, sp.Symbol) and s.name in names})


def as_vars(var: Any) -> tuple[sp.Symbol, ...]:
    """The variable(s) as a tuple of distinct sympy Symbols."""
    vs = tuple(var) if isinstance(var, (tuple, list)) else (var,)
    for v in vs:
        if not isinstance(v, sp.Symbol):
            raise TypeError(f"var: expected a sympy Symbol or a tuple of Symbols, got {v!r}")
    if len(set(vs)) != len(vs):
        raise ValueError(f"var: variables must be distinct, got {vs}")
    return vs


def real_var(v: sp.Symbol) -> sp.Symbol:
    """``v`` itself if real, else a real Symbol of the same name."""
    return v if v.is_real else sp.Symbol(v.name, real=True)


def to_sympy_number(x: Any) -> sp.Expr:
    """An int/float as an exact Rational when it is one with a small denominator, else a Float."""
    if isinstance(x, sp.Expr):
        return x
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise TypeError(f"expected a real number, got {x!r}")
    if isinstance(x, (int, np.integer)) and abs(int(x)) <= _EXACT_MAX:
        return sp.Integer(int(x))
    from fractions import Fraction

    x = float(x)
    if not np.isfinite(x):
        raise ValueError(f"expected a finite number, got {x}")
    fr = Fraction(x).limit_denominator(1000)
    if float(fr) == x and abs(fr.numerator) <= _EXACT_MAX:
        return sp.Rational(fr.numerator, fr.denominator)
    return sp.Float(x, 17)


def _log1p_arg(base: sp.Expr):
    """``(c, x)`` with ``base = c·(1 + x)``, ``c > 0`` a number, if ``base`` has a constant term."""
    if not isinstance(base, sp.Add):
        return None
    const, rest = base.as_coeff_Add()
    if not (const.is_number and const.is_positive) or rest == 0:
        return None
    return const, rest / const


def stable_form(expr: sp.Expr) -> sp.Expr:
    """``expr`` with ``log(c + x)`` as ``log c + log1p(x/c)`` and ``(c + x)^e`` as
    ``c^e exp(e·log1p(x/c))``, for numeric evaluation.

    ``log(1 + a²/ν)`` loses all digits when ``a²/ν`` is below the float epsilon, although it
    is multiplied by ``(ν + 1)/2`` (Student-t with large ν, Lomax with a large shape); and
    ``(1 + x)^e`` with a large ``e`` overflows or rounds to 1.
    """
    from sympy.codegen.cfunctions import log1p

    def is_log(e):
        return isinstance(e, sp.log) and _log1p_arg(e.args[0]) is not None

    def to_log1p(e):
        c, x = _log1p_arg(e.args[0])
        return sp.log(c) + log1p(x)

    def is_pow(e):
        return (isinstance(e, sp.Pow) and not (e.exp.is_Integer and abs(e.exp) <= 4)
                and _log1p_arg(e.base) is not None)

    def to_exp(e):
        c, x = _log1p_arg(e.base)
        return c**e.exp * sp.exp(e.exp * log1p(x))

    return sp.sympify(expr).replace(is_log, to_log1p).replace(is_pow, to_exp)


def check_param_value(sym: sp.Symbol, val: sp.Expr) -> None:
    """Raise ValueError if a numeric ``val`` is not finite and real, or not > 0 for a positive
    ``sym``."""
    if val.is_number:
        if not val.is_real or not val.is_finite:
            raise ValueError(f"parameter {sym.name}: expected a finite real number, got {val}")
        if sym.is_positive and not val.is_positive:
            raise ValueError(f"parameter {sym.name}: must be > 0, got {val}")


def branch(expr: sp.Expr, var: sp.Symbol, sign: int) -> sp.Expr:
    """``expr`` on the branch ``var = sign·y`` with ``y > 0`` (so that |var| and sign simplify)."""
    return sp.piecewise_fold(expr.subs(var, sign * _Y))
