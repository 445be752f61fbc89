"""A fixed diagonal metric ``G_i ∝ 1 / E[(∂_i U)²]`` learned from the chains' gradients.

At equilibrium ``E[(∂_i U)²] = E[∂_i² U]`` (integration by parts), the mean curvature along
coordinate i, so G evens out the relaxation rates of stiff and nearly flat coordinates. Only live
chains with finite gradients count: one exploding chain must not set the metric of the others.
The result is normalised by its median and clipped to ``RANGE`` around it; entries that cannot be
computed get the smallest value. The curvature is floored at γ, the localization's own.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["RANGE", "MetricState", "final", "init", "update"]

RANGE = (1e-2, 1e2)  # metric entries relative to their median


class MetricState(NamedTuple):
    sum_sq: torch.Tensor  # (D,) float64: Σ over chains and steps of (∂U)²
    count: int


def init(dim: int, device: torch.device | str = "cpu") -> MetricState:
    return MetricState(torch.zeros(dim, dtype=torch.float64, device=device), 0)


def update(state: MetricState, potential_grad: torch.Tensor, alive: torch.Tensor) -> MetricState:
    """Add one step's ``∇U`` (chain, D) of the live chains ``alive`` (chain,)."""
    gu = potential_grad.to(torch.float64)
    gu = gu[alive & torch.isfinite(gu).all(dim=1)]
    return MetricState(state.sum_sq + (gu * gu).sum(0), state.count + gu.shape[0])


def final(state: MetricState, localization: float, dtype: torch.dtype) -> torch.Tensor | None:
    """The metric, shape (D,), or None when nothing was recorded."""
    if not state.count:
        return None
    curv = torch.clamp(state.sum_sq / state.count, min=max(localization, 1e-12))
    metric = 1.0 / curv
    ok = torch.isfinite(metric) & (metric > 0)
    if not ok.any():
        return None
    metric = torch.where(ok, metric / metric[ok].median(), torch.zeros_like(metric))
    return torch.clamp(metric, RANGE[0], RANGE[1]).to(dtype)
