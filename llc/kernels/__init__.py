"""Sampling kernels, one module per algorithm, and a registry by name.

Every kernel module has a parameters dataclass (validated, apart from the state), a state
NamedTuple whose fields are ``(chain, ...)`` tensors, and pure functions ::

    init(position, noise, params) -> state
    step(state, grad, noise, params) -> (state, StepInfo)
    preconditioner(state, params) -> G or None
    stable_step_size(curvature) -> step size

``grad`` is the minibatch gradient ``∇L_B`` at ``state.position`` and ``noise`` a standard normal
draw of shape (chain, D), both supplied by the loop: kernels draw no random numbers and modify
no input. Adding a sampler is one module and one line in :data:`KERNELS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import kron_sgld, rmsprop_sgld, sgld, sgnht, underdamped
from ._common import StepInfo
from ._langevin import mala_log_acceptance, potential_grad

__all__ = [
    "KERNELS",
    "Kernel",
    "StepInfo",
    "evaluation_dtype",
    "get_kernel",
    "kron_sgld",
    "mala_log_acceptance",
    "potential_grad",
    "rmsprop_sgld",
    "sgld",
    "sgnht",
    "underdamped",
]


@dataclass(frozen=True)
class Kernel:
    """A kernel module's functions, with what the estimator's warm-up may adapt for it.

    Attributes
    ----------
    step_rule : str
        How the step follows from the largest curvature κ̂, for the provenance record.
    langevin : bool
        One step is a Langevin proposal, so the MALA acceptance is a step-size diagnostic.
    learns_metric : bool
        Takes a fixed diagonal metric (``params.metric``) that warm-up can learn.
    minibatch_heating : callable or None
        ``(params, Var(∇L_B)) -> h`` per coordinate, for kernels that take a noise scale
        ``params.noise_scale = √(1 − h)`` cancelling the heating by minibatch noise.
    evaluation_dtype : torch.dtype or None
        The dtype of the chains and the evaluations when the caller names none (None: the
        model's).
    """

    name: str
    params: type
    init: Callable
    step: Callable
    preconditioner: Callable
    stable_step_size: Callable[[float], float]
    step_rule: str
    langevin: bool = False
    learns_metric: bool = False
    minibatch_heating: Callable | None = None
    evaluation_dtype: torch.dtype | None = None

    @property
    def compensates_noise(self) -> bool:
        return self.minibatch_heating is not None


def _kernel(name: str, module, params: type, **flags) -> Kernel:
    return Kernel(
        name,
        params,
        module.init,
        module.step,
        module.preconditioner,
        module.stable_step_size,
        module.STEP_RULE,
        **flags,
    )


KERNELS: dict[str, Kernel] = {
    "sgld": _kernel(
        "sgld",
        sgld,
        sgld.SGLDParams,
        langevin=True,
        learns_metric=True,
        minibatch_heating=sgld.minibatch_heating,
    ),  # fmt: skip
    "kron_sgld": _kernel(
        "kron_sgld",
        kron_sgld,
        kron_sgld.KronSGLDParams,
        evaluation_dtype=kron_sgld.EVALUATION_DTYPE,
    ),  # fmt: skip
    "rmsprop_sgld": _kernel(
        "rmsprop_sgld", rmsprop_sgld, rmsprop_sgld.RMSpropSGLDParams, langevin=True
    ),
    "sgnht": _kernel("sgnht", sgnht, sgnht.SGNHTParams, minibatch_heating=sgnht.minibatch_heating),
    "underdamped": _kernel(
        "underdamped",
        underdamped,
        underdamped.UnderdampedParams,
        learns_metric=True,
        minibatch_heating=underdamped.minibatch_heating,
    ),  # fmt: skip
}


def evaluation_dtype(sampler: str, dtype: torch.dtype | None) -> torch.dtype | None:
    """``dtype`` if given, else the default of the kernel ``sampler`` (None: the model's)."""
    return dtype if dtype is not None else get_kernel(sampler).evaluation_dtype


def get_kernel(name: str) -> Kernel:
    """The registered kernel ``name`` (ValueError naming ``sampler`` otherwise)."""
    if name not in KERNELS:
        raise ValueError(f"sampler must be one of {sorted(KERNELS)}, got {name!r}")
    return KERNELS[name]
