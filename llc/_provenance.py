"""``LLCResult.config``: every setting of an :func:`llc.estimate_llc` call and how each default
was chosen."""

from __future__ import annotations

from ._budget import WORK
from ._precision import describe_precision
from .adaptation import draws
from .settings import DEFAULT_LOCALIZATION, LLCSettings

__all__ = ["provenance"]


def provenance(chains, kernel, s: LLCSettings, warm, restarts: int) -> dict:
    """Every setting of the call and how each default was chosen."""
    pot = chains.potential
    adapted = f"adapted in warm-up ({kernel.step_rule})"
    return {
        "n": pot.n,
        "d": pot.dim,
        "seed": s.seed if isinstance(s.seed, int) else "generator",
        "step_size": "given" if s.step_size is not None else adapted,
        "step_size_history": warm.step_sizes,
        "budget": f"{s.budget:g} s" if s.budget is not None else f"work cap {WORK:.0e}",
        **({"budget_seconds": float(s.budget)} if s.budget is not None else {}),
        "num_burnin": "given" if s.num_burnin is not None else "until stationary",
        "warmup_converged": warm.converged,
        "warmup_restarts": warm.restarts + sum(e.restarts for e in warm.earlier),
        "spreading_steps": warm.earlier[1].num_steps if len(warm.earlier) > 1 else 0,
        "transport": warm.transport or "none",
        "draw_restarts": restarts,
        "minibatch_heating": warm.minibatch_heating,
        "noise_compensation": ("measured in warm-up" if s.compensate_noise else "off")
        if kernel.compensates_noise
        else f"not used by {kernel.name}",
        "num_draws": "given"
        if s.num_draws is not None
        else f"until MCSE ≤ {draws.REL_MCSE:.0%} of λ̂ (max_draws cap)",
        "localization": "given"
        if s.localization is not None
        else f"default {DEFAULT_LOCALIZATION}",
        "nbeta": "given" if s.nbeta is not None else "n / log n",
        "loss": pot.loss_name,
        "divergence": pot.divergence,
        "chain_batch": chains.chain_batch,
        "execution": chains.execution,
        "processes": chains.shards.describe() if chains.shards else "1",
        "num_threads": chains.threads.describe(),
        "metric": _metric(kernel, warm),
        "params": list(pot.names),
        "device": str(pot.device),
        "dtype": str(pot.dtype),
        "matmul_precision": describe_precision(pot.matmul_precision),
    }


def _metric(kernel, warm) -> str:
    if kernel.name == "kron_sgld":
        return "Kronecker per layer, from the other layers (kron_sgld)"
    if getattr(warm.params, "metric", None) is not None:
        return "diagonal, learned in warm-up"
    return "identity"
