"""Depth-first enumeration of sign patterns (private).

Two drivers share the same tree: units are decided layer by layer, unit by unit;
a unit whose hyperplane does not cut the current cell is fixed without branching
(and adds no constraint), otherwise the cell is split in two.

* ``lp``: any input dimension.  Each cell carries a witness point with a margin
  (the parent's LP solution); a side containing the witness needs no LP, the
  other side is tested with a Chebyshev-ball LP (HiGHS).  An outer box of each
  cell (bound propagation, optionally tightened by 2d LPs) lets later units be
  fixed by interval arithmetic, without an LP.
* ``polygon``: 2-D inputs; cells are convex polygons and a unit cuts a cell iff
  its vertices lie strictly on both sides, so no LP is solved.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import _polygon
from ._lp import LPSolver
from ._network import PLNet
from ._region import Region, emit, first_layer, next_layer

__all__: list[str] = []


def propagate_box(G: np.ndarray, h: np.ndarray, lo: np.ndarray, hi: np.ndarray, rounds: int = 2):
    """Feasibility-based bound tightening: a box containing ``{G x ≤ h} ∩ [lo, hi]``.

    For row k and coordinate j with ``G_kj > 0``:
    ``x_j ≤ (h_k − Σ_{i≠j} min(G_ki lo_i, G_ki hi_i)) / G_kj`` (and the mirror
    image for ``G_kj < 0``); no LP, weaker than the LP bounding box.
    """
    lo, hi = lo.copy(), hi.copy()
    if G.shape[0] == 0:
        return lo, hi
    pos, neg = G > 0, G < 0
    safe = np.where(G != 0, G, 1.0)
    for _ in range(rounds):
        mins = np.minimum(G * lo, G * hi)
        rest = h[:, None] - (mins.sum(1, keepdims=True) - mins)
        bound = rest / safe
        new_hi = np.min(np.where(pos, bound, np.inf), axis=0)
        new_lo = np.max(np.where(neg, bound, -np.inf), axis=0)
        hi = np.minimum(hi, new_hi)
        lo = np.maximum(lo, new_lo)
    return lo, hi


def enumerate_lp(
    net: PLNet,
    lo: np.ndarray,
    hi: np.ndarray,
    tol_abs: float,
    on_region: Callable[[Region], bool],
    stats: LPSolver,
    bbox_lp: bool = False,
) -> None:
    """Call ``on_region`` for every region; stop early when it returns False."""
    d = lo.shape[0]
    ctx0 = first_layer(net)
    if ctx0 is None:
        r = emit(net, (), np.eye(d), np.zeros(d), (lo + hi) / 2, lo, hi, tol_abs, stats)
        on_region(r)
        return
    n_total = net.n_neurons
    G0, h0 = np.zeros((0, d)), np.zeros(0)
    p0 = (lo + hi) / 2
    r0 = float(np.min(hi - lo) / 2)
    signs0 = np.zeros(ctx0.A.shape[0], dtype=bool)
    # node: (ctx, i, signs, G, h, p, r, blo, bhi, units decided before this layer)
    stack = [(ctx0, 0, signs0, G0, h0, p0, r0, lo.copy(), hi.copy(), 0)]
    while stack:
        ctx, i, signs, G, h, p, r, blo, bhi, done = stack.pop()
        stats.n_nodes += 1
        m = signs.shape[0]
        # fix every unit that cannot cut this cell (interval arithmetic on its box)
        if i < m:
            An, a0n = ctx.An[i:], ctx.a0n[i:]
            mid, rad = (blo + bhi) / 2, (bhi - blo) / 2
            centre = An @ mid + a0n
            spread = np.abs(An) @ rad
            const = ctx.const[i:]
            fixed_on = const & (ctx.a0[i:] > 0) | ~const & (centre - spread > -tol_abs)
            fixed_off = ~fixed_on & (const | (centre + spread < tol_abs))
            free = np.flatnonzero(~(fixed_on | fixed_off))
            stop = i + (free[0] if free.size else m - i)
            signs[i:stop] = fixed_on[: stop - i]
            i = stop
        if i == m:
            nctx, hist, J, c = next_layer(net, ctx, signs)
            if nctx is None:
                reg = emit(net, hist, J, c, p, lo, hi, tol_abs, stats)
                if reg is not None and on_region(reg) is False:
                    return
            else:
                ns = np.zeros(nctx.A.shape[0], dtype=bool)
                stack.append((nctx, 0, ns, G, h, p, r, blo, bhi, done + m))
            continue
        a, a0 = ctx.An[i], ctx.a0n[i]
        delta = float(a @ p + a0)
        kids = []
        for on in (False, True):
            row, rhs = (-a, a0) if on else (a, -a0)
            side = delta if on else -delta
            if side > tol_abs and min(r, side) > tol_abs:
                kids.append((on, row, rhs, p, min(r, side)))
                continue
            Gs = np.vstack([G, row[None]])
            hs = np.append(h, rhs)
            x, t = stats.chebyshev(Gs, hs, lo, hi)
            if x is not None and t > tol_abs:
                kids.append((on, row, rhs, x, t))
        if not kids:
            stats.n_dropped += 1  # the cell itself was thinner than tol_abs
            continue
        remaining = n_total - done - i - 1
        for on, row, rhs, x, t in kids:
            s2 = signs.copy()
            s2[i] = on
            if len(kids) == 1:  # the unit does not cut the cell: no constraint
                stack.append((ctx, i + 1, s2, G, h, x, t, blo, bhi, done))
                continue
            Gs = np.vstack([G, row[None]])
            hs = np.append(h, rhs)
            # cheap outer box of the child cell, widened against rounding
            nlo, nhi = propagate_box(Gs, hs, blo, bhi)
            nlo, nhi = nlo - tol_abs, nhi + tol_abs
            if bbox_lp and remaining >= 2 * d:
                nlo, nhi = stats.bounding_box(Gs, hs, nlo, nhi, margin=10 * tol_abs)
            stack.append((ctx, i + 1, s2, Gs, hs, x, t, nlo, nhi, done))


def enumerate_polygon(
    net: PLNet,
    lo: np.ndarray,
    hi: np.ndarray,
    tol_abs: float,
    on_region: Callable[[Region], bool],
    stats: LPSolver,
) -> None:
    """Exact 2-D enumeration by splitting convex polygons (no LP)."""
    ctx0 = first_layer(net)
    V0 = _polygon.box_polygon(lo, hi)
    if ctx0 is None:
        on_region(emit(net, (), np.eye(2), np.zeros(2), V0.mean(0), lo, hi, tol_abs, stats, V0))
        return
    # node: (ctx, signs, undecided unit indices, polygon)
    stack = [(ctx0, np.zeros(ctx0.A.shape[0], dtype=bool), np.arange(ctx0.A.shape[0]), V0)]
    while stack:
        ctx, signs, und, V = stack.pop()
        stats.n_nodes += 1
        if und.size:
            const = ctx.const[und]
            signs[und[const]] = ctx.a0[und[const]] > 0
            und = und[~const]
        if und.size:
            vals = V @ ctx.An[und].T + ctx.a0n[und]  # (k, u): signed distances
            vmax, vmin = vals.max(0), vals.min(0)
            on = vmin > -tol_abs
            off = (vmax < tol_abs) & ~on
            signs[und[on]] = True
            signs[und[off]] = False
            cut = ~(on | off)
            und, vals = und[cut], vals[:, cut]
        if und.size == 0:
            nctx, hist, J, c = next_layer(net, ctx, signs)
            if nctx is None:
                reg = emit(net, hist, J, c, V.mean(0), lo, hi, tol_abs, stats, V)
                if reg is not None and on_region(reg) is False:
                    return
            else:
                stack.append(
                    (nctx, np.zeros(nctx.A.shape[0], dtype=bool), np.arange(nctx.A.shape[0]), V)
                )
            continue
        u = und[0]
        Vp, Vn = _polygon.split(V, vals[:, 0])
        rest = und[1:]
        for on_u, Vc in ((False, Vn), (True, Vp)):
            s2 = signs.copy()
            s2[u] = on_u
            stack.append((ctx, s2, rest, Vc))
