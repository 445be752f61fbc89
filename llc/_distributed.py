"""Chains across processes: each rank of a torch.distributed group evaluates its share.

With a default process group initialized (``torchrun`` and
:func:`torch.distributed.init_process_group`), every rank holds all chains' state and draws
every chain's minibatches and noise from the chains' own generators, which depend only on the
seed and the chain index, exactly as one process would. Only the evaluations, the forward and
backward passes that cost almost all of a step, are split: rank r evaluates a contiguous block
of chains and the blocks are all-gathered. Warm-up, adaptation, observables and the update then
see the same numbers on every rank, so every rank adapts the same step and metric and returns
the same full result: that of one process with the same seed, up to the float rounding of
evaluating fewer chains at once.

The cost is ``chains · D`` gathered floats per step and the update replicated on each rank
(cheap next to a forward and backward pass on a minibatch); the state is not split, so a model
must fit on each rank's device.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

__all__ = ["Shards", "check_across_processes", "current_shards", "split_evaluation"]


class Shards:
    """This rank's block of chains, and the gather that rebuilds the whole.

    Parameters
    ----------
    rank, world : int
        This process and the number of processes (``world >= 2``).
    group : optional
        The process group (default: the default group).
    """

    def __init__(self, rank: int, world: int, group=None):
        self.rank, self.world, self.group = rank, world, group

    def block(self, num: int) -> tuple[int, int]:
        """``(lo, hi)``: the rows of ``num`` chains this rank evaluates (ceil(num / world) a
        rank; the last ranks may have fewer, or none)."""
        per = math.ceil(num / self.world)
        lo = min(self.rank * per, num)
        return lo, min(lo + per, num)

    def gather(self, local: torch.Tensor, num: int) -> torch.Tensor:
        """Every rank's block, in rank order: shape ``(num, *local.shape[1:])``."""
        per = math.ceil(num / self.world)
        padded = local.new_zeros((per, *local.shape[1:]))
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded.contiguous(), group=self.group)
        return torch.cat(parts)[:num]

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world} (chains split across the process group)"


def current_shards() -> Shards | None:
    """The default process group's shards, or None when there is no group of two or more."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    world = dist.get_world_size()
    return Shards(dist.get_rank(), world) if world > 1 else None


def split_evaluation(shards: Shards | None, fn, position: torch.Tensor, *per_chain):
    """``fn(position, *per_chain)`` for every chain, each rank evaluating its block.

    ``per_chain`` tensors have the chains as their first dimension; ``fn`` returns a tensor or
    a tuple of tensors with the chains first.
    """
    if shards is None:
        return fn(position, *per_chain)
    num = position.shape[0]
    lo, hi = shards.block(num)
    # a rank without chains (fewer chains than ranks) still joins the gather, with an empty
    # block shaped by evaluating one chain
    take = (lo, hi) if hi > lo else (0, 1)
    out = fn(position[slice(*take)], *(a[slice(*take)] for a in per_chain))
    if hi == lo:
        out = tuple(o[:0] for o in out) if isinstance(out, tuple) else out[:0]
    if isinstance(out, tuple):
        return tuple(shards.gather(o, num) for o in out)
    return shards.gather(out, num)


def check_across_processes(budget, vectorize) -> None:
    """Refuse the settings under which ranks could part ways: a time budget (each rank's clock
    would end its phases at a different step, and the gathers would no longer pair up) and a
    timed choice of evaluation."""
    if budget is not None:
        raise ValueError(
            "budget is not supported with chains split across processes: each rank's clock "
            "would stop it at a different step; use the default work cap, or max_draws"
        )
    if vectorize == "timed":
        raise ValueError(
            "vectorize='timed' is not supported with chains split across processes (each rank "
            "would time its own way); pass vectorize=True, False or None"
        )
