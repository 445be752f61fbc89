"""Convergence diagnostics on ``(chain, draw)`` traces, through arviz-stats.

References
----------
.. [1] A. Vehtari, A. Gelman, D. Simpson, B. Carpenter, P.-C. Bürkner, "Rank-normalization,
   folding, and localization: an improved R-hat for assessing convergence of MCMC",
   Bayesian Analysis 16 (2021) 667–718.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["drift", "ess", "mcse", "rhat"]


def _clean(trace: np.ndarray) -> np.ndarray:
    trace = np.asarray(trace, dtype=np.float64)
    if trace.ndim != 2:
        raise ValueError(f"trace must have shape (chain, draw), got {trace.shape}")
    return trace[np.isfinite(trace).all(axis=1)]


def rhat(trace: np.ndarray) -> float:
    """Rank-normalised split-R̂ of a ``(chain, draw)`` trace (NaN with fewer than 4 draws)."""
    x = _clean(trace)
    if x.shape[0] < 1 or x.shape[1] < 4:
        return math.nan
    from arviz_stats.base import array_stats  # imported on first use: it costs ~0.9 s

    return float(array_stats.rhat(x, chain_axis=0, draw_axis=1))


def ess(trace: np.ndarray, method: str = "bulk") -> float:
    """Effective sample size (``"bulk"`` or ``"tail"``) of a ``(chain, draw)`` trace."""
    x = _clean(trace)
    if x.shape[0] < 1 or x.shape[1] < 4:
        return math.nan
    from arviz_stats.base import array_stats

    return float(array_stats.ess(x, chain_axis=0, draw_axis=1, method=method))


def mcse(trace: np.ndarray) -> float:
    """Monte Carlo standard error of the mean: ``sd / √ESS`` over all finite chains."""
    x = _clean(trace)
    if x.size < 4:
        return math.nan
    e = ess(x)
    return float(np.std(x, ddof=1) / math.sqrt(e)) if e > 0 else math.nan


def drift(trace: np.ndarray) -> float:
    """A trend statistic: the second half's mean minus the first half's, in standard errors.

    Notes
    -----
    ``z = (m₂ − m₁) / √(MCSE₁² + MCSE₂²)`` with ``m_k`` and ``MCSE_k`` the mean and Monte Carlo
    standard error of half k of the ``(chain, draw)`` trace (all finite chains pooled). For a
    stationary trace z is about standard normal; ``|z| > 3`` says the trace still drifts. NaN
    with fewer than 8 draws.
    """
    x = _clean(trace)
    if x.shape[0] < 1 or x.shape[1] < 8:
        return math.nan
    h = x.shape[1] // 2
    first, second = x[:, :h], x[:, x.shape[1] - h :]
    se = math.hypot(mcse(first), mcse(second))
    if not math.isfinite(se):
        return math.nan
    diff = float(second.mean() - first.mean())
    return diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
