"""Exact walk along a segment from region to region, and polytope density along paths."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._network import PLNet, as_points, net_for

__all__ = ["PathCrossings", "boundaries_crossed", "PathDensity", "polytope_density"]


def _np_point(x, name: str) -> np.ndarray:
    t = as_points(x, name)
    if t.ndim != 1:
        raise ValueError(f"{name} must be a single point of shape (d,), got {tuple(t.shape)}")
    return t.detach().cpu().double().numpy()


def _right_limit(net: PLNet, x: np.ndarray, v: np.ndarray, tol: float):
    """Codes, pre-activations z and their derivatives dz/dt along x + t v, where a
    unit with z ≈ 0 takes the sign it has just after t (right limit): on iff
    z > 0, or z ≈ 0 and dz/dt > 0.  Deeper units then see the right-limit codes."""
    h, hd = x, v
    codes, zs, zds = [], [], []
    for W, b, alpha in zip(net.weights[:-1], net.biases[:-1], net.slopes):
        z = W @ h + b
        zd = W @ hd
        band = tol * (np.abs(W) @ np.abs(h) + np.abs(b) + 1e-300)  # rounding scale
        zero = np.abs(z) <= band
        on = np.where(zero, zd > 0, z > 0)
        s = np.where(on, 1.0, alpha)
        codes.append(on)
        zs.append(np.where(zero, 0.0, z))
        zds.append(zd)
        h, hd = s * z, s * zd
    if not codes:
        e = np.zeros(0)
        return e.astype(bool), e, e
    return np.concatenate(codes), np.concatenate(zs), np.concatenate(zds)


@dataclass(frozen=True)
class PathCrossings:
    """Region boundaries met on the segment ``x(t) = x0 + t (x1 − x0)``, t ∈ [0, 1].

    Attributes
    ----------
    t : ndarray, shape (K,)
        Crossing parameters, increasing, in (0, 1).
    points : ndarray, shape (K, d)
        Crossing points ``x(t_k)``.
    codes : ndarray of bool, shape (K + 1, H)
        Code of each piece: ``codes[k]`` holds on ``(t_k, t_{k+1})`` (t_0 = 0,
        t_{K+1} = 1).
    length : float
        ``‖x1 − x0‖``.
    hamming : int
        Hamming distance between the end codes (a lower bound on neuron flips,
        not on ``n_crossings``).
    tol : float
        Relative tolerance under which a pre-activation counts as zero.
    """

    t: np.ndarray
    points: np.ndarray
    codes: np.ndarray
    length: float
    hamming: int
    tol: float = field(default=1e-9)

    @property
    def n_crossings(self) -> int:
        """K, the number of boundary points met (simultaneous flips count once)."""
        return int(self.t.shape[0])

    @property
    def density(self) -> float:
        """Crossings per unit length, ``K / ‖x1 − x0‖``."""
        return self.n_crossings / self.length if self.length > 0 else 0.0

    @property
    def flips(self) -> np.ndarray:
        """Number of units that change sign at each crossing, shape (K,)."""
        return (self.codes[1:] != self.codes[:-1]).sum(axis=1)


def _walk(net: PLNet, x0: np.ndarray, x1: np.ndarray, tol: float, max_crossings: int):
    v = x1 - x0
    t = 0.0
    code, z, zd = _right_limit(net, x0, v, tol)
    ts, codes = [], [code]
    for _ in range(max_crossings + 1):
        # next sign change of the current region's affine pre-activations
        down = code & (zd < 0)
        up = ~code & (zd > 0)
        steps = np.full(z.shape, np.inf)
        steps[down] = -z[down] / zd[down]
        steps[up] = -z[up] / zd[up]
        dt = float(steps.min()) if steps.size else np.inf
        if not t + dt < 1.0:
            break
        t = t + dt
        new, z, zd = _right_limit(net, x0 + t * v, v, tol)
        if np.array_equal(new, code):
            continue  # a touch within rounding: no region change
        ts.append(t)
        codes.append(new)
        code = new
    else:
        raise RuntimeError(f"more than max_crossings={max_crossings} crossings on the segment")
    return np.asarray(ts, dtype=np.float64), np.asarray(codes, dtype=bool).reshape(len(codes), -1)


def boundaries_crossed(
    model, x0, x1, tol: float = 1e-9, max_crossings: int = 1_000_000
) -> PathCrossings:
    """Walk the segment from ``x0`` to ``x1`` region by region (exact).

    Parameters
    ----------
    model : nn.Module
        ReLU/LeakyReLU/PReLU MLP (see :func:`activation_codes`).
    x0, x1 : Tensor or array, shape (d,)
        End points.
    tol : float
        Relative size under which a pre-activation is read as 0 (rounding).
    max_crossings : int
        Safety stop.

    Returns
    -------
    PathCrossings

    Notes
    -----
    On the current region every pre-activation along the segment is affine in t,
    ``z_i(t) = z_i(t_k) + ż_i (t − t_k)`` with ``ż_i = a_i·(x1 − x0)``.  The next
    boundary is at the smallest positive

    .. math:: t^* = t_k - z_i(t_k)/ż_i

    over units whose sign would change; there the code is recomputed with the
    right-limit rule (a unit at zero takes the sign of ż_i, deeper units see those
    codes).  Unlike the Hamming distance of the end codes, this counts every region
    entered and left.  End points lying exactly on a boundary are not counted.

    References
    ----------
    Black et al., arXiv:2211.12312 (2022).
    """
    a = _np_point(x0, "x0")
    b = _np_point(x1, "x1")
    if a.shape != b.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("x0 and x1 must be finite")
    net = net_for(model, as_points(a, "x0"), "x0")
    ts, codes = _walk(net, a, b, tol, max_crossings)
    return PathCrossings(
        t=ts,
        points=a[None] + ts[:, None] * (b - a)[None],
        codes=codes,
        length=float(np.linalg.norm(b - a)),
        hamming=int((codes[0] != codes[-1]).sum()),
        tol=tol,
    )


@dataclass(frozen=True)
class PathDensity:
    """Boundaries crossed along a polyline ``path[0] → path[1] → …``.

    Attributes
    ----------
    counts : ndarray of int, shape (P − 1,)
        Crossings on each segment.
    lengths : ndarray, shape (P − 1,)
        Segment lengths.
    positions : ndarray, shape (K,)
        Arc length of every crossing from ``path[0]``.
    total_length : float
    tol : float
    """

    counts: np.ndarray
    lengths: np.ndarray
    positions: np.ndarray
    total_length: float
    tol: float

    @property
    def n_crossings(self) -> int:
        return int(self.counts.sum())

    @property
    def density(self) -> float:
        """Crossings per unit arc length over the whole path."""
        return self.n_crossings / self.total_length if self.total_length > 0 else 0.0

    @property
    def segment_density(self) -> np.ndarray:
        """Crossings per unit length on each segment (0 on empty segments)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.lengths > 0, self.counts / self.lengths, 0.0)

    def plot(self, ax=None, label: str | None = None):
        """Cumulative crossings against arc length; returns the Figure."""
        import matplotlib.pyplot as plt

        fig = ax.figure if ax is not None else plt.figure(figsize=(4.5, 3.2))
        ax = ax if ax is not None else fig.add_subplot(111)
        s = np.concatenate([[0.0], self.positions, [self.total_length]])
        k = np.concatenate([[0], np.arange(1, self.n_crossings + 1), [self.n_crossings]])
        ax.step(s, k, where="post", label=label)
        ax.set_xlabel("arc length along path")
        ax.set_ylabel("boundaries crossed")
        ax.set_title(f"density {self.density:.3g} per unit length")
        return fig


