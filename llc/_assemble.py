"""The result of a finished run: its statistics over the chains that did not diverge."""

from __future__ import annotations

import warnings

import numpy as np

from ._provenance import provenance
from .diagnostics import ess, mcse, rhat
from .result import LLCResult
from .sampling import Chains

__all__ = ["assemble"]


def _warn_diverged(chains: Chains, diverged: np.ndarray, step: float) -> None:
    if diverged.all():
        raise RuntimeError(
            "every chain diverged (" + "; ".join(sorted(set(chains.diverged_why))) + "): "
            f"the step size {step:.3g} is too large for this model; pass a smaller "
            "step_size, or a larger localization"
        )
    for c in np.flatnonzero(diverged):
        warnings.warn(
            f"chain {c} diverged at step {chains.diverged_at[c]} ({chains.diverged_why[c]}) and "
            f"is left out of the estimate; try a smaller step_size than {step:.3g}",
            RuntimeWarning,
            stacklevel=4,
        )


def _flag_nonfinite(chains: Chains, llc_trace: np.ndarray) -> None:
    """Flag any chain not yet flagged whose draws are not all finite (the loop checks every
    step's loss; this keeps a NaN from reaching the statistics by any other path)."""
    for c in np.flatnonzero(~np.isfinite(llc_trace).all(axis=1)):
        if chains.diverged_at[c] is None:
            chains.diverged_at[c] = chains.steps_done
            chains.diverged_why[c] = "non-finite draw"


def assemble(chains, kernel, s, nbeta, warm, drawn, restarts, carried: dict, peak=None):
    """The :class:`LLCResult` of a finished run: diverged chains warned of and left out."""
    pot, params = chains.potential, warm.params
    llc_trace, acc = drawn["llc"], drawn["mala_acceptance"]
    _flag_nonfinite(chains, llc_trace)
    diverged = np.array([d is not None for d in chains.diverged_at])
    _warn_diverged(chains, diverged, params.step_size)
    ok = ~diverged
    masked = np.where(diverged[:, None], 0.0, llc_trace)
    per_chain = np.where(diverged, np.nan, masked.mean(axis=1))
    good = llc_trace[ok]
    mala = np.array([np.nanmean(a) if np.isfinite(a).any() else np.nan for a in acc])
    extra = {k: v for k, v in drawn.items() if k not in ("llc", "loss", "mala_acceptance")}
    return LLCResult(
        mean=float(np.mean(per_chain[ok])),
        std=float(np.std(per_chain[ok], ddof=1)) if ok.sum() > 1 else float("nan"),
        mcse=mcse(good), per_chain=per_chain, loss_trace=drawn["loss"], llc_trace=llc_trace,
        init_loss=pot.center_loss_mean, nbeta=float(nbeta),
        step_size=float(params.step_size), localization=float(params.localization),
        batch_size=chains.randomness.batch_size, num_chains=s.num_chains,
        num_draws=llc_trace.shape[1], num_burnin=warm.total_steps, sampler=s.sampler,
        scheme=getattr(params, "scheme", "none"), r_hat=rhat(good), ess=ess(good),
        mala_acceptance=mala, diverged=diverged, warmup_llc=warm.full_trace,
        config={**provenance(chains, kernel, s, warm, restarts), **carried},
        observables=extra, mala_trace=acc, peak_memory=peak,
    )  # fmt: skip
