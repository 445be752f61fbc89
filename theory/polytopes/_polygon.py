"""Convex polygon helpers for exact 2-D geometry (private)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import HalfspaceIntersection, QhullError

__all__: list[str] = []


def box_polygon(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Counter-clockwise vertices of the rectangle [lo, hi], shape (4, 2)."""
    return np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])


def split(V: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split convex polygon ``V`` (k, 2) by the line where the affine values ``s``
    (k,) at its vertices vanish; returns (part with s ≥ 0, part with s ≤ 0),
    both counter-clockwise.  Assumes s takes both signs."""
    k = V.shape[0]
    pos, neg = [], []
    for i in range(k):
        j = (i + 1) % k
        si, sj = s[i], s[j]
        if si >= 0:
            pos.append(V[i])
        if si <= 0:
            neg.append(V[i])
        if (si > 0 and sj < 0) or (si < 0 and sj > 0):
            p = V[i] + (si / (si - sj)) * (V[j] - V[i])
            pos.append(p)
            neg.append(p)
    return np.asarray(pos), np.asarray(neg)


def clip(V: np.ndarray, A: np.ndarray, b: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """Intersect convex polygon ``V`` with ``{x : A x ≤ b}`` (rows need not be
    normalised); returns the vertices (possibly empty, shape (0, 2))."""
    A, b = np.asarray(A), np.asarray(b)
    while A.shape[0] and V.shape[0]:
        S = b[None, :] - V @ A.T  # (k, m), ≥ 0 inside
        if np.any(np.all(S <= tol, axis=0) & np.any(S < -tol, axis=0)):
            return np.zeros((0, 2))
        cuts = np.any(S < -tol, axis=0)  # rows that do not cut V never cut its parts
        if not cuts.any():
            break
        idx = np.flatnonzero(cuts)
        V, _ = split(V, S[:, idx[0]])
        A, b = A[idx[1:]], b[idx[1:]]
    return V


def vertices(A: np.ndarray, b: np.ndarray, point: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Counter-clockwise vertices of ``{x : A x ≤ b}`` (bounded, 2-D) from a
    strictly interior ``point``, by qhull's halfspace intersection; falls back
    to clipping ``box`` (a polygon containing the set) when qhull fails."""
    try:
        hs = HalfspaceIntersection(np.hstack([A, -b[:, None]]), point)
        V = hs.intersections
        c = V.mean(0)
        V = V[np.argsort(np.arctan2(V[:, 1] - c[1], V[:, 0] - c[0]))]
        # merge coincident vertices (several facets through one point)
        scale = max(float(np.abs(V).max()), 1.0)
        keep = np.linalg.norm(V - np.roll(V, 1, axis=0), axis=1) > 1e-12 * scale
        return V[keep] if keep.any() else V[:1]
    except (QhullError, ValueError):
        return clip(box, A, b)


def area(V: np.ndarray) -> float:
    """Shoelace area of a counter-clockwise polygon."""
    if V.shape[0] < 3:
        return 0.0
    x, y = V[:, 0], V[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
