"""The dead zone of a scalar proximal operator, ``τ(t) = inf{v > 0 : prox_t(v) ≠ 0}``, as a table.

An encoder built from a prox is parametrised by its threshold τ (as JumpReLU is); the penalty
weight it implies is ``t(τ)``, read from a table of ``τ(t)`` on a log grid (monotone in t), and
interpolated linearly in ``(log τ, log t)``: exact for power laws such as L0 (τ = √(2t)) and L1
(τ = t), and within about 1e-4 (relative) for smooth ones at 100 points per decade.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

_T_RANGE = (1e-6, 1e6)
_PER_DECADE = 100


@dataclass(frozen=True)
class DeadZone:
    """``τ`` on a grid of ``t`` (float64, increasing), and the prox's value just above τ."""

    t: torch.Tensor
    tau: torch.Tensor
    jump: torch.Tensor  # lim_{v↓τ} prox_t(v): > 0 where the prox jumps out of its dead zone
    slope: float | None = None  # c with τ = c·t exactly (continuous prox: c = pen'(0⁺))

    @property
    def exists(self) -> bool:
        return bool((self.tau > 0).any())

    @property
    def has_jump(self) -> bool:
        return bool((self.jump > 1e-6 * self.tau).any())

    def t_of(self, tau: torch.Tensor) -> torch.Tensor:
        """``t(τ)`` by interpolation in log-log; clamped to the grid."""
        if self.slope is not None:
            return tau.double() / self.slope
        return torch.exp(_interp(tau.double().log(), self.tau.log(), self.t.log()))

    def tau_of(self, t: torch.Tensor) -> torch.Tensor:
        """``τ(t)`` by interpolation in log-log; clamped to the grid."""
        if self.slope is not None:
            return t.double() * self.slope
        return torch.exp(_interp(t.double().log(), self.t.log(), self.tau.log()))

    def dt_dtau(self, tau: torch.Tensor) -> torch.Tensor:
        """``dt/dτ`` of the interpolant: ``(t/τ)·dlog t/dlog τ`` on the grid segment."""
        if self.slope is not None:
            return torch.full_like(tau.double(), 1 / self.slope)
        lx, ly = self.tau.log(), self.t.log()
        slope = (ly[1:] - ly[:-1]) / (lx[1:] - lx[:-1])
        i = torch.searchsorted(lx, tau.double().log()).clamp(1, len(lx) - 1) - 1
        return slope[i] * self.t_of(tau) / tau.double()


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    i = torch.searchsorted(xp, x).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    w = ((x - x0) / (x1 - x0)).clamp(0, 1)
    return f0 + w * (f1 - f0)


def dead_zone(prox_fn: Callable, pen_fn: Callable) -> DeadZone:
    """Tabulate ``τ(t)`` of ``prox_fn(v, t)`` (elementwise, float64) by vectorised bisection.

    Only the part of the grid where ``0 < τ < ∞`` and τ increases strictly is kept.  Where the
    prox is continuous at its threshold, ``τ = t·pen'(0⁺)`` (the subgradient condition at 0);
    that exact line is used when the table confirms it.
    """
    lo_t, hi_t = _T_RANGE
    n = int(round(math.log10(hi_t / lo_t) * _PER_DECADE)) + 1
    t = torch.logspace(math.log10(lo_t), math.log10(hi_t), n, dtype=torch.float64)

    def nonzero(v: torch.Tensor) -> torch.Tensor:
        return prox_fn(v, t) != 0

    hi = torch.full_like(t, 1e-12)
    for _ in range(30):  # bracket: up to 1e-12 · 8^30 ≈ 1e15
        dead = ~nonzero(hi)
        if not dead.any():
            break
        hi = torch.where(dead, hi * 8, hi)
    finite = nonzero(hi)
    lo = torch.where(finite, hi / 8, hi)
    zero = nonzero(torch.full_like(t, 1e-12))  # no dead zone at this t
    for _ in range(56):  # 2^-56 · 8: below float64 resolution
        mid = 0.5 * (lo + hi)
        nz = nonzero(mid)
        hi = torch.where(nz, mid, hi)
        lo = torch.where(nz, lo, mid)
    tau = torch.where(zero, torch.zeros_like(hi), hi)
    keep = finite & ~zero
    if keep.sum() < 2:
        return DeadZone(t[:0], tau[:0], tau[:0])
    t, tau = t[keep], tau[keep]
    inc = torch.cat([torch.tensor([True]), tau[1:] > tau[:-1]])
    t, tau = t[inc], tau[inc]
    jump = prox_fn(tau * (1 + 1e-12), t).abs()
    zone = DeadZone(t, tau, jump)
    if not zone.has_jump:
        c = _right_derivative_at_zero(pen_fn)
        if c is not None and torch.allclose(tau / t, torch.full_like(t, c), rtol=1e-6):
            zone = DeadZone(t, tau, jump, slope=c)
    return zone


def _right_derivative_at_zero(pen_fn: Callable) -> float | None:
    x = torch.tensor([1e-150], dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        (d,) = torch.autograd.grad(pen_fn(x).sum(), x, allow_unused=True)
    if d is None or not bool(torch.isfinite(d).all()) or float(d) <= 0:
        return None
    return float(d)
