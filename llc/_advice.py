"""The warnings of an LLC estimate, each saying what to try."""

from __future__ import annotations

import warnings

import numpy as np

from .diagnostics import drift

MAX_RHAT = 1.05
MAX_DRIFT = 4.0  # standard errors; a stationary trace exceeds it with probability 6e-5
MIN_MALA = 0.5
OVER_BUDGET = 1.5  # sampling time over budget= that is reported


class LLCWarning(RuntimeWarning):
    """An LLC estimate that should not be trusted as it is."""


def advice(r) -> list[str]:
    """Warnings for an :class:`llc.LLCResult` ``r`` (see :attr:`llc.LLCResult.warnings`)."""
    out = []
    if np.isfinite(r.r_hat) and r.r_hat > MAX_RHAT:
        out.append(
            f"R-hat {r.r_hat:.3f} > {MAX_RHAT}: the chains disagree. Run longer (max_draws or "
            "num_draws), or let warm-up run longer (num_burnin)."
        )
    if r.mean < 0:
        out.append(
            f"λ̂ = {r.mean:.3g} < 0: the chains found lower loss than at w*, which is then not a "
            "local minimum. Train further, or raise the localization γ."
        )
    z = drift(r.llc_trace) if r.llc_trace.shape[1] >= 8 else np.nan
    if np.isfinite(z) and abs(z) > MAX_DRIFT:
        out.append(
            f"the trace still drifts (second half against first: {z:+.1f} standard errors). "
            "Warm up longer (num_burnin), or let the step adapt (step_size=None)."
        )
    mala = np.asarray(r.mala_acceptance, dtype=float)
    mala = mala[np.isfinite(mala)]
    if mala.size and mala.mean() < MIN_MALA:
        out.append(
            f"MALA acceptance {mala.mean():.2f} is far below 0.9: the step is too large for "
            "this posterior. Pass a smaller step_size (or let it adapt)."
        )
    if r.config.get("warmup_converged") is False:
        out.append(
            "warm-up stopped at its cap without passing its stationarity tests; λ̂ may be "
            "biased (low for large networks). Pass a time budget (budget=, in seconds) or a "
            "larger one, or raise num_burnin, and check the trace (result.plot())."
        )
    over = r.config.get("sampling_seconds", 0.0) / r.config.get("budget_seconds", np.inf)
    if over > OVER_BUDGET:
        out.append(
            f"sampling took {r.config['sampling_seconds']:.3g} s against budget="
            f"{r.config['budget_seconds']:g}: every warm-up phase runs at least one 100-step "
            "window and the draws at least 100 steps, longer than the budget at this speed. "
            "Raise budget, or lower num_chains or batch_size."
        )
    if np.asarray(r.diverged).any():
        out.append(
            f"chains {np.flatnonzero(r.diverged).tolist()} diverged and are left out. Pass a "
            "smaller step_size or a larger localization."
        )
    return out


def emit(r, stacklevel: int = 3) -> None:
    """Issue each warning of ``r`` as an :class:`LLCWarning` (diverged chains were warned of
    one by one as they were found)."""
    for text in advice(r):
        if not text.startswith("chains "):
            warnings.warn(text, LLCWarning, stacklevel=stacklevel)
