"""Convexity region of a penalty (where ``pen'' ≥ 0``) and a convexity decision.

Works on the penalty's expression, variable and support; :class:`priors.Penalty` calls these
(and reduces radial joint penalties ``f(‖a‖)`` to their profile ``f``).
"""

from __future__ import annotations

import sympy as sp

from ._symbolic import branch

__all__ = ["convexity_region", "is_convex", "is_convex_radial"]

_Y = sp.Symbol("y_", positive=True)
_POS = sp.Interval.open(0, sp.oo)


def _signs(sup: sp.Set) -> tuple[int, ...] | None:
    if sup == sp.Reals:
        return (1, -1)
    if isinstance(sup, sp.Interval) and sup.inf == 0 and sup.sup is sp.oo:
        return (1,)
    return None


def _branch_region(g: sp.Expr) -> sp.Set | None:
    g2 = sp.simplify(sp.diff(g, _Y, 2))
    if g2 == 0 or g2.is_nonnegative:
        return _POS
    if g2.is_negative:
        return sp.S.EmptySet
    try:
        region = sp.solveset(g2 >= 0, _Y, _POS)
    except (NotImplementedError, TypeError, ValueError):
        return None
    if isinstance(region, sp.ConditionSet) or region.has(sp.ConditionSet):
        return None
    return _tidy(region)


def _tidy(region: sp.Set) -> sp.Set:
    """``Intersection((0, oo), [lo, hi])`` -> ``(max(lo, 0), hi]`` (sympy leaves it unevaluated
    when lo, hi are symbolic)."""
    if isinstance(region, sp.Intersection):
        ivs = [r for r in region.args if isinstance(r, sp.Interval)]
        if len(ivs) == len(region.args):
            lo = sp.Max(*[iv.start for iv in ivs])
            hi = sp.Min(*[iv.end for iv in ivs])
            lopen = any(iv.left_open for iv in ivs if iv.start == lo) or lo == 0
            ropen = any(iv.right_open for iv in ivs if iv.end == hi)
            return sp.Interval(lo, hi, lopen, ropen)
    return region


def _mirror(region: sp.Set) -> sp.Set:
    if isinstance(region, sp.Interval):
        return sp.Interval(-region.end, -region.start, region.right_open, region.left_open)
    if isinstance(region, sp.Union):
        return sp.Union(*[_mirror(r) for r in region.args])
    if region is sp.S.EmptySet:
        return region
    return sp.imageset(sp.Lambda(_Y, -_Y), region)


def convexity_region(expr: sp.Expr, var: sp.Symbol, support: sp.Set) -> sp.Set | None:
    """Set of ``var`` (off the kink at 0) where ``expr'' ≥ 0``; None if sympy cannot tell."""
    signs = _signs(support)
    if signs is None:
        return None
    out = sp.S.EmptySet
    for s in signs:
        g = branch(expr, var, s)
        if g.has(sp.Piecewise):
            return None
        reg = _branch_region(g)
        if reg is None:
            return None
        if s == -1:
            reg = _mirror(reg)
        out = sp.Union(out, reg)
    return out


def is_convex_radial(f: sp.Expr, r: sp.Symbol) -> bool | None:
    """Whether ``f(‖a‖)`` is convex, from its profile ``f`` on ``r ≥ 0`` (None: undecided)."""
    # f(||a||) is convex when f is convex and non-decreasing on [0, oo)
    c = is_convex(f, r, sp.Interval(0, sp.oo))
    if not c:
        return c
    right = sp.limit(sp.diff(f, r), r, 0, "+")
    return bool(right >= 0) if right.is_number else None


def is_convex(expr: sp.Expr, var: sp.Symbol, support: sp.Set) -> bool | None:
    """True/False when decided, None when sympy cannot decide (symbolic parameters)."""
    signs = _signs(support)
    region = convexity_region(expr, var, support)
    if signs is None or region is None:
        return None
    interior = sp.Interval.open(0, sp.oo) if signs == (1,) else sp.Union(
        sp.Interval.open(-sp.oo, 0), sp.Interval.open(0, sp.oo))
    missing = sp.Complement(interior, region)
    if missing is not sp.S.EmptySet:
        return False if missing.is_empty is False else None
    if 0 not in support:
        return True  # open at 0: +inf outside the support keeps the function convex
    # at the kink x = 0: continuity and left derivative <= right derivative
    p0 = expr.subs(var, 0)
    gp = branch(expr, var, 1)
    try:
        right_val = sp.limit(gp, _Y, 0, "+")
        if not (right_val.is_finite and sp.simplify(right_val - p0) == 0):
            return False
        if signs == (1, -1):
            gm = branch(expr, var, -1)
            if sp.simplify(sp.limit(gm, _Y, 0, "+") - p0) != 0:
                return False
            d_right = sp.limit(sp.diff(gp, _Y), _Y, 0, "+")
            d_left = -sp.limit(sp.diff(gm, _Y), _Y, 0, "+")
            ok = sp.simplify(d_right - d_left)
            if ok.is_nonnegative or ok is sp.oo:
                return True
            if ok.is_negative:
                return False
            return None
    except (NotImplementedError, ValueError, TypeError):  # pragma: no cover
        return None
    return True
