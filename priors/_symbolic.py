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
    "check_param_value",
    "param_symbol",
    "real_var",
    "to_sympy_number",
]

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
        raise TypeError(f"expected a number, got {x!r}")
    if isinstance(x, (int, np.integer)):
        return sp.Integer(int(x))
    from fractions import Fraction

    x = float(x)
    if not np.isfinite(x):
        raise ValueError(f"expected a finite number, got {x}")
    fr = Fraction(x).limit_denominator(1000)
    if float(fr) == x:
        return sp.Rational(fr.numerator, fr.denominator)
    return sp.Float(x, 17)


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
