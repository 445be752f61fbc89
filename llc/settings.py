"""The settings of one LLC estimate, validated, and the defaults they fall back to."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._execution import check_vectorize
from ._memory import check_max_memory
from .kernels import get_kernel

__all__ = ["DEFAULT_BATCH", "DEFAULT_LOCALIZATION", "LLCSettings"]

DEFAULT_LOCALIZATION = 0.3
DEFAULT_BATCH = 512


def _count(name: str, value: object, minimum: int = 1, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _positive(name: str, value: object, allow_zero: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or (value < 0 if allow_zero else value <= 0):
        raise ValueError(
            f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value}"
        )


@dataclass(frozen=True)
class LLCSettings:
    """The sampling settings of one :func:`estimate_llc` call, validated (None: the default)."""

    nbeta: float | None = None
    step_size: float | None = None
    localization: float | None = None
    num_chains: int = 8
    num_draws: int | None = None
    num_burnin: int | None = None
    batch_size: int | None = None
    sampler: str = "sgld"
    seed: int | torch.Generator = 0
    progress: bool = True
    chain_batch: int | None = None
    scheme: str = "leimkuhler_matthews"
    max_draws: int | None = None
    precondition: bool = True
    compensate_noise: bool = True
    vectorize: bool | str | None = None
    num_threads: int | None = None
    spread: bool = True
    orbit_moves: bool = False
    budget: float | None = None
    max_memory: int | str | None = None  # bytes after validation

    def __post_init__(self) -> None:
        _positive("budget", self.budget)
        # Kept in bytes: read once here, used by the plan and shown in the config.
        object.__setattr__(self, "max_memory", check_max_memory(self.max_memory))
        if self.max_memory is not None and self.chain_batch is not None:
            raise ValueError(
                "give chain_batch or max_memory, not both (max_memory chooses chain_batch)"
            )
        for name in ("spread", "orbit_moves"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        check_vectorize(self.vectorize)
        _count("num_threads", self.num_threads)
        _count("num_chains", self.num_chains, optional=False)
        for name, low in (("num_draws", 4), ("num_burnin", 0)):
            _count(name, getattr(self, name), low)
        for name, low in (("batch_size", 1), ("chain_batch", 1), ("max_draws", 4)):
            _count(name, getattr(self, name), low)
        _positive("step_size", self.step_size)
        _positive("nbeta", self.nbeta)
        _positive("localization", self.localization, allow_zero=True)
        get_kernel(self.sampler)  # a ValueError naming the known samplers

    @property
    def adaptive(self) -> bool:
        """Warm-up adapts the step and may be repeated (no fixed step size or warm-up length)."""
        return self.step_size is None and self.num_burnin is None
