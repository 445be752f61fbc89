"""Per-region records and the layer bookkeeping shared by the enumerators (private)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _polygon
from ._lp import LPSolver
from ._network import PLNet

__all__ = ["Region"]


@dataclass(frozen=True)
class Region:
    """One linear region of a network inside a box.

    Attributes
    ----------
    code : ndarray of bool, shape (H,)
        Polytope code (concatenated sign patterns).
    A, b : ndarray, shapes (m, d) and (m,)
        H-representation of the closed region ∩ box, ``{x : A x ≤ b}``: one
        unit-norm row per unit whose pre-activation is not constant on the region,
        then the 2d box rows.  Rows may be redundant.
    interior_point : ndarray, shape (d,)
        A point strictly inside the region (and the box).
    radius : float
        Exact distance from ``interior_point`` to the boundary of region ∩ box.
    out_A, out_c : ndarray, shapes (o, d) and (o,)
        The network's affine map on the region, ``f(x) = out_A x + out_c``.
    vertices : ndarray, shape (V, 2), or None
        Counter-clockwise vertices (2-D inputs only).
    """

    code: np.ndarray
    A: np.ndarray
    b: np.ndarray
    interior_point: np.ndarray
    radius: float
    out_A: np.ndarray
    out_c: np.ndarray
    vertices: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.A.shape[1])

    @property
    def volume(self) -> float:
        """Length (1-D) or area (2-D) of region ∩ box; NaN in higher dimension."""
        if self.dim == 1:
            a = self.A[:, 0]
            up = np.min(self.b[a > 0] / a[a > 0])
            low = np.max(self.b[a < 0] / a[a < 0])
            return float(max(up - low, 0.0))
        if self.vertices is not None:
            return _polygon.area(self.vertices)
        return float("nan")

    def contains(self, x, tol: float = 0.0) -> np.ndarray:
        """Whether points x (N, d) satisfy ``A x ≤ b + tol``."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        return np.all(x @ self.A.T <= self.b + tol, axis=1)


@dataclass(frozen=True)
class LayerCtx:
    """Pre-activations ``A x + a0`` of layer ``l`` on a region of layers < l."""

    l: int
    A: np.ndarray  # (m, d) raw
    a0: np.ndarray  # (m,)
    An: np.ndarray  # unit-norm rows (zero rows for constant units)
    a0n: np.ndarray
    const: np.ndarray  # bool (m,): unit constant on the region
    J: np.ndarray  # representation h_{l-1} = J x + c on the region
    c: np.ndarray
    history: tuple  # ((A, a0, const, signs), ...) of completed layers


def first_layer(net: PLNet) -> LayerCtx | None:
    d = net.in_dim
    return layer_ctx(net, 0, np.eye(d), np.zeros(d), ())


def layer_ctx(net: PLNet, l: int, J: np.ndarray, c: np.ndarray, history: tuple):
    if l >= len(net.slopes):
        return None
    A = net.weights[l] @ J
    a0 = net.weights[l] @ c + net.biases[l]
    n = np.linalg.norm(A, axis=1)
    scale = max(float(n.max(initial=0.0)), float(np.abs(a0).max(initial=0.0)), 1e-300)
    const = n <= 1e-12 * scale
    safe = np.where(const, 1.0, n)
    An = np.where(const[:, None], 0.0, A / safe[:, None])
    a0n = np.where(const, 0.0, a0 / safe)
    return LayerCtx(l, A, a0, An, a0n, const, J, c, history)


def next_layer(net: PLNet, ctx: LayerCtx, signs: np.ndarray):
    """Context of layer l+1 on the sub-region where layer l has code ``signs``,
    and the extended history."""
    s = np.where(signs, 1.0, net.slopes[ctx.l])
    J = s[:, None] * ctx.A
    c = s * ctx.a0
    hist = ctx.history + ((ctx.A, ctx.a0, ctx.const, signs.copy()),)
    return layer_ctx(net, ctx.l + 1, J, c, hist), hist, J, c


def halfspaces(hist: tuple, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm H-representation ``A x ≤ b`` of a region from its layer history."""
    rows, rhs = [], []
    for A, a0, const, signs in hist:
        keep = ~const
        sg = np.where(signs[keep], -1.0, 1.0)  # on: −(a x + a0) ≤ 0; off: a x + a0 ≤ 0
        Ak, ak = A[keep], a0[keep]
        n = np.linalg.norm(Ak, axis=1)
        rows.append(sg[:, None] * Ak / n[:, None])
        rhs.append(-sg * ak / n)
    d = lo.shape[0]
    rows += [np.eye(d), -np.eye(d)]
    rhs += [hi, -lo]
    return np.concatenate(rows, axis=0), np.concatenate(rhs)


def emit(
    net: PLNet,
    hist: tuple,
    J: np.ndarray,
    c: np.ndarray,
    point: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    tol_abs: float,
    stats: LPSolver,
    vertices: np.ndarray | None = None,
) -> Region | None:
    """Build the :class:`Region`; re-centre with an LP if the witness point is not
    strictly inside (it can sit in a sliver thinner than ``tol_abs``)."""
    code = np.concatenate([h[3] for h in hist]) if hist else np.zeros(0, dtype=bool)
    A, b = halfspaces(hist, lo, hi)
    slack = b - A @ point
    if slack.size and slack.min() <= 0:
        point, r = stats.chebyshev(A[: -2 * lo.shape[0]], b[: -2 * lo.shape[0]], lo, hi)
        if point is None or r <= tol_abs:
            stats.n_dropped += 1
            return None
        slack = b - A @ point
    if lo.shape[0] == 2 and vertices is None:
        vertices = _polygon.vertices(A, b, point, _polygon.box_polygon(lo, hi))
    out_A = net.weights[-1] @ J
    out_c = net.weights[-1] @ c + net.biases[-1]
    return Region(
        code=code,
        A=A,
        b=b,
        interior_point=point,
        radius=float(slack.min()),
        out_A=out_A,
        out_c=out_c,
        vertices=vertices,
    )
