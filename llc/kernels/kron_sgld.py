"""SGLD with a Kronecker-factored metric per layer, built from the other layers.

For an MLP (``nn.Sequential`` of ``nn.Linear`` and activations) whose layer l maps ``h_l`` to
``W_l h_l + b_l``, block l holds ``[W_l | b_l]`` and moves with the metric ::

    M_l = nβ (R_l ⊗ S_l) + γ I,   S_l = mean_x h̃_l h̃_lᵀ,   R_l = J_lᵀ J_l,   J_l = W_L ⋯ W_{l+1}

with ``h̃_l = (h_l, 1)`` (with a bias) over fixed metric inputs ``x`` (``params.inputs``) and
``J_l`` the product of the weights above l, activations left out. One step, with
``U(w) = nβ L_B(w) + (γ/2)‖w − w*‖²`` and ``ζ_t`` as in :mod:`llc.kernels.sgld`
(``(ξ_t + ξ_{t+1})/2`` for the Leimkuhler–Matthews scheme), is, in every block at once ::

    w_{t+1} = w_t − (ε/2) M(w_t)⁻¹ ∇U(w_t) + √ε M(w_t)^{−1/2} ζ_t

Notes
-----
``S_l`` depends on the layers below l and ``R_l`` on those above, never on block l itself, so
``Σ_j ∂(M⁻¹)_ij/∂w_j = 0`` for the coordinates i of every block: the Langevin diffusion with this
position-dependent metric needs no correction term and leaves the posterior invariant [1]_. For a
deep linear network with the squared error and all the data as metric inputs, ``M_l`` is exactly
the precision of block l's conditional given the others, the one the exact Gibbs sampler
(:func:`theory.dln_gibbs_llc`) draws from [2]_. The metric follows the chains along the funnel of
a deep network's posterior, where a fixed metric's step must shrink by orders of magnitude
(``docs/design.md``, issue 16). ε is in the metric's units; the discretisation bias is O(ε).

Each step costs two symmetric eigendecompositions per layer and chain (of the layer's output
and input widths; the first layer's input factor and the top layer's identity, which the chains
share, once) and, up to the last activation, a forward pass over the metric inputs: for layers
of at most a few hundred units.

References
----------
.. [1] M. Girolami and B. Calderhead, "Riemann manifold Langevin and Hamiltonian Monte Carlo
   methods", J. R. Stat. Soc. B 73 (2011) 123–214; T. Xifara, C. Sherlock, S. Livingstone,
   S. Byrne, M. Girolami, "Langevin diffusions and the Metropolis-adjusted Langevin algorithm",
   Stat. Probab. Lett. 91 (2014) 14–19.
.. [2] J. Martens and R. Grosse, "Optimizing neural networks with Kronecker-factored approximate
   curvature", ICML 2015 (the Kronecker factors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ._common import StepInfo, check_common, check_positions, step_info
from ._kron import langevin_move, layer_metric
from ._langevin import SCHEMES, potential_grad

__all__ = [
    "EVALUATION_DTYPE",
    "STEP_RULE",
    "TRANSPORT_FACTOR",
    "KronSGLDParams",
    "KronSGLDState",
    "draw_step_size",
    "init",
    "metric",
    "preconditioner",
    "stable_step_size",
    "step",
]

TRANSPORT_FACTOR = 0.04  # ε = c/κ̂(w*) while the chains cross the funnel
DRAW_FACTOR = 0.005  # ε = c/κ̂(w*) for the draws: the O(ε) bias about 1 % (docs/design.md)
# float32 evaluations heat a deep network's chains where its posterior is narrower than float32's
# spacing (DLN 70x7: +5.2 % against λ_n, float64 +1.7 %; docs/design.md)
EVALUATION_DTYPE = torch.float64
STEP_RULE = f"ε = {TRANSPORT_FACTOR}/κ̂(w*) (transport), {DRAW_FACTOR}/κ̂(w*) (draws)"


@dataclass(frozen=True)
class KronSGLDParams:
    """Parameters of the Kronecker-metric SGLD kernel (apart from its state).

    Attributes
    ----------
    step_size, localization, nbeta : float
        ε > 0 (in the metric's units), γ ≥ 0, nβ > 0.
    center : Tensor, shape (D,)
        w*.
    scheme : {"leimkuhler_matthews", "euler"}
    layers : tuple
        The MLP's layers in order, each with ``weight`` (a slice of the flat parameters),
        ``shape`` (out, in), ``bias`` (a slice or None) and ``act`` (the activation after the
        layer, or None), covering every parameter.
    inputs : Tensor, shape (m, in_0)
        The fixed metric inputs.
    """

    step_size: float
    localization: float
    nbeta: float
    center: torch.Tensor
    scheme: str = "leimkuhler_matthews"
    layers: tuple = ()
    inputs: torch.Tensor | None = None

    def __post_init__(self) -> None:
        check_common(self)
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if not self.layers:
            raise ValueError("layers must describe the MLP's layers (an nn.Sequential MLP)")
        covered = sum(math.prod(lay.shape) + (lay.shape[0] if lay.bias is not None else 0)
                      for lay in self.layers)  # fmt: skip
        if covered != self.center.numel():
            raise ValueError(
                f"layers cover {covered} parameters, the center has {self.center.numel()}"
            )
        if not isinstance(self.inputs, torch.Tensor) or self.inputs.ndim != 2:
            raise TypeError("inputs must be a 2-D tensor (m, in) of metric inputs")
        if self.inputs.shape[1] != self.layers[0].shape[1]:
            raise ValueError(
                f"inputs must have {self.layers[0].shape[1]} features, got {self.inputs.shape[1]}"
            )


class KronSGLDState(NamedTuple):
    """``position`` (chain, D), where the loop evaluates the loss; the last noise draw
    ``noise`` = ξ_t (chain, D); ``exact``, the same positions in float64 (chain, D), which the
    steps update: ``position`` is its rounding to the chains' dtype."""

    position: torch.Tensor
    noise: torch.Tensor
    exact: torch.Tensor


def init(position: torch.Tensor, noise: torch.Tensor, params: KronSGLDParams) -> KronSGLDState:
    """Chains at ``position`` (chain, D) with the first noise draw ``noise`` (chain, D)."""
    check_positions(position, params.center)
    return KronSGLDState(position, noise, position.double())


def metric(position: torch.Tensor, params: KronSGLDParams):
    """The blocks' metrics at ``position`` (:func:`llc.kernels._kron.layer_metric`), in
    ``position``'s dtype."""
    inputs = params.inputs.to(position.dtype)
    return layer_metric(position, params.layers, inputs, params.nbeta, params.localization)


def step(
    state: KronSGLDState, grad: torch.Tensor, noise: torch.Tensor, params: KronSGLDParams
) -> tuple[KronSGLDState, StepInfo]:
    """One step for every chain. ``grad`` is ``∇L_B(w_t)`` (not times nβ), ``noise`` ξ_{t+1}."""
    # in float64 whatever the chains' dtype, from float64 positions: in float32 the update cooled
    # DLN 20x6 by 5 %, and rounding the positions at every step heated DLN 70x7 (docs/design.md)
    w, eps = state.exact, params.step_size
    m = metric(w, params)
    g = potential_grad(w, params.center.double(), grad.double(), params.nbeta,
                       params.localization)  # fmt: skip
    zeta = noise.double()
    if params.scheme == "leimkuhler_matthews":
        zeta = 0.5 * (state.noise.double() + zeta)
    new = w + langevin_move(m, params.layers, g, zeta, eps)
    moved = KronSGLDState(new.to(state.position.dtype), noise, new)
    return moved, step_info(state.position, grad, params, None)


def preconditioner(state: KronSGLDState, params: KronSGLDParams) -> None:
    """None: the metric is not diagonal (see :func:`metric`)."""
    return None


def stable_step_size(curvature: float) -> float:
    """The transport's ``ε = c/κ̂`` from the largest curvature κ̂ at w* in the metric's units."""
    return TRANSPORT_FACTOR / curvature


def draw_step_size(curvature: float) -> float:
    """The draws' ``ε = c/κ̂`` from the same κ̂."""
    return DRAW_FACTOR / curvature
