"""Exact learning coefficients: the ground truth the estimators are validated against.

Every function returns a :class:`LearningCoefficient`, the real log canonical threshold λ as an
exact :class:`fractions.Fraction` together with its multiplicity m, so that the free energy
``F_n = n L_n(w0) + λ log n − (m − 1) log log n + O_p(1)`` is known to its second order.

References
----------
.. [1] M. Aoyagi and S. Watanabe, "Stochastic complexities of reduced rank regression in Bayesian
   estimation", Neural Networks 18 (2005) 924–933.
.. [2] M. Aoyagi, "Consideration on the learning efficiency of multiple-layered neural networks
   with linear units", Neural Networks 172 (2024) 106132.  Restated as Theorem B.1 of
   Furman & Lau, arXiv:2402.03698.
.. [3] S. Watanabe, *Algebraic Geometry and Statistical Learning Theory*, Cambridge, 2009.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations

__all__ = [
    "LearningCoefficient",
    "deep_linear_network",
    "normal_crossing",
    "reduced_rank_regression",
    "regular",
]


@dataclass(frozen=True)
class LearningCoefficient:
    """An exact learning coefficient.

    Attributes
    ----------
    value : Fraction
        The learning coefficient (real log canonical threshold) λ.
    multiplicity : int
        Its multiplicity m ≥ 1 (the order of the largest pole of the zeta function).
    """

    value: Fraction
    multiplicity: int

    def __float__(self) -> float:
        return float(self.value)

    def __str__(self) -> str:
        return f"λ = {self.value} (m = {self.multiplicity})"


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | Fraction) or int(value) != value:
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def regular(d: int) -> LearningCoefficient:
    """Learning coefficient of a regular model with ``d`` parameters: λ = d/2, m = 1."""
    d = _check_int("d", d, 0)
    return LearningCoefficient(Fraction(d, 2), 1)


def normal_crossing(k: Sequence[int], h: Sequence[int] | None = None) -> LearningCoefficient:
    """Learning coefficient of a normal-crossing potential.

    Parameters
    ----------
    k : sequence of int, length d
        Exponents of ``K(w) = Π_i w_i^{2 k_i}``; at least one must be positive.
    h : sequence of int, length d, optional
        Exponents of the prior ``φ(w) ∝ Π_i |w_i|^{h_i}`` near 0 (default all 0).

    Notes
    -----
    ``λ = min_{i: k_i > 0} (h_i + 1) / (2 k_i)``; the multiplicity is the number of indices that
    attain the minimum [3]_.
    """
    for name, v in (("k", k), ("h", h)):
        if (v is not None or name == "k") and (isinstance(v, str) or not isinstance(v, Sequence)):
            raise TypeError(f"{name} must be a sequence of integers, got {v!r}")
    k = [_check_int(f"k[{i}]", ki, 0) for i, ki in enumerate(k)]
    if not k or max(k) == 0:
        raise ValueError("k must contain at least one positive exponent")
    if h is None:
        h = [0] * len(k)
    h = [_check_int(f"h[{i}]", hi, 0) for i, hi in enumerate(h)]
    if len(h) != len(k):
        raise ValueError(f"h must have the same length as k ({len(k)}), got {len(h)}")
    poles = [Fraction(hi + 1, 2 * ki) for ki, hi in zip(k, h) if ki > 0]
    lam = min(poles)
    return LearningCoefficient(lam, poles.count(lam))


def _check_widths_rank(widths: Sequence[int], rank: int) -> tuple[list[int], int]:
    if isinstance(widths, int | str) or not isinstance(widths, Sequence):
        raise TypeError(f"widths must be a sequence of integers, got {widths!r}")
    widths = [_check_int(f"widths[{i}]", w, 1) for i, w in enumerate(widths)]
    if len(widths) < 2:
        raise ValueError(f"widths needs at least an input and an output width, got {widths}")
    rank = _check_int("rank", rank, 0)
    if rank > min(widths):
        raise ValueError(f"rank must satisfy 0 <= rank <= min(widths) = {min(widths)}, got {rank}")
    return widths, rank


def reduced_rank_regression(M: int, H: int, N: int, rank: int) -> LearningCoefficient:
    """Learning coefficient of reduced-rank regression ``y = B A x`` [1]_.

    Parameters
    ----------
    M, H, N : int
        Input, hidden and output dimensions (A is H×M, B is N×H).
    rank : int
        Rank r of the true map, ``0 <= r <= min(M, H, N)``.

    Notes
    -----
    If ``N+r ≤ M+H``, ``M+r ≤ N+H`` and ``H+r ≤ M+N``:
    ``λ = [2(H+r)(M+N) − (M−N)² − (H+r)²]/8`` (plus 1/8 and m = 2 when M+H+N+r is odd);
    elif ``M+H < N+r``: ``λ = (HM − Hr + Nr)/2``; elif ``N+H < M+r``: ``λ = (HN − Hr + Mr)/2``;
    else ``λ = MN/2``; m = 1 outside the odd case.
    """
    M, H, N = (_check_int(name, v, 1) for name, v in (("M", M), ("H", H), ("N", N)))
    (M, H, N), r = _check_widths_rank([M, H, N], rank)
    if N + r <= M + H and M + r <= N + H and H + r <= M + N:
        lam = Fraction(2 * (H + r) * (M + N) - (M - N) ** 2 - (H + r) ** 2, 8)
        if (M + H + N + r) % 2 == 1:
            return LearningCoefficient(lam + Fraction(1, 8), 2)
        return LearningCoefficient(lam, 1)
    if M + H < N + r:
        return LearningCoefficient(Fraction(H * M - H * r + N * r, 2), 1)
    if N + H < M + r:
        return LearningCoefficient(Fraction(H * N - H * r + M * r, 2), 1)
    return LearningCoefficient(Fraction(M * N, 2), 1)


def deep_linear_network(widths: Sequence[int], rank: int) -> LearningCoefficient:
    """Learning coefficient of a deep linear network ``f(x) = W_L ⋯ W_1 x`` [2]_.

    Parameters
    ----------
    widths : sequence of int
        ``[H_0, H_1, ..., H_L]``: input width, hidden widths, output width (L ≥ 1 layers).
    rank : int
        Rank r of the true map ``W*_L ⋯ W*_1``, ``0 <= r <= min(widths)``.

    Notes
    -----
    With ``M_j = H_j − r``, let Σ be the smallest prefix (size ℓ+1 ≥ 2) of the ``M_j`` sorted
    ascending with (i) ``max_Σ M < min_{k∉Σ} M_k``, (ii) ``Σ_Σ M ≥ ℓ max_Σ M`` and
    (iii) ``Σ_Σ M < ℓ min_{k∉Σ} M_k``. With ``S = Σ_Σ M``, ``M̄ = ⌈S/ℓ⌉``,
    ``a = S − (M̄ − 1)ℓ``::

        λ = [r(H_0 + H_L) − r²]/2 + a(ℓ−a)/(4ℓ) − (ℓ(ℓ−1)/4)(S/ℓ)² + ½ Σ_{i<j∈Σ} M_i M_j

    with multiplicity ``a(ℓ − a) + 1``. A single layer (L = 1) is regular: λ = H_0 H_1 / 2.
    This is the global coefficient, equal to the local one at the most singular true parameters
    (the normal-form teacher of :func:`theory.models.normal_form_teacher`).
    """
    widths, r = _check_widths_rank(widths, rank)
    if len(widths) == 2:
        return regular(widths[0] * widths[1])
    m = sorted(h - r for h in widths)
    for size in range(2, len(m) + 1):
        sigma, rest = m[:size], m[size:]
        ell = size - 1
        s = sum(sigma)
        rest_min = rest[0] if rest else math.inf
        if max(sigma) < rest_min and s >= ell * max(sigma) and s < ell * rest_min:
            break
    else:  # pragma: no cover - the theorem guarantees a prefix exists
        raise RuntimeError(f"no admissible index set for widths={widths}, rank={r}")
    m_bar = -(-s // ell)
    a = s - (m_bar - 1) * ell
    lam = (
        Fraction(r * (widths[0] + widths[-1]) - r * r, 2)
        + Fraction(a * (ell - a), 4 * ell)
        - Fraction(ell * (ell - 1), 4) * Fraction(s, ell) ** 2
        + Fraction(sum(i * j for i, j in combinations(sigma, 2)), 2)
    )
    return LearningCoefficient(lam, a * (ell - a) + 1)
