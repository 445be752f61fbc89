"""Exact region counts of hyperplane arrangements and upper bounds for deep ReLU nets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import comb

__all__ = [
    "arrangement_regions",
    "bounded_regions",
    "central_arrangement_regions",
    "region_bounds",
    "RegionBounds",
]


# exact counts multiply integers of up to n bits: (terms × bits) bounds their time and memory
MAX_WORK = 4 * 10**9  # about 2 s and 0.5 GB


def _check_nd(n, d) -> tuple[int, int]:
    for name, v in (("n", n), ("d", d)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    return n, d


def arrangement_regions(n: int, d: int) -> int:
    """Regions of ``n`` affine hyperplanes in general position in ``R^d``.

    Notes
    -----
    .. math:: r(n, d) = \\sum_{i=0}^{d} \\binom{n}{i}

    (Zaslavsky 1975; Buck 1943).  This is the exact count for one hidden layer of
    ``n`` ReLUs with generic weights on ``R^d``.
    """
    n, d = _check_nd(n, d)
    if d >= n:
        return 1 << n  # every subset: 2^n, without summing n + 1 large binomials
    if d * n > MAX_WORK:
        raise ValueError(
            f"n = {n}, d = {d}: the exact count sums {d} integers of up to {n} bits; "
            "use smaller n or d"
        )
    total, term = 1, 1
    for i in range(d):  # C(n, i + 1) from C(n, i): one multiplication per term
        term = term * (n - i) // (i + 1)
        total += term
    return total


def bounded_regions(n: int, d: int) -> int:
    """Bounded regions of ``n`` generic affine hyperplanes in ``R^d``:
    ``C(n − 1, d)`` (0 when n = 0)."""
    n, d = _check_nd(n, d)
    return comb(n - 1, d) if n >= 1 else 0


def central_arrangement_regions(n: int, d: int) -> int:
    """Regions of ``n ≥ 1`` generic hyperplanes through the origin of ``R^d``.

    Notes
    -----
    .. math:: r_0(n, d) = 2 \\sum_{i=0}^{d-1} \\binom{n-1}{i}

    (1 when n = 0).  E.g. n lines through the origin of the plane give 2n sectors.
    """
    n, d = _check_nd(n, d)
    if n == 0:
        return 1
    if d == 0:
        return 1
    return 2 * sum(comb(n - 1, i) for i in range(d))


@dataclass(frozen=True)
class RegionBounds:
    """Upper bounds on the number of linear regions of an MLP.

    Attributes
    ----------
    widths : tuple of int
        ``(n_0, n_1, …, n_L)``: input dimension then hidden widths.
    serra : int
        Serra, Tjandraatmadja & Ramalingam (2018, Thm 1) bound for ReLU networks.
    product : int
        ``Π_l r(n_l, n_0)``: valid for any single-breakpoint piecewise-linear
        activation (LeakyReLU, PReLU), where the image does not lose dimension.
    one_layer : int
        ``r(n_1, n_0)``: the exact count for the first layer alone in general position.
    """

    widths: tuple[int, ...]
    serra: int
    product: int
    one_layer: int


def _binomials(n: int, k: int) -> list[int]:
    """``[C(n, 0), …, C(n, k)]``, one multiplication per term."""
    row = [1]
    for i in range(k):
        row.append(row[-1] * (n - i) // (i + 1))
    return row


def _serra(widths: Sequence[int]) -> int:
    n0 = widths[0]
    # state: d = min(n_0, n_1 − j_1, …, n_{l−1} − j_{l−1}) -> summed weight
    states = {n0: 1}
    work = 0
    for n in widths[1:]:
        top = min(max(states), n)
        work += len(states) * (top + 1) * max(n, 1)
        if work > MAX_WORK:
            raise ValueError(
                f"widths {tuple(widths)}: the exact Serra bound would multiply integers of up to "
                f"{n} bits about {len(states) * (top + 1)} times; use smaller widths, or "
                "arrangement_regions per layer for the product bound"
            )
        row = _binomials(n, top)
        nxt: dict[int, int] = {}
        for d, w in states.items():
            for j in range(min(d, n) + 1):
                key = min(d, n - j)
                nxt[key] = nxt.get(key, 0) + w * row[j]
        states = nxt
    return sum(states.values())


def region_bounds(widths: Sequence[int]) -> RegionBounds:
    """Upper bounds on the number of linear regions for an architecture.

    Parameters
    ----------
    widths : sequence of int
        ``(n_0, n_1, …, n_L)``: input dimension followed by the hidden widths (the
        output layer has no activation and adds no regions).

    Returns
    -------
    RegionBounds

    Notes
    -----
    Serra et al. (2018), Theorem 1: a ReLU network with input dimension ``n_0``
    and hidden widths ``n_1..n_L`` has at most

    .. math::
        \\sum_{(j_1,\\dots,j_L) \\in J} \\prod_{l=1}^{L} \\binom{n_l}{j_l},\\quad
        J = \\{ 0 \\le j_l \\le \\min(n_0, n_1 - j_1, \\dots, n_{l-1} - j_{l-1}, n_l) \\}

    regions.  Derivation: a region R of layers < l lives, after those layers, in an
    image of dimension ``d_l ≤ min(n_0, n_1 − j_1, …)``; layer l's ``n_l``
    hyperplanes cut that image like an arrangement in ``R^{d_l}``, whose regions
    can be indexed injectively by subsets of at most ``d_l`` hyperplanes (those
    through each region's lowest vertex for a generic direction), chosen among the
    units inactive on that region.  A region indexed by ``j_l`` inactive units
    keeps at most ``n_l − j_l`` active ones, so its image has dimension at most
    ``min(d_l, n_l − j_l)``.  Summing the ``C(n_l, j_l)`` choices over these paths
    gives the bound, computed exactly here by dynamic programming over ``d_l``.
    For L = 1 it equals the generic count ``r(n_1, n_0)``; for ``n_0 = 1`` it is
    ``Π (n_l + 1)``, which is attained.

    References
    ----------
    Serra, Tjandraatmadja & Ramalingam, "Bounding and Counting Linear Regions of
    Deep Neural Networks", ICML 2018 (arXiv:1711.02114).
    Zaslavsky, "Facing up to arrangements", Mem. AMS 154 (1975).
    """
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise TypeError("widths must be a sequence of ints (n_0, n_1, ..., n_L)")
    w = tuple(widths)
    if len(w) < 1:
        raise ValueError("widths must contain at least the input dimension n_0")
    for i, v in enumerate(w):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or (i == 0 and v == 0):
            raise ValueError(
                f"widths[{i}] must be a {'positive' if i == 0 else 'non-negative'} int, got {v!r}"
            )
    n0 = w[0]
    product = 1
    for n in w[1:]:
        product *= arrangement_regions(n, n0)
    return RegionBounds(
        widths=w,
        serra=_serra(w),
        product=product,
        one_layer=arrangement_regions(w[1], n0) if len(w) > 1 else 1,
    )
