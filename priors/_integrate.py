"""Normalizing constants ``Z = ∫ f`` over a support, symbolically with a numeric fallback.

On ℝ the integral is split at 0 and each half is integrated over a *positive* symbol, so that
``|a|`` simplifies (REFERENCES §4: "integrate with a positive symbol, then substitute |a|").
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp
from scipy import integrate

from ._symbolic import NUMPY_MODULES, ImproperPriorError

__all__ = ["divergence_reason", "half_line_pieces", "normalizer", "tame"]

_Y = sp.Symbol("y_", positive=True)


def half_line_pieces(expr: sp.Expr, var: sp.Symbol, support: sp.Set) -> list[sp.Expr]:
    """Write ``∫_support expr d var`` as a sum of integrals of the returned pieces over y ∈ (0, ∞).

    Only ℝ and ``[c, ∞)`` are handled; other supports raise ValueError.
    """
    if support == sp.Reals:
        plus = sp.simplify(expr.subs(var, _Y))
        minus = sp.simplify(expr.subs(var, -_Y))
        if sp.simplify(plus - minus) == 0:
            return [2 * plus]
        return [plus, minus]
    if isinstance(support, sp.Interval) and support.sup is sp.oo and support.inf.is_finite:
        return [sp.simplify(expr.subs(var, support.inf + _Y))]
    raise ValueError(f"support: only the real line and [c, oo) are handled, got {support}")


def _split_piecewise(res: sp.Expr) -> tuple[sp.Expr, sp.Basic]:
    """From sympy's ``Piecewise((value, cond), (Integral, True))`` return (value, cond)."""
    if isinstance(res, sp.Piecewise):
        (val, cond), rest = res.args[0], res.args[1:]
        if val.has(sp.Integral):
            return res, sp.true
        if rest and all(e.has(sp.Integral) or e is sp.oo for e, _ in rest):
            return val, cond
    return res, sp.true


def tame(expr: sp.Expr, top: float = 10.0) -> bool:
    """Whether every numeric exponent and float in ``expr`` is within ``[1/top, top]`` in size:
    sympy's integrals and limits of ``exp(−w|a|^−69045)`` build dense polynomials of that
    degree and run for minutes."""
    for p in expr.atoms(sp.Pow):
        if p.exp.is_number and p.exp != 0 and not 1 / top <= abs(float(p.exp)) <= top:
            return False
    return all(f == 0 or 1e-100 <= abs(float(f)) <= 1e100 for f in expr.atoms(sp.Float))


@lru_cache(maxsize=256)
def _integrate_half_line(piece: sp.Expr) -> tuple[sp.Expr, sp.Basic]:
    if not tame(piece):  # quadrature instead (numeric pieces; symbolic ones stay unevaluated)
        return sp.Integral(piece, (_Y, 0, sp.oo)), sp.true
    try:
        res = sp.integrate(piece, (_Y, 0, sp.oo), conds="piecewise")
    except (ValueError, ArithmeticError, NotImplementedError, TypeError, AttributeError,
            KeyError, IndexError, RecursionError):
        # sympy's own failures on extreme exponents (|a|^1e-300: decimal.InvalidOperation;
        # |a|^1e300: Meijer G parameters): leave it unevaluated, the caller integrates
        # numerically when the piece is numeric
        return sp.Integral(piece, (_Y, 0, sp.oo)), sp.true
    return _split_piecewise(res)


def divergence_reason(piece: sp.Expr) -> str | None:
    """Why ``∫_0^∞ piece dy`` diverges, from the behaviour of ``y·piece`` at 0 and at ∞.

    Returns None when neither end is conclusive, or when the exponents are too large for
    sympy's limits (see :func:`tame`).
    """
    if not tame(piece):
        return None
    reasons = []
    try:
        tail = sp.limit(piece * _Y, _Y, sp.oo)
        if tail.is_positive or tail is sp.oo:
            lim = sp.limit(piece, _Y, sp.oo)
            if lim != 0:
                reasons.append(f"the density tends to {lim} (not 0) as |a| → ∞")
            else:
                reasons.append("the tail decays no faster than 1/|a| as |a| → ∞")
        head = sp.limit(piece * _Y, _Y, 0, "+")
        if head.is_positive or head is sp.oo:
            reasons.append("the density blows up at least like 1/|a| at a = 0")
    except (NotImplementedError, ValueError, TypeError):  # pragma: no cover - sympy limits
        return None
    return " and ".join(reasons) if reasons else None


def _numeric_half_line(piece: sp.Expr) -> float:
    f = sp.lambdify(_Y, piece, modules=NUMPY_MODULES)

    def g(y):
        with np.errstate(all="ignore"):  # numpy floats: overflow gives inf, not an exception
            return float(f(np.float64(y)))

    # split at 1 so that singular heads and slow tails are handled separately
    a, _ = integrate.quad(g, 0, 1, limit=200)
    b, _ = integrate.quad(g, 1, np.inf, limit=200)
    return a + b


def normalizer(expr: sp.Expr, vars_, support: sp.Set) -> tuple[sp.Expr, sp.Basic]:
    """``(Z, condition)`` with ``Z = ∫_support expr``; ``condition`` is where Z is finite.

    Raises
    ------
    ImproperPriorError
        If the integral is infinite or zero (for the given numeric parameters).
    """
    if len(vars_) != 1:
        raise ValueError(
            "normalizer: joint densities are normalized by their constructors; got "
            f"{len(vars_)} variables"
        )
    var = vars_[0]
    pieces = half_line_pieces(expr, var, support)
    total, conds = sp.S.Zero, []
    for piece in pieces:
        if not (piece.free_symbols - {_Y}):
            # numeric: a cheap divergence test first (sympy may take long on such integrals)
            why = divergence_reason(piece)
            if why:
                raise ImproperPriorError(f"∫ {expr!s} d{var} over {support} diverges: {why}")
        val, cond = _integrate_half_line(piece)
        if val is sp.oo or val is sp.zoo or val is sp.nan:
            why = divergence_reason(piece)
            raise ImproperPriorError(
                f"∫ {expr!s} d{var} over {support} diverges" + (f": {why}" if why else "")
            )
        if val.has(sp.Integral):
            if val.free_symbols - {_Y}:
                return val, sp.true  # symbolic and unevaluated: keep as an Integral
            num = _numeric_half_line(piece)
            if not np.isfinite(num):
                why = divergence_reason(piece)
                raise ImproperPriorError(
                    f"∫ {expr!s} d{var} over {support} diverges" + (f": {why}" if why else "")
                )
            val = sp.Float(num)
        total += val
        conds.append(cond)
    cond = sp.And(*conds) if conds else sp.true
    if cond is sp.false:
        raise ImproperPriorError(f"∫ {expr!s} d{var} over {support} diverges for these parameters")
    total = sp.simplify(total)
    if total.is_number and not (0 < float(sp.re(total.evalf(30))) < float("inf")):
        raise ImproperPriorError(
            f"∫ {expr!s} d{var} over {support} = {total!s}: not a finite positive normalizer"
        )
    return total, cond
