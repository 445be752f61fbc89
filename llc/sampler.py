"""Pure SGLD kernels on stacked chain parameters.

``step(state, grad, noise, config) -> (state, info)`` advances every chain at once. Parameters
are one tensor of shape ``(chain, D)``; ``grad`` is the minibatch gradient ``∇L_B(w)`` of the
(un-tempered) loss for each chain; ``noise`` is fresh standard normal noise of the same shape,
drawn by the caller from explicit per-chain generators. Nothing here draws random numbers or
mutates its inputs.

Notes
-----
With the potential ``U(w) = nβ L_B(w) + (γ/2)‖w − w*‖²`` and a diagonal preconditioner ``G``
(``G = 1`` for plain SGLD), one step is ::

    w_{t+1} = w_t − (ε/2) G ⊙ ∇U(w_t) + √(ε G) ⊙ ζ_t

* ``scheme="euler"``: ``ζ_t = ξ_t``, the SGLD of Welling & Teh (2011) as localised by
  Lau et al. (2023) and implemented by devinterp.
* ``scheme="leimkuhler_matthews"`` (default): ``ζ_t = (ξ_t + ξ_{t+1})/2``, the same drift with the
  noise averaged over consecutive steps [3]_. Each step costs the same, but the stationary law of
  a quadratic potential is exact for every stable ε (``εκ < 4``) instead of inflated by
  ``1/(1 − εκ/4)``, and the bias for general potentials is O(ε²) instead of O(ε).

RMSprop preconditioning (``preconditioner="rmsprop"``, as devinterp's ``rmsprop_sgld``):
``V ← αV + (1−α) g²`` with ``g = ∇L_B(w)``, ``G = 1/(eps + √V)``, applied to drift and noise.
Because this G changes with w, the chain's stationary law is only approximately the target.

A fixed diagonal metric (``state.metric``, used with ``preconditioner="identity"``) is exact: with
constant G the preconditioned Langevin diffusion has the same stationary law for any G > 0.

Minibatch noise compensation (``state.noise_scale``): the minibatch gradient adds noise of
covariance ``(ε²/4) nβ² G Σ_B G`` per step on top of the injected ``ε G``, which heats the chain by
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

import math
from dataclasses import dataclass, replace
from functools import cached_property

import torch

__all__ = ["SGLDConfig", "SGLDState", "StepInfo", "init", "mala_log_acceptance", "step"]

_SCHEMES = ("leimkuhler_matthews", "euler")
_PRECONDITIONERS = ("identity", "rmsprop")


def _positive(name: str, value: float, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        raise ValueError(
            f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value}"
        )


@dataclass(frozen=True)
class SGLDConfig:
    """Hyperparameters of one SGLD kernel.

    Parameters
    ----------
    step_size : float
        ε > 0.
    localization : float
        γ ≥ 0, strength of the Gaussian pull towards w*.
    nbeta : float
        nβ > 0, the inverse temperature times the number of samples.
    scheme : {"leimkuhler_matthews", "euler"}
        Noise discretisation (see the module notes).
    preconditioner : {"identity", "rmsprop"}
    rmsprop_alpha, rmsprop_eps : float
        RMSprop averaging constant α ∈ [0, 1) and stabiliser eps > 0 (devinterp: 0.99, 0.1).
    """

    step_size: float
    localization: float
    nbeta: float
    scheme: str = "leimkuhler_matthews"
    preconditioner: str = "identity"
    rmsprop_alpha: float = 0.99
    rmsprop_eps: float = 0.1

    def __post_init__(self) -> None:
        _positive("step_size", self.step_size)
        _positive("localization", self.localization, allow_zero=True)
        _positive("nbeta", self.nbeta)
        if self.scheme not in _SCHEMES:
            raise ValueError(f"scheme must be one of {_SCHEMES}, got {self.scheme!r}")
        if self.preconditioner not in _PRECONDITIONERS:
            raise ValueError(
                f"preconditioner must be one of {_PRECONDITIONERS}, got {self.preconditioner!r}"
            )
        if not 0 <= self.rmsprop_alpha < 1:
            raise ValueError(f"rmsprop_alpha must be in [0, 1), got {self.rmsprop_alpha}")
        _positive("rmsprop_eps", self.rmsprop_eps)


@dataclass(frozen=True)
class SGLDState:
    """Sampler state for all chains.

    Attributes
    ----------
    params : Tensor, shape (chain, D)
    center : Tensor, shape (D,)
        The localisation centre w*.
    noise : Tensor, shape (chain, D)
        The last noise draw ξ_t (used by the Leimkuhler–Matthews scheme).
    square_avg : Tensor, shape (chain, D), or None
        RMSprop's running average V of squared gradients.
    metric : Tensor, shape (D,) or (chain, D), or None
        A fixed diagonal preconditioner G (None: G = 1).
    noise_scale : Tensor, shape (D,), or None
        Factor ``s`` on the injected noise, ``√(ε G) ⊙ s ⊙ ζ`` (None: 1); see the module notes.
    """

    params: torch.Tensor
    center: torch.Tensor
    noise: torch.Tensor
    square_avg: torch.Tensor | None = None
    metric: torch.Tensor | None = None
    noise_scale: torch.Tensor | None = None


@dataclass(frozen=True)
class StepInfo:
    """What one step exposes for diagnostics.

    Attributes
    ----------
    potential_grad : Tensor, shape (chain, D)
        ``∇U(w_t)``, the full drift direction before scaling (computed on first access: the
        update itself does not need it materialised).
    precond : Tensor, shape (chain, D), or None
        The preconditioner G used (None for identity).
    """

    state: SGLDState
    grad: torch.Tensor
    config: SGLDConfig
    precond: torch.Tensor | None

    @cached_property
    def potential_grad(self) -> torch.Tensor:
        return potential_grad(self.state, self.grad, self.config)


def init(
    params: torch.Tensor, center: torch.Tensor, noise: torch.Tensor, config: SGLDConfig
) -> SGLDState:
    """Initial state: chains at ``params`` (chain, D), first noise draw ``noise`` (chain, D)."""
    if params.ndim != 2 or params.shape[1] != center.numel():
        raise ValueError(
            f"params must have shape (chain, {center.numel()}), got {tuple(params.shape)}"
        )
    sq = torch.zeros_like(params) if config.preconditioner == "rmsprop" else None
    return SGLDState(params=params, center=center, noise=noise, square_avg=sq)


def potential_grad(state: SGLDState, grad: torch.Tensor, config: SGLDConfig) -> torch.Tensor:
    """``∇U(w) = nβ ∇L_B(w) + γ (w − w*)``, shape (chain, D)."""
    out = grad * config.nbeta  # a new tensor: the in-place updates below mutate no input
    if config.localization:
        out.add_(state.params - state.center, alpha=config.localization)
    return out


def step(
    state: SGLDState, grad: torch.Tensor, noise: torch.Tensor, config: SGLDConfig
) -> tuple[SGLDState, StepInfo]:
    """One SGLD step for every chain (see the module notes for the equations).

    Parameters
    ----------
    state : SGLDState
    grad : Tensor, shape (chain, D)
        Minibatch gradient of the loss ``∇L_B(w_t)`` (not multiplied by nβ).
    noise : Tensor, shape (chain, D)
        Fresh standard normal draw ξ_{t+1}.
    config : SGLDConfig
    """
    square_avg, precond = state.square_avg, state.metric
    if config.preconditioner == "rmsprop":
        a = config.rmsprop_alpha
        square_avg = a * state.square_avg + (1 - a) * grad * grad
        precond = 1.0 / (config.rmsprop_eps + square_avg.sqrt())
    eps, gamma = config.step_size, config.localization
    lm = config.scheme == "leimkuhler_matthews"
    # four passes over (chain, D), each in-place op on a tensor created here: w − (εγ/2)(w − w*)
    # as a lerp towards w*, then the gradient and the noise terms
    center = state.center.expand_as(state.params)
    if precond is None and state.noise_scale is None:
        new = torch.lerp(state.params, center, 0.5 * eps * gamma) if gamma else state.params.clone()
        new.add_(grad, alpha=-0.5 * eps * config.nbeta)
        amp = math.sqrt(eps)
        if lm:
            new.add_(state.noise, alpha=0.5 * amp).add_(noise, alpha=0.5 * amp)
        else:
            new.add_(noise, alpha=amp)
    else:
        g = precond if precond is not None else torch.ones_like(state.center)
        half = (0.5 * eps) * g  # (D,) or (chain, D)
        amp = (eps * g).sqrt()
        if state.noise_scale is not None:
            amp = amp * state.noise_scale
        new = torch.lerp(state.params, center, half * gamma) if gamma else state.params.clone()
        new.addcmul_(grad, half, value=-config.nbeta)
        if lm:
            new.addcmul_(state.noise, amp, value=0.5).addcmul_(noise, amp, value=0.5)
        else:
            new.addcmul_(noise, amp)
    info = StepInfo(state, grad, config, precond)
    return replace(state, params=new, noise=noise, square_avg=square_avg), info


def mala_log_acceptance(
    w_prev: torch.Tensor,
    w_cur: torch.Tensor,
    u_prev: torch.Tensor,
    u_cur: torch.Tensor,
    grad_u_prev: torch.Tensor,
    grad_u_cur: torch.Tensor,
    step_size: float,
    precond: torch.Tensor | None = None,
    noise_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log Metropolis–Hastings acceptance of the move ``w_prev → w_cur``, per chain.

    Notes
    -----
    ``log α = min(0, log q(w_prev | w_cur) − log q(w_cur | w_prev) + U(w_prev) − U(w_cur))`` with
    the Langevin proposal ``q(w' | w) = N(w − (ε/2) G ∇U(w), ε G s²)`` (``s = noise_scale``,
    default 1). ``U`` and ``∇U`` must come
    from the same minibatch at both points. Used as a step-size diagnostic: healthy runs sit near
    0.9 or above.
    """
    # Expanding the two Gaussian exponents, with Δ = w_cur − w_prev:
    # log q(w_prev | w_cur) − log q(w_cur | w_prev)
    #     = ½ Δ·(∇U_prev + ∇U_cur) + (ε/8) (∇U_prevᵀ G ∇U_prev − ∇U_curᵀ G ∇U_cur),
    # a few reductions instead of two full residual vectors.
    # With a noise scale s every term of coordinate i is divided by s_i².
    delta = w_cur - w_prev
    if noise_scale is not None:
        delta = delta / noise_scale**2
    cross = 0.5 * ((delta * grad_u_prev).sum(-1) + (delta * grad_u_cur).sum(-1))
    g = precond
    if noise_scale is not None:
        g = (1.0 if g is None else g) / noise_scale**2
    if g is None:
        quad = (grad_u_prev * grad_u_prev).sum(-1) - (grad_u_cur * grad_u_cur).sum(-1)
    else:
        quad = (grad_u_prev * g * grad_u_prev).sum(-1) - (grad_u_cur * g * grad_u_cur).sum(-1)
    log_ratio = cross + (step_size / 8) * quad + u_prev - u_cur
    return torch.clamp(log_ratio, max=0.0)
