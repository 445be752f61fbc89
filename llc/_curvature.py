"""The largest curvature of the potential at the chains' points, by power iteration.

``κ̂ ≈ max |eig(G^{1/2} (nβ ∇²L_B(w) + γ I) G^{1/2})|`` per chain, with G the kernel's
preconditioner at its state (1 when None), from Hessian-vector products on one minibatch.
"""

from __future__ import annotations

import math

import torch

__all__ = ["scaled_curvature", "top_curvature", "typical_points"]


def top_curvature(chains, params, position, precond, vecs: torch.Tensor, iters: int):
    """``(κ̂ (chain,), vecs)`` at ``position`` (chain, D) with preconditioner ``precond`` (or
    None); the final iteration vectors warm-start the next call."""
    if precond is None:
        return scaled_curvature(chains, params, position, lambda v: v, vecs, iters)
    root = precond.expand_as(position).sqrt()
    return scaled_curvature(chains, params, position, lambda v: v * root, vecs, iters)


@torch.no_grad()
def scaled_curvature(chains, params, position, scale, vecs: torch.Tensor, iters: int):
    """As :func:`top_curvature` with any metric: ``scale(v)`` applies ``M^{−1/2}`` (``G^{1/2}``
    for a diagonal preconditioner) to a (chain, D) batch, so
    ``κ̂ ≈ max |eig(M^{−1/2} (nβ ∇²L_B + γ I) M^{−1/2})|``."""
    idx = chains.randomness.indices()
    kappa = torch.zeros(position.shape[0], dtype=vecs.dtype, device=vecs.device)
    for _ in range(iters):
        vecs = vecs / vecs.norm(dim=1, keepdim=True).clamp_min(1e-30)
        v_in = scale(vecs)
        hv = scale(params.nbeta * chains.hvp(position, v_in, idx) + params.localization * v_in)
        kappa = (hv * vecs).sum(1).abs()
        vecs = hv
    kappa = torch.where(torch.isfinite(kappa), kappa, torch.zeros_like(kappa))
    return kappa, vecs / vecs.norm(dim=1, keepdim=True).clamp_min(1e-30)


@torch.no_grad()
def typical_points(chains, nbeta: float, gen: torch.Generator) -> torch.Tensor:
    """Points ``w* + σ ξ`` whose excess energy ``nβ (L − L*)`` is about d/4 (posterior-typical),
    σ found by bisection in log10 σ ∈ [−12, 2]."""
    pot = chains.potential
    c, d = chains.num_chains, pot.dim
    xi = torch.randn(c, d, generator=gen, device=pot.device, dtype=pot.center.dtype)
    idx = chains.randomness.indices()
    target = max(d / 4.0, 0.5)
    lo, hi = -12.0, 2.0
    base = pot.center_loss(idx)
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        losses, _ = chains.value_and_grad(pot.center + (10.0**mid) * xi, idx)
        excess = (nbeta * (losses - base)).median().item()
        if not math.isfinite(excess) or excess > target:
            hi = mid
        else:
            lo = mid
    return pot.center + (10.0 ** (0.5 * (lo + hi))) * xi
