"""Tensor-product Gauss–Legendre quadrature graded geometrically towards a point.

Integrals of ``exp(−t K(w)) φ(w)`` for sharp, singular ``K`` are concentrated in regions whose
size shrinks like a power of ``1/t`` around the zero set of ``K``. A composite rule whose panels
shrink geometrically towards the centre (panel edges at ``c ± L rᵏ``) is a uniform rule in
``log |w − c|``: every length scale from ``L`` down to ``L rᴶ`` gets the same number of nodes, so
the same rule serves every ``t`` at once and the potential is evaluated only once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp, roots_legendre

__all__ = ["GradedRule", "integrate"]

#: smallest panel edge relative to the side length is FLOOR / √t_max (t_max the largest scale):
#: K's stiffest direction, of curvature O(1), has width t^{-1/2} there, so the innermost panel sits
#: a factor 1e-6 below every scale the integrand has.
FLOOR = 1e-6
#: points evaluated per call of the potential (memory bound)
CHUNK = 1 << 17
#: largest tensor-product rule evaluated (about 10 s for a cheap vectorised potential)
MAX_POINTS = 50_000_000


def rule_points(d: int, order: int, ratio: float, t_max: float) -> int:
    """Number of points of the d-dimensional rule (both sides of the centre on every axis)."""
    floor = min(FLOOR / math.sqrt(max(t_max, 1.0)), 1e-3)
    levels = int(math.ceil(math.log(floor) / math.log(ratio)))
    return (2 * (levels + 2) * order) ** d


@dataclass(frozen=True)
class GradedRule:
    """One axis: nodes and log-weights of a composite rule on ``[lo, hi]`` graded towards ``c``."""

    nodes: np.ndarray
    log_weights: np.ndarray

    @classmethod
    def build(
        cls, lo: float, hi: float, c: float, order: int, ratio: float, floor: float
    ) -> GradedRule:
        x, w = roots_legendre(order)
        levels = int(math.ceil(math.log(floor) / math.log(ratio)))
        nodes, weights = [], []
        for length, sign in ((hi - c, 1.0), (c - lo, -1.0)):
            if length <= 0:
                continue
            edges = length * ratio ** np.arange(levels + 1)
            edges = np.append(edges, 0.0)  # innermost panel [0, L rᴶ]
            a, b = edges[1:], edges[:-1]
            half = 0.5 * (b - a)
            nodes.append((c + sign * (0.5 * (a + b))[:, None] + sign * half[:, None] * x).ravel())
            weights.append((half[:, None] * w).ravel())
        nodes_a, weights_a = np.concatenate(nodes), np.concatenate(weights)
        return cls(nodes_a, np.log(weights_a))


def integrate(
    potential: Callable[[np.ndarray], np.ndarray],
    box: Sequence[tuple[float, float]],
    center: np.ndarray,
    log_prior: Callable[[np.ndarray], np.ndarray],
    scales: np.ndarray,
    *,
    order: int,
    ratio: float,
    moment: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``log ∫ exp(−t K) φ dw`` for each ``t`` in ``scales`` and, if ``moment``, ``E_t[K]``.

    Returns
    -------
    log_z : ndarray, shape (len(scales),)
    mean_k : ndarray or None, shape (len(scales),)
    """
    t = np.asarray(scales, dtype=np.float64)
    size = rule_points(len(box), order, ratio, float(t.max()))
    if size > MAX_POINTS:
        raise ValueError(
            f"the quadrature rule would have about {size:.3g} points (order={order} nodes per "
            f"panel, d={len(box)}, largest n or nbeta {t.max():.3g}), more than {MAX_POINTS:.0e}: "
            "lower order or the largest n"
        )
    floor = min(FLOOR / math.sqrt(max(t.max(), 1.0)), 1e-3)
    rules = [GradedRule.build(lo, hi, c, order, ratio, floor) for (lo, hi), c in zip(box, center)]
    d = len(rules)
    inner = [r.nodes for r in rules[1:]]
    inner_lw = (
        sum(
            np.meshgrid(*[r.log_weights for r in rules[1:]], indexing="ij"), start=np.zeros(())
        ).ravel()
        if d > 1
        else np.zeros(1)
    )
    inner_pts = (
        np.stack([g.ravel() for g in np.meshgrid(*inner, indexing="ij")], axis=1)
        if d > 1
        else np.zeros((1, 0))
    )
    per_row = inner_pts.shape[0]
    rows = max(1, CHUNK // per_row)
    parts_lz, parts_mk = [], []
    first = rules[0]
    for i in range(0, first.nodes.size, rows):
        x0 = first.nodes[i : i + rows]
        pts = np.concatenate(
            [np.repeat(x0, per_row)[:, None], np.tile(inner_pts, (x0.size, 1))], axis=1
        )
        lw = (first.log_weights[i : i + rows][:, None] + inner_lw[None, :]).ravel()
        k = np.asarray(potential(pts), dtype=np.float64)
        if k.shape != (pts.shape[0],):
            raise ValueError(
                f"potential must map points of shape (m, {d}) to values of shape (m,), "
                f"got shape {k.shape} for m = {pts.shape[0]}"
            )
        if np.isnan(k).any():
            raise ValueError("potential returned NaN inside the integration box")
        base = lw + log_prior(pts)
        a = base[None, :] - t[:, None] * k[None, :]  # (scales, points)
        a = np.where(np.isfinite(a), a, -np.inf)
        lz = logsumexp(a, axis=1)
        parts_lz.append(lz)
        if moment:
            shift = np.where(np.isfinite(lz), lz, 0.0)
            p = np.exp(a - shift[:, None])
            parts_mk.append((p * np.where(np.isfinite(k), k, 0.0)).sum(1))
    lz_all = np.stack(parts_lz)  # (chunks, scales)
    log_z = logsumexp(lz_all, axis=0)
    if not np.isfinite(log_z).all():
        raise ValueError(
            "the quadrature found no mass: exp(−n K) times the prior underflows at every node "
            f"(n or nbeta up to {t.max():.3g}); the box is too wide for the rule to resolve the "
            "minimum (give a smaller box or a larger localization), or K(center) is not 0"
        )
    if not moment:
        return log_z, None
    share = np.exp(lz_all - np.where(np.isfinite(log_z), log_z, 0.0)[None, :])
    return log_z, (share * np.stack(parts_mk)).sum(0)