def polytope_density(model, path, tol: float = 1e-9) -> PathDensity:
    """Exact polytope boundary crossings along a polyline of points.

    Parameters
    ----------
    model : nn.Module
    path : Tensor or array, shape (P, d), P ≥ 2
        Vertices of the path (e.g. a straight or curved interpolation between two
        inputs of different classes).
    tol : float
        See :func:`boundaries_crossed`.

    Returns
    -------
    PathDensity

    Notes
    -----
    ``density = Σ_p K_p / Σ_p ‖path[p+1] − path[p]‖`` with ``K_p`` the exact
    number of boundaries crossed on segment p (:func:`boundaries_crossed`).
    Crossings at the path's interior vertices are not counted.

    References
    ----------
    Black et al., arXiv:2211.12312 (2022): polytope density along interpolations.
    """
    pts = as_points(path, "path")
    if pts.ndim != 2 or pts.shape[0] < 2:
        raise ValueError(f"path must have shape (P, d) with P >= 2, got {tuple(pts.shape)}")
    P = pts.detach().cpu().double().numpy()
    if not np.all(np.isfinite(P)):
        raise ValueError("path must be finite")
    net = net_for(model, pts, "path")
    counts, lengths, positions = [], [], []
    offset = 0.0
    for a, b in zip(P[:-1], P[1:]):
        ts, _ = _walk(net, a, b, tol, 1_000_000)
        L = float(np.linalg.norm(b - a))
        counts.append(len(ts))
        lengths.append(L)
        positions.append(offset + ts * L)
        offset += L
    return PathDensity(
        counts=np.asarray(counts, dtype=np.int64),
        lengths=np.asarray(lengths),
        positions=np.concatenate(positions) if positions else np.zeros(0),
        total_length=offset,
        tol=tol,
    )
