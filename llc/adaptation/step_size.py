"""The step size from the largest curvature of the potential, re-set after every window.

With κ̂ the largest (metric-scaled) curvature of ``U = nβ L + γ/2 ‖w − w*‖²`` over the chains'
current points, the kernel's rule gives the step (SGLD: ``ε = ½/κ̂``). A change is limited to a
factor of 2 per window, and never above ``cap``; the step has settled when it moved by less than
25 % over the last window. Singular models need the re-setting: chains drift to regions of higher
curvature than w*, where a step fixed at w* would be too large. After a divergence the step is
halved and capped there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["SETTLED", "StepSizeState", "final", "halve", "init", "update"]

SETTLED = math.log(1.25)  # |log(ε_new / ε)| below this: settled


class StepSizeState(NamedTuple):
    step_size: float
    cap: float
    settled: bool
    history: tuple[float, ...]


def init(step_size: float, cap: float = math.inf) -> StepSizeState:
    step_size = min(step_size, cap)
    return StepSizeState(step_size, cap, False, (step_size,))


def update(
    state: StepSizeState,
    curvature: float,
    stable_step_size: Callable[[float], float],
    floor: float,
) -> StepSizeState:
    """Re-set from the largest curvature ``curvature`` (floored at ``floor`` > 0)."""
    new = stable_step_size(max(curvature, floor, 1e-12))
    new = min(max(new, 0.5 * state.step_size), 2.0 * state.step_size, state.cap)
    settled = abs(math.log(new / state.step_size)) < SETTLED
    return StepSizeState(new, state.cap, settled, (*state.history, new))


def halve(state: StepSizeState) -> StepSizeState:
    """After a divergence: half the step, and never above it again."""
    new = 0.5 * state.step_size
    return StepSizeState(new, new, False, (*state.history, new))


def final(state: StepSizeState) -> float:
    return state.step_size
