"""The scale of the orbit moves of :mod:`llc.symmetry`, one per link, from their acceptance.

A Robbins–Monro rule on ``log s``: after each round, ``log s_l += RATE (a_l − target)`` with
``a_l`` the fraction of chains that accepted the move on link l, and ``s_l ≤ MAX_SCALE``. A random
walk's acceptance falls as its scale grows, so the rule settles where the acceptance is the
target. The moves only transport the chains before SGLD's last warm-up phase, so adapting
throughout does not bias the draws.
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["INITIAL_SCALE", "MAX_SCALE", "RATE", "ScaleState", "final", "init", "update"]

INITIAL_SCALE = 0.05
MAX_SCALE = 1.0  # ‖X‖ of order 2s: a larger move is no longer a small step along the orbit
RATE = 0.05


class ScaleState(NamedTuple):
    log_scales: tuple[float, ...]
    accepted: tuple[float, ...]  # summed acceptance fractions, per link
    rounds: int


def init(num_links: int, scale: float = INITIAL_SCALE) -> ScaleState:
    return ScaleState((math.log(scale),) * num_links, (0.0,) * num_links, 0)


def update(state: ScaleState, acceptance, target: float) -> ScaleState:
    """``acceptance``: per link, the fraction of chains that accepted this round."""
    cap = math.log(MAX_SCALE)
    logs = tuple(min(s + RATE * (a - target), cap) for s, a in zip(state.log_scales, acceptance))
    total = tuple(t + a for t, a in zip(state.accepted, acceptance))
    return ScaleState(logs, total, state.rounds + 1)


def final(state: ScaleState) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(scales, mean acceptance)`` per link."""
    rounds = max(state.rounds, 1)
    return tuple(math.exp(s) for s in state.log_scales), tuple(a / rounds for a in state.accepted)
