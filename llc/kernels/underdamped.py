"""Underdamped Langevin dynamics, localized, by the BAOAB splitting, with a fixed diagonal metric.

The velocity ``v = G p`` (G the diagonal metric, the inverse mass) joins the position w. With
``U(w) = nβ L_B(w) + (γ/2)‖w − w*‖²``, step h, friction ζ and ``c = e^{−ζh}``, one step is ::

    v ← v − h G ⊙ ∇U(w_t)                       (B: the two half kicks at w_t)
    w ← w + (h/2) v                              (A)
    v ← c v + √(1 − c²) √G ⊙ s ⊙ ξ_t             (O: friction and fresh noise)
    w_{t+1} = w + (h/2) v                        (A)

A run of these steps is BAOAB [1]_ with the closing half kick of one step merged into the opening
half kick of the next, so each step costs one gradient. The continuous dynamics leave
``exp(−U(w) − ½ vᵀG⁻¹v)`` invariant; BAOAB samples the position of a quadratic potential exactly
for every stable h (``h√κ < 2``, κ the largest curvature of ``G^{1/2} ∇²U G^{1/2}``).

Why it is here. Along a direction held only by the localization (curvature γ, the flat
directions of a singular model) overdamped Langevin relaxes in about ``1/(εγ)`` steps, with ε
set by the stiffest direction (``ε ≈ ½/κ̂``); underdamped dynamics move ballistically and cover
the same distance in about ``ζ/(γh)`` steps with ``h ≈ ½/√κ̂``, a gain of order ``√κ̂/ζ``. The
estimator uses it in warm-up only, to carry the chains out along the flat directions
(:func:`llc.warmup.spread`); the draws stay with SGLD, whose stiff directions equilibrate within a
few steps wherever the chains are.

Minibatch noise compensation: the kick carries velocity noise of covariance
``h² nβ² G Σ_B G`` per step (Σ_B the covariance of ``∇L_B``) beside the injected
``(1 − c²) G``: a relative heating ``η_i = h² nβ² G_i (Σ_B)_ii / (1 − c²)`` along coordinate i,
removed by the noise scale ``s_i = √(1 − η_i)`` as for SGLD.

References
----------
.. [1] B. Leimkuhler and C. Matthews, "Robust and efficient configurational molecular sampling
   via Langevin dynamics", J. Chem. Phys. 138, 174102 (2013).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ._common import StepInfo, check_common, check_number, check_positions, step_info

__all__ = [
    "FRICTION",
    "STEP_FACTOR",
    "STEP_RULE",
    "UnderdampedParams",
    "UnderdampedState",
    "init",
    "minibatch_heating",
    "preconditioner",
    "stable_step_size",
    "step",
]

STEP_FACTOR = 0.5  # c in h = c/√κ̂: a quarter of the stability limit h√κ < 2
STEP_RULE = f"h = {STEP_FACTOR}/√κ̂"
FRICTION = 5.0  # ζ per unit time (G normalised to median 1); see docs/design.md


@dataclass(frozen=True)
class UnderdampedParams:
    """Parameters of the underdamped kernel.

    Attributes
    ----------
    step_size : float
        h > 0.
    localization, nbeta, center
        As in :class:`llc.kernels.sgld.SGLDParams`.
    friction : float
        ζ > 0, per unit time.
    metric : Tensor, shape (D,), or None
        The fixed diagonal metric G, the inverse mass (None: G = 1).
    noise_scale : Tensor, shape (D,), or None
        The factor s on the injected noise (None: 1).
    """

    step_size: float
    localization: float
    nbeta: float
    center: torch.Tensor
    friction: float = FRICTION
    metric: torch.Tensor | None = None
    noise_scale: torch.Tensor | None = None

    def __post_init__(self) -> None:
        check_common(self)
        check_number("friction", self.friction)


class UnderdampedState(NamedTuple):
    """``position`` and ``velocity`` ``v = G p``, both (chain, D)."""

    position: torch.Tensor
    velocity: torch.Tensor


def init(position: torch.Tensor, noise: torch.Tensor, params: UnderdampedParams):
    """Chains at ``position`` with velocities ``√G ⊙ noise`` (noise standard normal), drawn
    from their stationary law."""
    check_positions(position, params.center)
    g = params.metric
    return UnderdampedState(position, noise.clone() if g is None else noise * g.sqrt())


def step(
    state: UnderdampedState, grad: torch.Tensor, noise: torch.Tensor, params: UnderdampedParams
) -> tuple[UnderdampedState, StepInfo]:
    """One step for every chain; ``grad`` is ``∇L_B(w_t)``, ``noise`` a standard normal draw."""
    h, g = params.step_size, params.metric
    info = step_info(state.position, grad, params, g)
    kick = info.potential_grad if g is None else info.potential_grad * g
    v = state.velocity - h * kick
    w = state.position + (0.5 * h) * v
    c = math.exp(-params.friction * h)
    amp = math.sqrt(1.0 - c * c)
    fresh = noise if g is None else noise * g.sqrt()
    if params.noise_scale is not None:
        fresh = fresh * params.noise_scale
    v = c * v + amp * fresh
    return UnderdampedState(w + (0.5 * h) * v, v), info


def preconditioner(state: UnderdampedState, params: UnderdampedParams) -> torch.Tensor | None:
    """The metric G, in which the curvature that sets h is measured (None: G = 1)."""
    return params.metric


def minibatch_heating(params: UnderdampedParams, variance: torch.Tensor) -> torch.Tensor:
    """``η_i = h² nβ² G_i Var(∂_i L_B) / (1 − e^{−2ζh})`` per coordinate."""
    h = params.step_size
    g = params.metric.double() if params.metric is not None else 1.0
    injected = -math.expm1(-2.0 * params.friction * h)
    return h * h * params.nbeta**2 * g * variance / injected


def stable_step_size(curvature: float) -> float:
    """``h = c/√κ̂``."""
    return STEP_FACTOR / math.sqrt(curvature)
