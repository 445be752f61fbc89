"""What every kernel shares: argument checks for its parameters and the step's diagnostics."""

from __future__ import annotations

import math

import torch

from ._langevin import potential_grad

__all__ = [
    "StepInfo",
    "check_common",
    "check_number",
    "check_per_chain",
    "check_positions",
    "step_info",
]


def check_per_chain(name: str, value: torch.Tensor, *, allow_zero: bool = False) -> None:
    """Raise unless ``value`` is a floating tensor of shape (chain, 1), finite and > 0 (≥ 0)."""
    if not value.is_floating_point() or value.ndim != 2 or value.shape[1] != 1:
        raise ValueError(
            f"{name} given per chain must be a floating tensor of shape (chain, 1), got "
            f"{value.dtype} of shape {tuple(value.shape)}"
        )
    ok = value >= 0 if allow_zero else value > 0
    if not bool((ok & torch.isfinite(value)).all()):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite")


def check_number(name: str, value: object, *, allow_zero: bool = False) -> None:
    """Raise unless ``value`` is a finite real number, > 0 (or ≥ 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        raise ValueError(
            f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value}"
        )


def check_common(params, per_chain: bool = False) -> None:
    """The fields every kernel's parameters have: step_size, localization, nbeta, center.

    With ``per_chain`` (Langevin kernels) each of the three may also be a tensor of shape
    (chain, 1), one value per chain, broadcast over the coordinates.
    """
    for name, zero in (("step_size", False), ("localization", True), ("nbeta", False)):
        value = getattr(params, name)
        if per_chain and isinstance(value, torch.Tensor):
            check_per_chain(name, value, allow_zero=zero)
        else:
            check_number(name, value, allow_zero=zero)
    if not isinstance(params.center, torch.Tensor) or params.center.ndim != 1:
        raise TypeError("center must be a 1-D tensor (the flattened w*)")


def check_positions(position: torch.Tensor, center: torch.Tensor) -> None:
    if position.ndim != 2 or position.shape[1] != center.numel():
        raise ValueError(
            f"position must have shape (chain, {center.numel()}), got {tuple(position.shape)}"
        )


class StepInfo:
    """What one step exposes to the loop and the observables.

    Attributes
    ----------
    position : Tensor, shape (chain, D)
        ``w_t``, where the gradient was taken.
    grad : Tensor, shape (chain, D)
        ``∇L_B(w_t)``.
    preconditioner : Tensor, shape (D,) or (chain, D), or None
        The diagonal preconditioner G of this step (None: G = 1).
    potential_grad : Tensor, shape (chain, D)
        ``∇U(w_t)``, computed on first access (the update itself does not materialise it).
    """

    # a plain class with slots: one is made every step, and a frozen dataclass costs more
    __slots__ = ("position", "grad", "nbeta", "localization", "center", "preconditioner", "_grad_u")

    def __init__(self, position, grad, nbeta, localization, center, preconditioner):
        self.position, self.grad, self.preconditioner = position, grad, preconditioner
        self.nbeta, self.localization, self.center = nbeta, localization, center
        self._grad_u = None

    @property
    def potential_grad(self) -> torch.Tensor:
        if self._grad_u is None:
            self._grad_u = potential_grad(
                self.position, self.center, self.grad, self.nbeta, self.localization
            )
        return self._grad_u


def step_info(position, grad, params, preconditioner) -> StepInfo:
    return StepInfo(
        position, grad, params.nbeta, params.localization, params.center, preconditioner
    )
