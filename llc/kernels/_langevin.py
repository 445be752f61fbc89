"""The preconditioned Langevin update that SGLD and RMSprop-SGLD share, and its MALA ratio.

With the potential ``U(w) = nβ L_B(w) + (γ/2)‖w − w*‖²`` and a diagonal preconditioner ``G``
(``G = 1`` when None), one step is ::

    w_{t+1} = w_t − (ε/2) G ⊙ ∇U(w_t) + √(ε G) ⊙ s ⊙ ζ_t

with ``ζ_t = ξ_{t+1}`` (``scheme="euler"``) or ``ζ_t = (ξ_t + ξ_{t+1})/2``
(``scheme="leimkuhler_matthews"``) and ``s`` the noise scale (1 when None).
"""

from __future__ import annotations

import math

import torch

__all__ = ["SCHEMES", "langevin_step", "langevin_update", "mala_log_acceptance", "potential_grad"]

SCHEMES = ("leimkuhler_matthews", "euler")


def potential_grad(
    position: torch.Tensor,
    center: torch.Tensor,
    grad: torch.Tensor,
    nbeta: float,
    localization: float,
) -> torch.Tensor:
    """``∇U(w) = nβ ∇L_B(w) + γ (w − w*)``, shape (chain, D), γ the localization."""
    out = grad * nbeta  # a new tensor: the in-place updates below mutate no input
    if localization:
        out.add_(position - center, alpha=localization)
    return out


def langevin_update(
    position: torch.Tensor,
    center: torch.Tensor,
    grad: torch.Tensor,
    noise_prev: torch.Tensor,
    noise: torch.Tensor,
    *,
    step_size: float,
    nbeta: float,
    localization: float,
    scheme: str,
    preconditioner: torch.Tensor | None,
    noise_scale: torch.Tensor | None,
) -> torch.Tensor:
    """The new position (a fresh tensor; no input is modified)."""
    eps, gamma = step_size, localization
    lm = scheme == "leimkuhler_matthews"
    # four passes over (chain, D), each in-place op on a tensor created here: w − (εγ/2)(w − w*)
    # as a lerp towards w*, then the gradient and the noise terms
    center = center.expand_as(position)
    if preconditioner is None and noise_scale is None:
        new = torch.lerp(position, center, 0.5 * eps * gamma) if gamma else position.clone()
        new.add_(grad, alpha=-0.5 * eps * nbeta)
        amp = math.sqrt(eps)
        if lm:
            new.add_(noise_prev, alpha=0.5 * amp).add_(noise, alpha=0.5 * amp)
        else:
            new.add_(noise, alpha=amp)
        return new
    g = preconditioner if preconditioner is not None else torch.ones_like(center[0])
    half = (0.5 * eps) * g  # (D,) or (chain, D)
    amp = (eps * g).sqrt()
    if noise_scale is not None:
        amp = amp * noise_scale
    new = torch.lerp(position, center, half * gamma) if gamma else position.clone()
    new.addcmul_(grad, half, value=-nbeta)
    if lm:
        new.addcmul_(noise_prev, amp, value=0.5).addcmul_(noise, amp, value=0.5)
    else:
        new.addcmul_(noise, amp)
    return new


def langevin_step(state, grad, noise, params, preconditioner, noise_scale) -> torch.Tensor:
    """:func:`langevin_update` from a kernel's state (``position``, ``noise``) and parameters
    (``center``, ``step_size``, ``nbeta``, ``localization``, ``scheme``)."""
    return langevin_update(
        state.position,
        params.center,
        grad,
        state.noise,
        noise,
        step_size=params.step_size,
        nbeta=params.nbeta,
        localization=params.localization,
        scheme=params.scheme,
        preconditioner=preconditioner,
        noise_scale=noise_scale,
    )


def mala_log_acceptance(
    w_prev: torch.Tensor,
    w_cur: torch.Tensor,
    u_prev: torch.Tensor,
    u_cur: torch.Tensor,
    grad_u_prev: torch.Tensor,
    grad_u_cur: torch.Tensor,
    step_size: float,
    preconditioner: torch.Tensor | None = None,
    noise_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log Metropolis–Hastings acceptance of the move ``w_prev → w_cur``, per chain.

    Notes
    -----
    ``log α = min(0, log q(w_prev | w_cur) − log q(w_cur | w_prev) + U(w_prev) − U(w_cur))`` with
    the Langevin proposal ``q(w' | w) = N(w − (ε/2) G ∇U(w), ε G s²)`` (``s = noise_scale``,
    default 1). ``U`` and ``∇U`` must come from the same minibatch at both points. A step-size
    diagnostic: healthy runs sit near 0.9 or above.
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
    g = preconditioner
    if noise_scale is not None:
        g = (1.0 if g is None else g) / noise_scale**2
    if g is None:
        quad = (grad_u_prev * grad_u_prev).sum(-1) - (grad_u_cur * grad_u_cur).sum(-1)
    else:
        quad = (grad_u_prev * g * grad_u_prev).sum(-1) - (grad_u_cur * g * grad_u_cur).sum(-1)
    log_ratio = cross + (step_size / 8) * quad + u_prev - u_cur
    return torch.clamp(log_ratio, max=0.0)
