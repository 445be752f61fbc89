"""Minibatch-noise compensation: the noise scale ``s = √(1 − h)`` of the kernels that take one.

A minibatch gradient heats the chain by a relative amount ``h_i`` along coordinate i, given by the
kernel (SGLD: ``h_i = ε nβ² G_i Var(∂_i L_B) / 4``; SGNHT: ``h nβ² Var(∂_i L_B) / (2A)``).
``Var(∇L_B)`` is measured from pairs of minibatches at the chains' points,
``½ (∇L_B1 − ∇L_B2)²`` being unbiased for it, and averaged over the windows of warm-up. h is
capped at ``MAX_HEATING``: beyond it the gradient noise alone exceeds half the intended noise, and
only a smaller ε or a larger batch helps.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["MAX_HEATING", "NoiseState", "final", "init", "pair_variance", "update"]

MAX_HEATING = 0.5  # minibatch heating h beyond which the compensation stops (s ≥ √0.5)


class NoiseState(NamedTuple):
    var_sum: torch.Tensor | None  # (D,) float64
    count: int


def pair_variance(
    grad_a: torch.Tensor, grad_b: torch.Tensor, alive: torch.Tensor
) -> torch.Tensor | None:
    """``½ (∇L_B1 − ∇L_B2)²`` averaged over live chains with finite values, (D,) float64."""
    diff = (grad_a - grad_b).double()
    ok = alive & torch.isfinite(diff).all(dim=1)
    if not ok.any():
        return None
    return 0.5 * (diff[ok] ** 2).mean(0)


def init() -> NoiseState:
    return NoiseState(None, 0)


def update(state: NoiseState, variance: torch.Tensor | None) -> NoiseState:
    if variance is None:
        return state
    total = variance if state.var_sum is None else state.var_sum + variance
    return NoiseState(total, state.count + 1)


def final(state: NoiseState, heating, params) -> tuple[torch.Tensor | None, float]:
    """``(s, mean compensated h)`` with ``h = heating(params, Var)`` (the kernel's
    ``minibatch_heating``) at the kernel's current parameters; ``(None, 0)`` if unmeasured."""
    if not state.count:
        return None, 0.0
    h = heating(params, state.var_sum / state.count)
    h = torch.where(torch.isfinite(h), h, torch.zeros_like(h))
    h = h.clamp(0, MAX_HEATING)
    return (1 - h).sqrt(), float(h.mean())
