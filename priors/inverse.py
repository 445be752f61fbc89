r"""From a penalty back to its prior: ``p(a) = exp(−pen(a)) / Z``.

``Z = ∫ exp(−pen)`` is computed in closed form where sympy finds it, with the conditions on the
parameters under which it is finite (e.g. ``∫ (1 + |a|)^{−λ} da = 2/(λ − 1)`` for λ > 1).  A
penalty whose ``exp(−pen)`` is not integrable raises :class:`ImproperPriorError` saying why (tail
or singularity) and which positive multiple ``w·pen`` would be proper.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from ._integrate import _Y, _integrate_half_line, divergence_reason, half_line_pieces, normalizer
from ._symbolic import ImproperPriorError
from .penalty import Penalty, R, radial_profile
from .prior import Prior

__all__ = ["exp_neg", "prior_from_penalty"]

_WEIGHT = sp.Symbol("w", positive=True)


def exp_neg(pen_expr: sp.Expr) -> sp.Expr:
    """``exp(−pen)`` with ``exp(c·log X)`` written as ``X**c`` (so that sympy integrates it)."""
    factors = []
    for term in sp.Add.make_args(sp.expand(-pen_expr, deep=False)):
        logs = [f for f in sp.Mul.make_args(term) if isinstance(f, sp.log)]
        if len(logs) == 1:
            coeff = sp.Mul(*[f for f in sp.Mul.make_args(term) if f is not logs[0]])
            factors.append(logs[0].args[0] ** coeff)
        else:
            factors.append(sp.exp(term))
    return sp.Mul(*factors)


def _weight_condition(pen: Penalty) -> sp.Basic | None:
    """Condition on w > 0 under which ``exp(−w·pen)`` is integrable (None if not found)."""
    conds = []
    for piece in half_line_pieces(exp_neg(_WEIGHT * pen.expr), pen.var, pen.support):
        try:
            val, cond = _integrate_half_line(piece)
        except (NotImplementedError, ValueError, TypeError):  # pragma: no cover
            return None
        if val is sp.oo or val.has(sp.Integral) or cond is sp.false:
            return sp.false if val is sp.oo else None
        conds.append(cond)
    return sp.simplify(sp.And(*conds))


def prior_from_penalty(expr: Any, var: Any = None, support: Any = None,
                       name: str = "from_penalty") -> Prior:
    r"""The normalized prior ``exp(−pen)/Z`` of a penalty.

    Parameters
    ----------
    expr : sympy.Expr, str or Penalty
        The penalty (a :class:`Penalty` carries its own variable and support).
    var : sympy.Symbol
        Its variable (univariate).  A positive symbol means the support [0, ∞) (sympy writes
        ``|a|`` as ``a`` for it); declare it ``real=True`` for a penalty on the real line.
    support : {"real", "positive"}, sympy.Set or None
        None (default): the real line, or [0, ∞) for a positive or non-negative ``var``.

    Returns
    -------
    Prior
        ``meta["normalizable_if"]`` holds the condition on symbolic parameters for Z < ∞ and
        ``meta["log_normalizer"]`` is ``log Z``.

    Raises
    ------
    ImproperPriorError
        If ``∫ exp(−pen) = ∞`` (for the given numeric parameters); the message gives the reason
        and the condition on a weight ``w`` under which ``w·pen`` is proper.

    Examples
    --------
    >>> import sympy as sp, priors
    >>> a, lam = sp.Symbol("a", real=True), sp.Symbol("lambda", positive=True)
    >>> p = priors.prior_from_penalty(lam * sp.log(1 + sp.Abs(a)), a)
    >>> p.meta["normalizable_if"]
    lambda > 1
    """
    if not isinstance(expr, Penalty) and var is None:
        raise TypeError("var: expected the penalty's variable (a sympy Symbol), got None")
    pen = expr if isinstance(expr, Penalty) else Penalty(expr, var, support)
    if pen.dim != 1:
        return _joint_prior(pen, name)
    a = pen.var
    dens = exp_neg(pen.expr)
    try:
        z, cond = normalizer(dens, (a,), pen.support)
    except ImproperPriorError as err:
        wc = _weight_condition(pen)
        if wc is None:
            hint = ""
        elif wc is sp.false:
            hint = " No positive multiple w·pen is proper either."
        else:
            hint = f" The penalty w·pen is proper for {wc} (w = weight)."
        raise ImproperPriorError(f"penalty {pen.expr!s} gives an improper prior: {err}.{hint}") \
            from None
    if cond is not sp.true and cond is not True:
        cond = sp.simplify(cond)
        if cond is sp.false:
            raise ImproperPriorError(f"penalty {pen.expr!s}: ∫ exp(−pen) diverges")
    z = sp.gammasimp(sp.simplify(z))
    density = dens / z
    params = tuple(sorted(density.free_symbols - {a}, key=lambda s: s.name))
    meta = {"normalizable_if": cond, "log_normalizer": sp.log(z)}
    return Prior(density, a, pen.support, params, name, meta=meta)


def _joint_prior(pen: Penalty, name: str) -> Prior:
    """Radial joint penalties: ``Z = S_{d−1} ∫_0^∞ r^{d−1} e^{−f(r)} dr``."""
    prof = radial_profile(pen)
    if prof is None:
        raise NotImplementedError(
            "prior_from_penalty: joint penalties are handled when radial, f(||a||)"
        )
    d = pen.dim
    integrand = (R ** (d - 1) * exp_neg(prof.expr)).subs(R, _Y)
    val, cond = _integrate_half_line(integrand)
    if val is sp.oo or val.has(sp.Integral):
        why = divergence_reason(integrand)
        raise ImproperPriorError(
            f"penalty {pen.expr!s} gives an improper prior" + (f": {why}" if why else "")
        )
    z = sp.gammasimp(2 * sp.pi ** sp.Rational(d, 2) / sp.gamma(sp.Rational(d, 2)) * val)
    density = exp_neg(pen.expr) / z
    params = tuple(sorted(density.free_symbols - set(pen.vars), key=lambda s: s.name))
    return Prior(density, pen.vars, pen.support, params, name,
                 meta={"normalizable_if": cond, "log_normalizer": sp.log(z)})
