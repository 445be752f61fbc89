r"""Proximal operators of penalties, derived symbolically where possible.

``prox_t(v) = argmin_x ½(x − v)² + t·pen(x)`` elementwise (or per group for joint penalties).

Closed form: on each branch ``x = s·y`` (``s = ±1``, ``y > 0``) the stationarity condition
``y − s v + t g'(y) = 0`` (``g(y) = pen(s y)``) is made polynomial by the substitution
``y = u^q`` (``q`` = lcm of the denominators of the exponents of ``y``: ``q = 2`` for
``|x|^{1/2}``, ``3`` for ``|x|^{2/3}``) and clearing denominators; when the polynomial has
degree ≤ 4, sympy's radical roots are the candidates.  The real positive roots (polished by two
Newton steps) and ``x = 0`` are compared by the objective, which picks the global minimum even
where the prox jumps (L0, log with t > 1, L1/2).  Otherwise a vectorized numeric solver is used
(:mod:`priors._prox_numeric`).

References
----------
Xu, Chang, Xu & Zhang (2012), L1/2 regularization: a thresholding representation theory.
Cao, Sun & Xu (2013), fast image deconvolution using closed-form thresholding formulas of
L_q (q = 1/2, 2/3) regularization.  Parikh & Boyd (2014), Proximal algorithms.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial, reduce
from typing import Any

import sympy as sp
import torch

from ._prox_joint import exclusive_torch, radial_torch
from ._prox_numeric import (
    check_t,
    finish,
    finite_inputs,
    numeric_prox_1d,
    penalty_minimizer,
    prox_inputs,
)
from ._torch_compile import compile_torch
from .penalty import Penalty, _slab_part, branch, radial_profile

__all__ = ["Prox", "prox"]

V = sp.Symbol("v", real=True)
W = sp.Symbol("w", positive=True)  # |v| on symmetric penalties
T = sp.Symbol("t", positive=True)
_Y = sp.Symbol("y_", positive=True)
_U = sp.Symbol("u_")
_MAX_DEGREE = 4


@dataclass(frozen=True)
class _Branch:
    sign: int  # x = sign * y, y > 0
    power: int  # y = u**power
    roots: tuple  # sympy expressions of u in (v or w, t, params)
    g1: sp.Expr  # d pen(s y)/dy
    g2: sp.Expr  # d² pen(s y)/dy²


@dataclass(frozen=True, eq=False)
class Prox:
    r"""Proximal operator of a penalty.

    Attributes
    ----------
    penalty : Penalty
    closed_form : bool
        True when derived from sympy's radical roots (or a closed form for groups).
    method : str
        How it is computed.
    symmetric : bool
        ``pen(−x) = pen(x)`` (then ``prox(−v) = −prox(v)``).
    stationarity : sympy.Expr or None
        ``y − s v + t g'(y)`` on the positive branch (``x = y > 0``).
    """

    penalty: Penalty
    closed_form: bool
    method: str
    symmetric: bool = False
    stationarity: sp.Expr | None = None
    threshold_expr: sp.Expr | None = None
    branches: tuple = ()
    meta: dict = field(default_factory=dict)

    def to_torch(self, **params: float) -> Callable:
        r"""Torch function ``f(v, t)``: ``argmin_x ½(x − v)² + t·pen(x)``.

        Parameters
        ----------
        **params
            Numeric values for the penalty's free parameters.

        Returns
        -------
        callable
            ``f(v, t) -> tensor`` with ``v``'s shape, dtype and device; ``t`` a float or a
            tensor broadcastable to ``v`` (to ``v.shape[:-1]`` for joint penalties, whose
            groups lie on the last axis).  Computed in float64 and without autograd.
        """
        if params:
            return prox(self.penalty.subs(**params)).to_torch()
        free = self.penalty.params
        if free:
            raise ValueError(
                f"to_torch: give numeric values for the parameters {[s.name for s in free]}"
            )
        return _build_torch(self)

    def __call__(self, v, t):
        """Evaluate on tensors (compiles on each call; use :meth:`to_torch` in loops)."""
        return self.to_torch()(v, t)

    def threshold(self, t: float, **params: float) -> float:
        r"""``inf{v > 0 : prox_t(v) ≠ 0}`` (0 when the prox has no dead zone), by bisection.

        Notes
        -----
        The prox of any function on ℝ is monotone in ``v``, so bisection applies.  Near a
        continuous start the objectives of 0 and of the stationary point differ by O(ε²), so
        float64 comparisons give the threshold to about 1e-8 (relative).
        """
        if self.penalty.dim != 1:
            f1 = self.to_torch(**params)

            def f(v, tt):
                vv = torch.zeros(v.shape + (self.penalty.dim,), dtype=v.dtype)
                vv[..., 0] = v
                return f1(vv, tt)[..., 0]
        else:
            f = self.to_torch(**params)
        tt = float(check_t(t))

        def nonzero(x: float) -> bool:
            return bool(f(torch.tensor([x], dtype=torch.float64), tt)[0] != 0)

        lo, hi = 0.0, 1e-9
        if nonzero(hi):
            return 0.0
        while not nonzero(hi):
            lo, hi = hi, hi * 2
            if hi > 1e8:
                return math.inf
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if nonzero(mid):
                hi = mid
            else:
                lo = mid
            if hi - lo <= 1e-13 * max(1.0, hi):
                break
        return hi

    def latex(self) -> str:
        """LaTeX of the candidate stationary points (closed form) or of the method."""
        if not self.branches:
            return r"\text{" + self.method + "}"
        parts = []
        for br in self.branches:
            for r in br.roots:
                x = br.sign * r**br.power
                parts.append(sp.latex(sp.simplify(x) if sp.count_ops(x) < 40 else x))
        return r"x^\star \in \{0\} \cup \{" + ", ".join(parts) + r"\}"


def _y_exponents(expr: sp.Expr) -> set:
    exps = set()
    for p in expr.atoms(sp.Pow):
        if p.base.has(_Y):
            exps.add(p.exp)
    return exps


def _stationary_poly(eq: sp.Expr) -> tuple[int, sp.Poly] | None:
    """Substitute ``y = u^q`` and clear denominators; the polynomial in u if degree ≤ 4."""
    exps = _y_exponents(eq)
    dens = []
    for e in exps:
        if not e.is_Rational:
            return None
        dens.append(int(e.q))
    q = reduce(math.lcm, dens, 1)
    up = sp.Symbol("u_", positive=True)
    eq_u = sp.powsimp(sp.expand(eq.subs(_Y, up**q)), force=True)
    num = sp.numer(sp.together(eq_u))
    num = sp.expand(num).subs(up, _U)
    try:
        poly = sp.Poly(num, _U)
    except sp.PolynomialError:
        return None
    if not poly.free_symbols_in_domain.isdisjoint({_Y}) or poly.degree() < 1:
        return None
    if poly.degree() > _MAX_DEGREE:
        return None
    for c in poly.all_coeffs():
        if c.has(sp.log, sp.exp, sp.tanh, sp.expint, sp.Abs, sp.Piecewise, _Y):
            return None
    return q, poly


def _value_at_zero(pen: Penalty) -> sp.Expr:
    """``pen(0)`` (limits from the support side when the value is not finite)."""
    a = pen.var
    if 0 not in pen.support:
        if isinstance(pen.support, sp.Interval) and pen.support.inf == 0:
            # open at 0: the infimum as x -> 0+ decides (e.g. Gamma with k < 1: -inf)
            try:
                lim = sp.limit(branch(pen.expr, a, 1), _Y, 0, "+")
            except (NotImplementedError, ValueError):  # pragma: no cover
                return sp.oo
            return lim if lim == -sp.oo else sp.oo
        return sp.oo
    v0 = pen.expr.subs(a, 0)
    v0 = v0.replace(
        lambda x: isinstance(x, sp.expint) and x.args[1] == 0 and x.args[0] <= 1,
        lambda x: sp.oo,
    )
    if v0.is_finite:
        return v0
    try:
        return sp.limit(branch(pen.expr, a, 1), _Y, 0, "+")
    except (NotImplementedError, ValueError):  # pragma: no cover - sympy limits
        return sp.nan


@lru_cache(maxsize=256)
def prox(pen: Penalty) -> Prox:
    r"""The proximal operator of a penalty (closed form when sympy can derive one).

    Parameters
    ----------
    pen : Penalty
        Univariate, or joint with a known structure (radial, mutually exclusive).

    Returns
    -------
    Prox

    Notes
    -----
    ``prox_t(v) = argmin_x ½(x − v)² + t·pen(x)``.  Candidates are the real roots of the
    stationarity condition on each branch and ``x = 0``; the one with the lowest objective is
    returned.  If ``pen(0) = −∞`` (horseshoe) the prox is identically 0.

    Spike-and-slab penalties without a closed form: the support is ``{0} ∪ S`` (S the slab's),
    so ``prox_t(v)`` is whichever of ``0`` (objective ``v²/2``) and the slab's own prox on S
    (``pen = l0 + slab_penalty``, see :func:`priors.penalty`) has the lower objective.  This
    keeps the numeric solver's unimodality assumption on the slab alone (a spike-and-slab
    penalty with a slab mode away from 0 has two local minima).

    Examples
    --------
    >>> import priors, torch
    >>> f = priors.prox(priors.penalty(priors.get("laplace", b=1))).to_torch()
    >>> f(torch.tensor([-2.0, 0.5, 3.0]), 1.0)
    tensor([-1.,  0.,  2.])
    """
    if not isinstance(pen, Penalty):
        raise TypeError(f"pen: expected a priors.Penalty, got {type(pen).__name__}")
    if pen.dim > 1:
        return _joint_prox(pen)
    px = _prox_1d(pen)
    slab = _slab_part(pen)
    if px.closed_form or slab is None:
        return px
    slab_px = prox(slab)
    return Prox(pen, False, f"spike and slab: the better of 0 and the slab's prox "
                f"({slab_px.method})", px.symmetric, px.stationarity,
                meta={"slab_prox": slab_px})


def _joint_prox(pen: Penalty) -> Prox:
    """Groups: the 1-D prox of the radial profile, or of one coordinate (mutually exclusive)."""
    if "exclusive" in pen.meta:
        coord = pen.meta["exclusive"]
        inner = prox(coord)
        return Prox(pen, inner.closed_form, f"mutually exclusive: {inner.method}", False, None,
                    None, (),
                    {"torch": partial(exclusive_torch, pen.dim, inner, coord), "inner": inner})
    radial = radial_profile(pen)
    if radial is not None:
        inner = prox(radial)
        return Prox(pen, inner.closed_form, f"radial: {inner.method}", False, None,
                    inner.threshold_expr, (),
                    {"torch": partial(radial_torch, pen.dim, inner), "inner": inner})
    raise NotImplementedError(
        "prox: joint penalties are handled when radial (f(||a||)) or mutually exclusive; "
        f"got {pen.expr!s}"
    )


def _prox_1d(pen: Penalty) -> Prox:
    a = pen.var
    p0 = _value_at_zero(pen)
    if p0 == -sp.oo:
        return Prox(pen, True, "pen(0) = -inf: prox is identically 0", meta={"zero": True})
    support = pen.support
    symmetric = support == sp.Reals and sp.simplify(
        pen.expr.subs(a, -a) - pen.expr
    ) == 0
    if support == sp.Reals:
        signs = (1,) if symmetric else (1, -1)
    elif isinstance(support, sp.Interval) and support.inf == 0 and support.sup is sp.oo:
        signs = (1,)
    else:
        return Prox(pen, False, "numeric (support other than R or [0, oo))")
    vsym = W if symmetric else V
    branches, stat = [], None
    for s in signs:
        g = branch(pen.expr, a, s)
        if g.has(sp.Piecewise, sp.Abs, sp.sign, sp.Heaviside, sp.Max, sp.Min):
            return Prox(pen, False, "numeric (piecewise penalty)", symmetric)
        g1 = sp.diff(g, _Y)
        eq = _Y - s * vsym + T * g1
        if s == 1:
            stat = eq
        res = _stationary_poly(eq)
        if res is None:
            return Prox(pen, False, "numeric (stationarity not polynomial of degree <= 4)",
                        symmetric, stat)
        q, poly = res
        rts = _radical_roots(poly)
        if sum(rts.values()) != poly.degree():
            return Prox(pen, False, "numeric (sympy found no radical roots)", symmetric, stat)
        branches.append(_Branch(s, q, tuple(rts), g1, sp.diff(g1, _Y)))
    thr = None
    if (symmetric or signs == (1,)) and p0 == 0:
        g1 = branches[0].g1
        kappa = sp.limit(g1, _Y, 0, "+")
        g0 = sp.limit(branch(pen.expr, a, 1), _Y, 0, "+")
        convex = _nonneg_on_positive(branches[0].g2)
        if g0 == 0 and kappa.is_finite and convex:
            thr = sp.simplify(T * kappa)
    degree = max(len(b.roots) for b in branches)
    return Prox(
        pen,
        True,
        f"closed form (radical roots of degree {degree}, substitution y = u^{branches[0].power})",
        symmetric,
        stat,
        thr,
        tuple(branches),
    )


def _radical_roots(poly: sp.Poly) -> dict:
    """``sympy.roots`` in radicals, with every Float coefficient held as a symbol meanwhile.

    With floats sympy converts the polynomial to integers and factors it, which takes hours
    for coefficients such as 1e-600 (Cauchy with s = 1e300); the generic formula in symbols
    costs nothing and is then evaluated at the floats.
    """
    expr = poly.as_expr()
    floats = sorted(expr.atoms(sp.Float), key=float)
    if not floats:
        return sp.roots(poly, cubics=True, quartics=True)
    held = {f: sp.Symbol(f"c{i}_", positive=bool(f > 0), negative=bool(f < 0))
            for i, f in enumerate(floats)}
    rts = sp.roots(sp.Poly(expr.xreplace(held), _U), cubics=True, quartics=True)
    back = {h: f for f, h in held.items()}
    return {r.xreplace(back): m for r, m in rts.items()}


def _nonneg_on_positive(expr: sp.Expr) -> bool:
    if expr == 0 or expr.is_nonnegative:
        return True
    try:
        sol = sp.solveset(expr < 0, _Y, sp.Interval.open(0, sp.oo))
    except Exception:  # noqa: BLE001 - sympy/mpmath failures (NoConvergence): undecided
        return False
    return sol is sp.S.EmptySet


def _build_torch(px: Prox) -> Callable:
    pen = px.penalty
    if pen.dim > 1:
        return px.meta["torch"]()
    pen_t = pen.to_torch()
    if px.meta.get("zero"):

        def f_zero(v, t):
            v64, t64 = prox_inputs(v, t)
            return finish(torch.zeros_like(v64), v64, t64, sp.Interval(0, 0),
                          lambda: 0.0).to(v.dtype)

        return f_zero
    if "slab_prox" in px.meta:
        return _spike_and_slab_prox(pen, pen_t, px.meta["slab_prox"].to_torch())
    if not px.closed_form:
        return numeric_prox_1d(pen, pen_t)
    vsym = W if px.symmetric else V
    comp = []
    for br in px.branches:
        root_fns = [compile_torch(r, [vsym, T]) for r in br.roots]
        g1 = compile_torch(br.g1, [_Y])
        g2 = compile_torch(br.g2, [_Y])
        comp.append((br.sign, br.power, root_fns, g1, g2))
    zero_ok = bool(0 in pen.support) and bool(_value_at_zero(pen).is_finite)
    minimizer = _minimizer(pen)

    def f(v: torch.Tensor, t: Any) -> torch.Tensor:
        with torch.no_grad():
            v_in, t_in = prox_inputs(v, t)
            v64, t64 = finite_inputs(v_in, t_in)
            vin = v64.abs() if px.symmetric else v64
            cands, objs = [], []
            if zero_ok:
                x0 = torch.zeros_like(vin)
                cands.append(x0)
                objs.append(_objective(pen_t, x0, vin, t64))
            vc, tc = vin.to(torch.complex128), t64.to(torch.complex128)
            for sign, power, root_fns, g1, g2 in comp:
                for rf in root_fns:
                    with torch.autograd.set_grad_enabled(False):
                        u = torch.as_tensor(rf(vc, tc), dtype=torch.complex128, device=v.device)
                    u = u.expand_as(vc)
                    for rel in (1e-6, 1e-4, 1e-3, 1e-2):
                        bad = ~torch.isfinite(u)
                        if not torch.any(bad):
                            break
                        # removable singularities of the radical formulas (Cardano with
                        # p = 0 gives 0/0): start from a nearby v; Newton polishing corrects it
                        vp = vc + rel * (1 + vc.abs())
                        u_alt = torch.as_tensor(rf(vp, tc), dtype=torch.complex128,
                                                device=v.device).expand_as(vc)
                        u = torch.where(bad, u_alt, u)
                    ok = (u.imag.abs() <= 1e-7 * (1 + u.real.abs())) & (u.real > 0)
                    y = torch.where(ok, u.real, torch.ones_like(vin)) ** power
                    y = _polish(y, sign, vin, t64, g1, g2)
                    ok = ok & (y > 0) & torch.isfinite(y)
                    x = sign * y
                    obj = _objective(pen_t, x, vin, t64)
                    obj = torch.where(ok & ~torch.isnan(obj), obj, torch.full_like(obj, math.inf))
                    cands.append(torch.where(ok, x, torch.zeros_like(x)))
                    objs.append(obj)
                # Newton from y = s·v as well: where the radical formulas cancel
                # catastrophically (scales such as 1e300) it still finds the stationary point
                start = sign * vin
                ok = start > 0
                y = _polish(torch.where(ok, start, torch.ones_like(vin)), sign, vin, t64, g1, g2,
                            steps=30)
                ok = ok & (y > 0) & torch.isfinite(y)
                x = sign * y
                obj = _objective(pen_t, x, vin, t64)
                objs.append(torch.where(ok & ~torch.isnan(obj), obj, math.inf))
                cands.append(torch.where(ok, x, torch.zeros_like(x)))
            if not cands:
                raise RuntimeError("prox: no candidate minimizer")  # pragma: no cover
            objs_t = torch.stack(objs)
            best = torch.argmin(objs_t, dim=0)  # first minimum: x = 0 wins ties
            out = torch.gather(torch.stack(cands), 0, best.unsqueeze(0)).squeeze(0)
            out = torch.where(t64 == 0, vin, out)
            if px.symmetric:
                out = torch.sign(v64) * out
            return finish(out, v_in, t_in, pen.support, minimizer).to(v.dtype)

    return f


def _minimizer(pen: Penalty) -> Callable[[], float]:
    """``argmin pen`` (the prox at ``t = inf``), computed on first use."""
    cache: list[float] = []

    def get() -> float:
        if not cache:
            sup = pen.support
            lo = float(sup.inf) if sup.inf.is_finite else -math.inf
            hi = float(sup.sup) if sup.sup.is_finite else math.inf
            cache.append(penalty_minimizer(pen, lo, hi))
        return cache[0]

    return get


def _spike_and_slab_prox(pen: Penalty, pen_t: Callable, slab_prox: Callable) -> Callable:
    """``argmin`` over ``{0, prox_slab(v)}`` of ``½(x − v)² + t·pen(x)`` (0 wins ties)."""
    minimizer = _minimizer(pen)

    def f(v: torch.Tensor, t: Any) -> torch.Tensor:
        with torch.no_grad():
            v_in, t_in = prox_inputs(v, t)
            v64, t64 = finite_inputs(v_in, t_in)
            xs = slab_prox(v64, t64)
            obj_s = _objective(pen_t, xs, v64, t64)
            obj_s = torch.where(torch.isnan(obj_s), math.inf, obj_s)
            out = torch.where(0.5 * v64**2 <= obj_s, torch.zeros_like(xs), xs)
            out = torch.where(t64 == 0, v64, out)
            return finish(out, v_in, t_in, pen.support, minimizer).to(v.dtype)

    return f


def _objective(pen_t, x, v, t):
    val = pen_t(x)
    # t * pen with t = 0 and pen = inf must not give NaN
    tp = torch.where(t == 0, torch.zeros_like(val), t * val)
    return 0.5 * (x - v) ** 2 + tp


def _polish(y, sign, v, t, g1, g2, steps: int = 4):
    """Newton steps on ``h(y) = y − s v + t g'(y)``; a step is kept only if it reduces |h|."""
    for _ in range(steps):
        h = y - sign * v + t * g1(y)
        dh = 1 + t * g2(y)
        y_new = y - h / dh
        h_new = y_new - sign * v + t * g1(torch.where(y_new > 0, y_new, y))
        better = (y_new > 0) & torch.isfinite(y_new) & (h_new.abs() < h.abs())
        y = torch.where(better, y_new, y)
    return y
