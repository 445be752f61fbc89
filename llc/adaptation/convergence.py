"""When warm-up may end: the energy trace is stationary and the chains have stopped spreading.

Two parts over warm-up windows, each ``init() -> state``, ``update(state, window) -> state``,
``final(state) -> bool``:

- :data:`energy`: the trace ``nβ (L_B − L_B(w*))``, shape (chain, step) per window, shows no
  trend over the second half of warm-up: its third and fourth quarters agree within 1.5 standard
  errors of the per-chain differences plus 0.5 %; warm-up spans ten integrated autocorrelation
  times of that half and four times the steps the trace took to first reach 90 % of its level.
- :data:`trend`: the energy test for chains that start where an earlier estimate left them (at a
  nearby w*, :mod:`llc.tracking`): only its last condition, no trend over the second half. They
  start relaxed, so the spans measured from a start at w* do not apply.
- :data:`spread`: the chains' squared distance from w*, shape (chain,) after each window, shows no
  such trend either (within 2 %). The energy can look stationary while chains still drift along
  nearly flat directions (for a deep linear network the localized posterior spreads over its
  symmetry orbits), which biased λ̂ low by up to 10 % on deep linear networks, measured against
  the exact Gibbs sampler of :func:`theory.dln_gibbs_llc`.
"""

from __future__ import annotations

import math

import numpy as np

from ..diagnostics import ess
from ._part import Part

__all__ = ["energy", "energy_stationary", "spread", "spread_settled", "trend", "trend_free"]

ENERGY_REL = 0.005
SPREAD_REL = 0.02
RELAXATION_TIMES = 10.0
RISE_FACTOR = 4
Z = 1.5  # standard errors of the per-chain differences of the quarters


def _quarters_agree(x: np.ndarray, rel: float) -> bool:
    """Quarters 3 and 4 of a (chain, time) array agree within Z standard errors plus ``rel``."""
    t = x.shape[1]
    diff = x[:, 3 * t // 4 :].mean(axis=1) - x[:, t // 2 : 3 * t // 4].mean(axis=1)
    se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else abs(diff.mean())
    return bool(abs(diff.mean()) <= Z * se + rel * abs(x[:, t // 2 :].mean()))


def energy_stationary(ex: np.ndarray) -> bool:
    """The stationarity test on a whole ``(chain, step)`` warm-up trace (see the module notes)."""
    ex = ex[np.isfinite(ex).all(axis=1)]
    t = ex.shape[1]
    if ex.shape[0] == 0:
        return True
    half = ex[:, t // 2 :]
    e = ess(half)  # over all chains
    tau = half.size / e if e > 0 else math.inf  # integrated autocorrelation time, in steps
    if t < RELAXATION_TIMES * tau:
        return False
    # The trace rises from 0 at w*: ask for four times the time it took to reach 90 % of its
    # current level (about nine relaxation times for an exponential approach).
    level = ex[:, 3 * t // 4 :].mean()
    running = np.convolve(ex.mean(axis=0), np.ones(50) / 50, mode="valid")
    reached = np.flatnonzero(running >= 0.9 * level)
    if level > 0 and reached.size and t < RISE_FACTOR * (reached[0] + 50):
        return False
    return _quarters_agree(ex, ENERGY_REL)


def trend_free(ex: np.ndarray) -> bool:
    """The trend condition alone on a ``(chain, step)`` trace (see the module notes)."""
    ex = ex[np.isfinite(ex).all(axis=1)]
    return ex.shape[0] == 0 or _quarters_agree(ex, ENERGY_REL)


def spread_settled(spread: np.ndarray) -> bool:
    """The spread test on ``‖w − w*‖²`` of shape (chain, window)."""
    spread = spread[np.isfinite(spread).all(axis=1)]
    if spread.shape[0] == 0 or spread.shape[1] < 4:
        return True
    return _quarters_agree(spread, SPREAD_REL)


def _init() -> tuple:
    return ()


def _append(state: tuple, window: np.ndarray) -> tuple:
    return (*state, np.asarray(window))


def _energy_final(state: tuple) -> bool:
    return energy_stationary(np.concatenate(state, axis=1)) if state else False


def _trend_final(state: tuple) -> bool:
    return trend_free(np.concatenate(state, axis=1)) if state else False


def _spread_final(state: tuple) -> bool:
    return spread_settled(np.stack(state, axis=1)) if state else False


# each test as (init, update, final); update appends a window
energy = Part(_init, _append, _energy_final)
trend = Part(_init, _append, _trend_final)
spread = Part(_init, _append, _spread_final)
