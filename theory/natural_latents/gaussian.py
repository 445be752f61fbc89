r"""Natural-latent errors of jointly Gaussian variables, in closed form from a covariance.

For zero-mean jointly Gaussian vectors every conditional law is Gaussian with the Schur
complement :math:`\Sigma_{A|C} = \Sigma_{AA} - \Sigma_{AC}\Sigma_{CC}^{+}\Sigma_{CA}` as
covariance (independent of the value of C), so

.. math:: I(A_1; \dots; A_k | C) = \tfrac12\Big[\sum_j \log\det\Sigma_{A_j|C}
          - \log\det\Sigma_{A|C}\Big].

Mediation and stochastic redundancy are such (conditional) mutual informations and are finite
and invariant to invertible linear maps of each block.  The deterministic redundancy
:math:`H(\Lambda|X_i)` of a continuous latent is not: the discrete entropy of a quantised
:math:`\Lambda` with bin width :math:`\delta` behaves as :math:`h(\Lambda|X_i) - d\log\delta
\to \infty`.  With ``kind="deterministic"`` we therefore return ``+inf`` unless Λ is an exact
(linear) function of :math:`X_i` (then 0), and report the finite part, the conditional
differential entropy :math:`h(\Lambda|X_i)`, in ``conditional_differential_entropy``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._info import _log_base, _to_numpy, check_tolerance, normalize_roles
from .discrete import NaturalLatentReport, _check_kind, _unit_name

__all__ = ["GaussianNaturalLatentReport", "gaussian_natural_latent_errors"]


@dataclass(frozen=True)
class GaussianNaturalLatentReport(NaturalLatentReport):
    """:class:`NaturalLatentReport` plus :math:`h(\\Lambda|X_i)` per block (may be −inf)."""

    conditional_differential_entropy: tuple[float, ...] = ()


def _validate_cov(cov: Any, atol: float) -> np.ndarray:
    atol = check_tolerance(atol, "atol")
    s = _to_numpy(cov, "cov")
    if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] == 0:
        raise ValueError(f"cov must be a square (d, d) matrix; got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("cov contains NaN or infinite entries")
    scale = max(float(np.abs(s).max()), 1e-300)
    if np.abs(s - s.T).max() > atol * scale:
        raise ValueError("cov must be symmetric")
    s = 0.5 * (s + s.T)
    lam_min = float(np.linalg.eigvalsh(s).min())
    if lam_min < -atol * scale:
        raise ValueError(f"cov must be positive semi-definite; smallest eigenvalue {lam_min:.3g}")
    return s


def _schur(s: np.ndarray, a: list[int], c: list[int]) -> np.ndarray:
    """Conditional covariance Σ_{A|C} (pseudo-inverse, so a singular Σ_CC is fine)."""
    saa = s[np.ix_(a, a)]
    if not c:
        return saa
    sac = s[np.ix_(a, c)]
    scc = s[np.ix_(c, c)]
    out = saa - sac @ np.linalg.pinv(scc, hermitian=True) @ sac.T
    return 0.5 * (out + out.T)


def _range_basis(s: np.ndarray, rtol: float, scale: float) -> np.ndarray:
    """Orthonormal basis of the numerically non-null eigenspace of a PSD matrix."""
    w, v = np.linalg.eigh(s)
    return v[:, w > rtol * scale]


def _total_correlation(s: np.ndarray, blocks: list[list[int]], rtol: float, scale: float) -> float:
    """Σ_j ½logdet S_jj − ½logdet S in nats, directions of zero variance projected out.

    A zero-variance direction of a block is a constant (given the conditioning) and carries no
    information, so each block is restricted to the range of its own covariance first.  If the
    restricted joint covariance is still singular, two blocks share an exact linear function:
    the information is infinite.
    """
    bases = [_range_basis(s[np.ix_(b, b)], rtol, scale) for b in blocks]
    dims = [q.shape[1] for q in bases]
    if sum(1 for d in dims if d > 0) < 2:
        return 0.0
    t = np.zeros((s.shape[0], sum(dims)))
    col = 0
    for b, q in zip(blocks, bases):
        t[np.ix_(b, range(col, col + q.shape[1]))] = q
        col += q.shape[1]
    r = t.T @ s @ t
    # Correlation-like normalisation per block makes the determinant well scaled.
    diag_ld = 0.0
    col = 0
    for d in dims:
        if d:
            sign, ld = np.linalg.slogdet(r[col:col + d, col:col + d])
            diag_ld += ld
        col += d
    sign, ld = np.linalg.slogdet(r)
    if sign <= 0 or np.linalg.eigvalsh(r).min() <= rtol * scale:
        return math.inf
    return float(max(0.0, 0.5 * (diag_ld - ld)))


def gaussian_natural_latent_errors(cov: Any, blocks: list, latent: Any, kind: str = "stochastic",
                                   *, base: float | str = math.e, rtol: float = 1e-10,
                                   atol: float = 1e-8) -> GaussianNaturalLatentReport:
    r"""Natural-latent errors of jointly Gaussian blocks, from their covariance.

    Parameters
    ----------
    cov : array_like or torch.Tensor, shape (d, d)
        Covariance of all variables (means are irrelevant).
    blocks : list of int or tuple of int
        At least two disjoint groups of coordinates (the observables :math:`X_i`).
    latent : int or tuple of int
        Coordinates of the latent Λ (disjoint from the blocks).  Other coordinates are ignored.
    kind : {"stochastic", "deterministic"}
        Redundancy definition; see the module notes for what "deterministic" returns.
    base : float or {"nats", "bits"}
        Logarithm base.
    rtol : float
        Eigenvalues below ``rtol * max|cov|`` count as zero (exact linear dependence).
    atol : float
        Tolerance of the symmetry and positive semi-definiteness checks (relative to max|cov|);
        a finite number >= 0, as is ``rtol``.

    Returns
    -------
    GaussianNaturalLatentReport
        ``.mediation``, ``.redundancy`` and ``.conditional_differential_entropy``.

    Notes
    -----
    .. math:: \varepsilon_{med} = \tfrac12\Big[\sum_i\log\det\Sigma_{X_i|\Lambda}
              - \log\det\Sigma_{X|\Lambda}\Big],\qquad
              \varepsilon_{red,i} = I(\Lambda;X_{-i}|X_i)
              = \tfrac12\Big[\log\det\Sigma_{\Lambda|X_i}
              + \log\det\Sigma_{X_{-i}|X_i} - \log\det\Sigma_{(\Lambda,X_{-i})|X_i}\Big],

    :math:`h(\Lambda|X_i) = \tfrac12\log\det(2\pi e\,\Sigma_{\Lambda|X_i})`.  Zero-variance
    directions are projected out; an exact shared linear function gives ``inf``.  Deterministic
    redundancy: ``inf`` if :math:`\Sigma_{\Lambda|X_i} \ne 0`, else ``0.0`` (see module notes).

    References
    ----------
    Cover & Thomas, *Elements of Information Theory*, ch. 8; Wentworth & Lorell,
    arXiv:2509.03780.
    """
    kind = _check_kind(kind)
    rtol = check_tolerance(rtol, "rtol")
    s = _validate_cov(cov, atol)
    blks, (lat,) = normalize_roles(s.shape[0], blocks, [(latent, "latent")])
    scale = max(float(np.abs(s).max()), 1e-300)
    lb = _log_base(base)
    lat_l = list(lat)
    bl = [list(b) for b in blks]

    allx = [a for b in bl for a in b]
    sx = _schur(s, allx, lat_l)
    pos, sub = 0, []
    for b in bl:
        sub.append(list(range(pos, pos + len(b))))
        pos += len(b)
    med = _total_correlation(sx, sub, rtol, scale)

    reds, hs = [], []
    for i, b in enumerate(bl):
        rest = [a for j, bb in enumerate(bl) if j != i for a in bb]
        cond = _schur(s, lat_l + rest, b)
        s_lat = cond[: len(lat_l), : len(lat_l)]
        w = np.linalg.eigvalsh(s_lat)
        if w.min() <= rtol * scale:
            hs.append(-math.inf)
        else:
            hs.append(0.5 * (len(lat_l) * math.log(2 * math.pi * math.e)
                             + float(np.log(w).sum())))
        if kind == "stochastic":
            reds.append(_total_correlation(
                cond, [list(range(len(lat_l))), list(range(len(lat_l), cond.shape[0]))],
                rtol, scale))
        else:
            reds.append(0.0 if w.max() <= rtol * scale else math.inf)
    return GaussianNaturalLatentReport(
        mediation=float(med) / lb, redundancy=tuple(float(r) / lb for r in reds), kind=kind,
        units=_unit_name(base), observables=blks, latent=lat,
        conditional_differential_entropy=tuple(h / lb for h in hs),
    )
