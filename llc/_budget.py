"""How long warm-up and draws may run: a cap on the work, or a time budget.

The default caps the work ``chains · batch · d · steps``, so that the step counts, and with
them the result, depend on the seed alone. A time budget (``budget=`` seconds) instead lets a
faster device run more steps; each phase still ends earlier when its tests pass.
"""

from __future__ import annotations

import time
from typing import NamedTuple

__all__ = ["DRAWS", "WARMUP_STEPS", "WORK", "Limits", "TIMED_BLOCK", "default_max_draws", "limits"]

# work (chains · batch · d · steps) that caps each warm-up phase and the draws: about 20 s on
# 2 CPU cores for d = 2000, 8 chains, batch 512
WORK = 8e10
WARMUP_STEPS = (2000, 10000)  # bounds of a warm-up phase's cap
DRAWS = (4000, 25000)  # bounds of the default max_draws
# with a time budget the step caps are far out of reach: time and the convergence tests end
# each phase, and the draws run in blocks of TIMED_BLOCK steps between looks at the clock
BUDGET_WINDOWS, BUDGET_DRAWS, TIMED_BLOCK = 10_000, 1_000_000, 500
SHARES = (1 / 3, 2 / 3, 1.0)  # where the spreading phase, warm-up and the draws end


class Limits(NamedTuple):
    """Step caps, and with a time budget the :func:`time.perf_counter` values after which the
    spreading phase, warm-up and the draws start no further window or block."""

    max_windows: int
    max_draws: int
    spread_until: float | None = None
    warm_until: float | None = None
    draw_until: float | None = None


def _work_steps(num_chains: int, batch_size: int, dim: int) -> float:
    return WORK / (num_chains * batch_size * dim)


def default_max_draws(num_chains: int, batch_size: int, dim: int) -> int:
    """The draws' cap under the work rule, clipped to :data:`DRAWS`."""
    return int(min(max(_work_steps(num_chains, batch_size, dim), DRAWS[0]), DRAWS[1]))


def limits(
    num_chains: int, batch_size: int, dim: int, *, budget: float | None, max_draws: int | None
) -> Limits:
    """The work cap (``budget`` None), or ``budget`` seconds from now split at :data:`SHARES`
    (windows are 100 steps)."""
    if budget is not None:
        t0 = time.perf_counter()
        ends = [t0 + budget * f for f in SHARES]
        return Limits(BUDGET_WINDOWS, max_draws or BUDGET_DRAWS, *ends)
    work = _work_steps(num_chains, batch_size, dim)
    windows = int(min(max(work, WARMUP_STEPS[0]), WARMUP_STEPS[1])) // 100
    return Limits(windows, max_draws or default_max_draws(num_chains, batch_size, dim))
