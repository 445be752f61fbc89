"""SGLD preconditioned by RMSprop, as devinterp's ``rmsprop_sgld``.

``V ← αV + (1−α) g²`` with ``g = ∇L_B(w)``, ``G = 1/(eps + √V)``, applied to drift and noise of
the Langevin update of :mod:`llc.kernels.sgld`. Because this G changes with w, the chain's
stationary law is only approximately the target.

References
----------
.. [1] C. Li, C. Chen, D. Carlson, L. Carin, "Preconditioned stochastic gradient Langevin dynamics
   for deep neural networks", AAAI 2016.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ._common import StepInfo, check_common, check_number, check_positions, step_info
from ._langevin import SCHEMES, langevin_step
from .sgld import STEP_RULE, stable_step_size

__all__ = ["STEP_RULE", "RMSpropSGLDParams", "RMSpropSGLDState", "init", "stable_step_size", "step"]


@dataclass(frozen=True)
class RMSpropSGLDParams:
    """As :class:`llc.kernels.sgld.SGLDParams`, with RMSprop's ``alpha`` ∈ [0, 1) and ``eps`` > 0
    (devinterp: 0.99, 0.1) instead of a fixed metric."""

    step_size: float
    localization: float
    nbeta: float
    center: torch.Tensor
    scheme: str = "leimkuhler_matthews"
    alpha: float = 0.99
    eps: float = 0.1

    def __post_init__(self) -> None:
        check_common(self, per_chain=True)
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if isinstance(self.alpha, bool) or not 0 <= self.alpha < 1:
            raise ValueError(f"alpha must be in [0, 1), got {self.alpha}")
        check_number("eps", self.eps)


class RMSpropSGLDState(NamedTuple):
    """``position``, last noise draw ``noise`` and RMSprop's average ``square_avg`` V,
    each (chain, D)."""

    position: torch.Tensor
    noise: torch.Tensor
    square_avg: torch.Tensor


def init(
    position: torch.Tensor, noise: torch.Tensor, params: RMSpropSGLDParams
) -> RMSpropSGLDState:
    check_positions(position, params.center)
    return RMSpropSGLDState(position, noise, torch.zeros_like(position))


def _precond(square_avg: torch.Tensor, params: RMSpropSGLDParams) -> torch.Tensor:
    return 1.0 / (params.eps + square_avg.sqrt())


def step(
    state: RMSpropSGLDState, grad: torch.Tensor, noise: torch.Tensor, params: RMSpropSGLDParams
) -> tuple[RMSpropSGLDState, StepInfo]:
    a = params.alpha
    square_avg = a * state.square_avg + (1 - a) * grad * grad
    precond = _precond(square_avg, params)
    new = langevin_step(state, grad, noise, params, precond, None)
    info = step_info(state.position, grad, params, precond)
    return RMSpropSGLDState(new, noise, square_avg), info


def preconditioner(state: RMSpropSGLDState, params: RMSpropSGLDParams) -> torch.Tensor:
    """G at the state's current average V."""
    return _precond(state.square_avg, params)
