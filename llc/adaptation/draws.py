"""How many draws: enough for a Monte Carlo standard error of ``REL_MCSE`` of λ̂.

``init`` projects the number from warm-up's last half (its autocorrelation and spread), at least
``MIN_DRAWS``; ``update`` takes each block of draws and, while the pooled MCSE is above
``REL_MCSE·|λ̂|`` or R-hat above 1.01, doubles the total (capped at ``max_draws``); ``final``
gives the total drawn. A fixed ``num_draws`` runs exactly that many.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..diagnostics import ess, mcse, rhat

__all__ = ["DrawsState", "final", "init", "precise", "projected", "update"]

REL_MCSE = 0.01
MIN_DRAWS = 500
MAX_RHAT = 1.01


class DrawsState(NamedTuple):
    total: int  # drawn so far
    next: int  # to draw now (0: done)
    max_draws: int
    adaptive: bool
    parts: tuple[np.ndarray, ...]  # (chain, draw) LLC blocks


def projected(warmup_trace: np.ndarray, max_draws: int) -> int:
    """Draws so that the projected MCSE is ``REL_MCSE`` of λ̂, from warm-up's last half."""
    ex = warmup_trace[np.isfinite(warmup_trace).all(axis=1)]
    half = ex[:, ex.shape[1] // 2 :]
    if half.shape[1] < 8:
        return MIN_DRAWS
    e = ess(half)
    lam = abs(half.mean())
    if not (e > 0 and lam > 0):
        return max_draws
    tau = half.size / e  # steps per effective draw in each chain (e counts all chains)
    need_ess = (half.std(ddof=1) / (REL_MCSE * lam)) ** 2
    draws = int(math.ceil(need_ess * tau / half.shape[0]))
    return int(min(max(draws, MIN_DRAWS), max_draws))


def precise(trace: np.ndarray) -> bool:
    """The pooled MCSE is at most ``REL_MCSE`` of |λ̂| and R-hat at most 1.01."""
    ex = trace[np.isfinite(trace).all(axis=1)]
    if ex.size == 0:
        return True
    err = mcse(ex)
    return bool(np.isfinite(err) and err <= REL_MCSE * abs(ex.mean()) and rhat(ex) <= MAX_RHAT)


def init(warmup_trace: np.ndarray, *, max_draws: int, num_draws: int | None = None) -> DrawsState:
    if num_draws is not None:
        return DrawsState(0, num_draws, num_draws, False, ())
    return DrawsState(0, projected(warmup_trace, max_draws), max_draws, True, ())


def update(state: DrawsState, block: np.ndarray) -> DrawsState:
    """Record a block of draws (chain, draw); plan the next block."""
    total = state.total + block.shape[1]
    parts = (*state.parts, block)
    more = 0
    if state.adaptive and total < state.max_draws and not precise(np.concatenate(parts, 1)):
        more = min(total, state.max_draws - total)  # double until the MCSE target is met
    return DrawsState(total, more, state.max_draws, state.adaptive, parts)


def final(state: DrawsState) -> int:
    return state.total
