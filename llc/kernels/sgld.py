"""Stochastic gradient Langevin dynamics, localized, with a fixed diagonal metric.

One step, with ``U(w) = nβ L_B(w) + (γ/2)‖w − w*‖²``, a fixed diagonal metric G (``metric``;
G = 1 when None) and a noise scale s (``noise_scale``; 1 when None) ::

    w_{t+1} = w_t − (ε/2) G ⊙ ∇U(w_t) + √(ε G) ⊙ s ⊙ ζ_t

* ``scheme="euler"``: ``ζ_t = ξ_{t+1}``, the SGLD of Welling & Teh [1]_ as localized by Lau et
  al. [2]_ and implemented by devinterp.
* ``scheme="leimkuhler_matthews"`` (default): ``ζ_t = (ξ_t + ξ_{t+1})/2`` [3]_. Each step costs the
  same, but the stationary law of a quadratic potential is exact for every stable ε
  (``εκ < 4``) instead of inflated by ``1/(1 − εκ/4)``, and the bias for general potentials is
  O(ε²) instead of O(ε).

A constant G leaves the stationary law of the preconditioned diffusion unchanged for any G > 0.

Minibatch noise compensation: the minibatch gradient adds noise of covariance
``(ε²/4) nβ² G Σ_B G`` per step on top of the injected ``ε G``, which heats the chain by
``h_i = ε nβ² G_i (Σ_B)_ii / 4`` along coordinate i (Σ_B the covariance of ``∇L_B``). Injecting
``√(ε G) ⊙ s ⊙ ζ`` with ``s_i = √(1 − h_i)`` makes the diagonal of the total noise exactly
``ε G``. For a quadratic potential the stationary energy is half the trace of the (G-whitened)
noise covariance, whatever its off-diagonal part (take the trace of the Lyapunov equation), so
matching the diagonal removes the heating of the energy, to first order in ε.

References
----------
.. [1] M. Welling and Y. W. Teh, "Bayesian learning via stochastic gradient Langevin dynamics",
   ICML 2011.
.. [2] E. Lau, Z. Furman, G. Wang, D. Murfet, S. Wei, "The Local Learning Coefficient: A
   Singularity-Aware Complexity Measure", arXiv:2308.12108.
.. [3] B. Leimkuhler and C. Matthews, "Rational construction of stochastic numerical methods for
   molecular sampling", Appl. Math. Res. Express (2013) 34–56.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ._common import StepInfo, check_common, check_positions, step_info
from ._langevin import SCHEMES, langevin_step

__all__ = [
    "STEP_FACTOR",
    "STEP_RULE",
    "SGLDParams",
    "SGLDState",
    "init",
    "minibatch_heating",
    "preconditioner",
    "stable_step_size",
    "step",
]

STEP_FACTOR = 0.5  # c in ε = c/κ̂: the stiffest direction relaxes by a = εκ/2 = 1/4 per step
STEP_RULE = f"ε = {STEP_FACTOR}/κ̂"


@dataclass(frozen=True)
class SGLDParams:
    """Parameters of the SGLD kernel (apart from its state).

    Attributes
    ----------
    step_size : float
        ε > 0.
    localization : float
        γ ≥ 0, the strength of the Gaussian pull towards w*.
    nbeta : float
        nβ > 0, the inverse temperature times the number of samples.

        Each of the three may instead be a float64 tensor of shape (chain, 1): one value per
        chain (a grid of settings sampled in one batch, :func:`llc.calibrate`).
    center : Tensor, shape (D,)
        w*.
    scheme : {"leimkuhler_matthews", "euler"}
    metric : Tensor, shape (D,), or None
        The fixed diagonal metric G (None: G = 1).
    noise_scale : Tensor, shape (D,), or None
        The factor s on the injected noise (None: 1).
    """

    step_size: float
    localization: float
    nbeta: float
    center: torch.Tensor
    scheme: str = "leimkuhler_matthews"
    metric: torch.Tensor | None = None
    noise_scale: torch.Tensor | None = None

    def __post_init__(self) -> None:
        check_common(self, per_chain=True)
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")


class SGLDState(NamedTuple):
    """``position`` (chain, D) and the last noise draw ``noise`` = ξ_t (chain, D)."""

    position: torch.Tensor
    noise: torch.Tensor


def init(position: torch.Tensor, noise: torch.Tensor, params: SGLDParams) -> SGLDState:
    """Chains at ``position`` (chain, D) with the first noise draw ``noise`` (chain, D)."""
    check_positions(position, params.center)
    return SGLDState(position, noise)


def step(
    state: SGLDState, grad: torch.Tensor, noise: torch.Tensor, params: SGLDParams
) -> tuple[SGLDState, StepInfo]:
    """One step for every chain. ``grad`` is ``∇L_B(w_t)`` (not times nβ), ``noise`` ξ_{t+1}."""
    new = langevin_step(state, grad, noise, params, params.metric, params.noise_scale)
    return SGLDState(new, noise), step_info(state.position, grad, params, params.metric)


def preconditioner(state: SGLDState, params: SGLDParams) -> torch.Tensor | None:
    """The metric G that scales drift and noise (None: G = 1)."""
    return params.metric


def minibatch_heating(params: SGLDParams, variance: torch.Tensor) -> torch.Tensor:
    """``h_i = ε nβ² G_i Var(∂_i L_B) / 4``: the relative excess noise per coordinate."""
    g = params.metric.double() if params.metric is not None else 1.0
    return params.step_size * params.nbeta**2 * g * variance / 4


def stable_step_size(curvature: float) -> float:
    """``ε = c/κ̂`` from the largest (G-scaled) curvature κ̂ of U."""
    return STEP_FACTOR / curvature
