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

__all__ = [
    "SCHEMES",
    "langevin_step",
    "langevin_update",
    "mala_log_acceptance",
    "per_chain",
    "potential_grad",
]

SCHEMES = ("leimkuhler_matthews", "euler")


def potential_grad(
    position: torch.Tensor,
    center: torch.Tensor,
    grad: torch.Tensor,
    nbeta: float,
    localization: float,
) -> torch.Tensor:
    """``∇U(w) = nβ ∇L_B(w) + γ (w − w*)``, shape (chain, D), γ the localization (nβ and γ
    floats or per-chain tensors of shape (chain, 1))."""
    out = grad * _cast(nbeta, grad)  # a new tensor: the in-place updates below mutate no input
    if _nonzero(localization):
        _axpy(out, position - center, localization)
    return out


def _cast(value, like: torch.Tensor):
    """A per-chain coefficient (chain, 1), computed in float64, in ``like``'s dtype; a float
    as it is."""
    return value.to(like.dtype) if isinstance(value, torch.Tensor) else value


def _nonzero(value) -> bool:
    return bool((value != 0).any()) if isinstance(value, torch.Tensor) else bool(value)


def _sqrt(value):
    return value.sqrt() if isinstance(value, torch.Tensor) else math.sqrt(value)


def _axpy(out: torch.Tensor, x: torch.Tensor, a) -> torch.Tensor:
    """``out += a·x`` in place, for a float ``a`` or a per-chain (chain, 1) tensor."""
    if isinstance(a, torch.Tensor):
        return out.addcmul_(x, a.to(out.dtype))
    return out.add_(x, alpha=a)


def per_chain(value, like: torch.Tensor):
    """A per-step scalar as it is, or a per-chain (chain, 1) tensor as shape (chain,) in
    ``like``'s dtype: the form that multiplies per-chain quantities such as losses."""
    return value.reshape(-1).to(like.dtype) if isinstance(value, torch.Tensor) else value


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
    """The new position (a fresh tensor; no input is modified).

    ``step_size``, ``nbeta`` and ``localization`` are floats, or per-chain float64 tensors of
    shape (chain, 1); the coefficients are formed in float64 and rounded once, as for floats.
    """
    eps, gamma = step_size, localization
    lm = scheme == "leimkuhler_matthews"
    # four passes over (chain, D), each in-place op on a tensor created here: w − (εγ/2)(w − w*)
    # as a lerp towards w*, then the gradient and the noise terms
    center = center.expand_as(position)
    if preconditioner is None and noise_scale is None:
        pull = _cast(0.5 * eps * gamma, position)
        new = torch.lerp(position, center, pull) if _nonzero(gamma) else position.clone()
        _axpy(new, grad, -0.5 * eps * nbeta)
        amp = _sqrt(eps)
        if lm:
            _axpy(_axpy(new, noise_prev, 0.5 * amp), noise, 0.5 * amp)
        else:
            _axpy(new, noise, amp)
        return new
    g = preconditioner if preconditioner is not None else torch.ones_like(center[0])
    eps, nbeta = _cast(eps, position), _cast(nbeta, position)
    half = (0.5 * eps) * g  # (D,) or (chain, D)
    amp = (eps * g).sqrt()
    if noise_scale is not None:
        amp = amp * noise_scale
    gamma = _cast(gamma, position)
    new = torch.lerp(position, center, half * gamma) if _nonzero(gamma) else position.clone()
    if isinstance(nbeta, torch.Tensor):
        new.addcmul_(grad, half * nbeta, value=-1.0)
    else:
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
    diagnostic: healthy runs sit near 0.9 or above. ``step_size`` is a float or a per-chain
    tensor of shape (chain, 1).
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
    log_ratio = cross + (per_chain(step_size, quad) / 8) * quad + u_prev - u_cur
    return torch.clamp(log_ratio, max=0.0)
