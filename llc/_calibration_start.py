"""Where the chains of a calibration grid start: at w*, or where the estimator's warm-up ends.

A fixed-step run from w* on a deep network spends its burn-in drifting out along the flat
directions, and its λ̂ still creeps up when the draws begin (issue 16's spreading phase exists
for that reason). Starting every cell where :func:`llc.estimate_llc`'s adaptive warm-up (its
spreading phase included) leaves the chains separates the two questions: the warm-up carries
the chains out, and the grid measures what each step does from there.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._budget import limits as budget_limits
from .estimator import _kernel_params, _spreads, _warm_up
from .kernels import get_kernel
from .potential import Potential
from .sampling import Chains
from .settings import LLCSettings

__all__ = ["STARTS", "start_seed", "warmed_up"]

STARTS = ("warmup", "center")


def start_seed(seed: int | torch.Generator):
    """The warm-up's seed: not the grid's, so that no cell replays the noise that carried its
    chains out (a replayed noise sequence repeats the same net displacement)."""
    if isinstance(seed, torch.Generator):
        return seed  # it has advanced past the grid's chain seeds
    # (the derivation of the tracker's second estimate: separate calls, so no correlation; kept
    # because the calibration figures in the README were measured with it)
    ss = np.random.SeedSequence([seed, 1])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(2))


def warmed_up(pot: Potential, s: LLCSettings) -> torch.Tensor:
    """The positions, shape ``(chain, d)``, at which :func:`llc.estimate_llc`'s adaptive
    warm-up with settings ``s`` (nβ given; no fixed step or burn-in) leaves its chains; a
    chain that diverged there starts at w*."""
    kernel = get_kernel(s.sampler)
    chains = Chains.from_seed(pot, s.num_chains, seed=s.seed, batch_size=s.batch_size)
    with pot.model_rng(chains.randomness.aux.initial_seed()), chains:
        params = _kernel_params(kernel, s, s.nbeta, chains)
        state = kernel.init(
            pot.center.expand(chains.num_chains, -1).clone(), chains.randomness.noise(), params
        )
        limits = budget_limits(s.num_chains, s.batch_size, pot.dim, budget=None, max_draws=None)
        warm = _warm_up(chains, kernel, params, state, s, limits, math.inf, _spreads(kernel, s))
        pos = warm.state.position.detach().clone()
        dead = torch.tensor([d is not None for d in chains.diverged_at], device=pos.device)
        return torch.where(dead[:, None], pot.center, pos)
