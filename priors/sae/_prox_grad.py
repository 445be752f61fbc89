"""Autograd for prox activations: implicit derivatives, and a pseudo-derivative at jumps.

The equations are in :class:`priors.sae.ProxActivation`'s Notes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._live_prox import pen_derivatives as _pen_derivatives


def _grad_and_hessian(pen: Callable, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient ``(M, k)`` and Hessian ``(M, k, k)`` of a group penalty at the rows of ``x``."""
    xs = x.detach().requires_grad_(True)
    k = x.shape[-1]
    with torch.enable_grad():
        (d1,) = torch.autograd.grad(pen(xs).sum(), xs, create_graph=True)
        rows = []
        for j in range(k):  # one backward per coordinate: groups are small
            if not d1.requires_grad:
                rows.append(torch.zeros_like(xs))
                continue
            (r,) = torch.autograd.grad(d1[:, j].sum(), xs, retain_graph=True, allow_unused=True)
            rows.append(torch.zeros_like(xs) if r is None else r)
    return d1.detach(), torch.stack(rows, dim=-2).detach()


def _separable_prox(mod, v: torch.Tensor, t: torch.Tensor, tau) -> torch.Tensor:
    """The prox elementwise: 0 in the dead zone (``|v| > τ`` compared in v's dtype, as
    JumpReLU does), the fast live-side solver beyond it, the exact prox below 0 where needed."""
    a = v.abs() if mod._symmetric else v
    live = a > tau.to(v.dtype) if tau is not None else a > 0
    v64 = v.double()
    x = torch.zeros_like(v64)
    x[live] = mod._live(a.double()[live], t[live])
    if mod._symmetric:
        x = torch.sign(v64) * x
    elif not mod._zero_below:
        low = v64 <= 0
        x[low] = mod._prox(v64[low], t[low])
    return x.to(v.dtype)


class ProxFunction(torch.autograd.Function):
    """``prox_{t·pen}(v)`` with its dead zone, for a separable penalty (see ProxActivation)."""

    @staticmethod
    def forward(ctx, v, param, mod):  # noqa: D102
        zone = mod._zone
        with torch.no_grad():
            if zone is not None:
                tau = param.clamp_min(1e-30)
                t = zone.t_of(tau)
            else:
                t = param.double().exp()
            x = _separable_prox(mod, v, t.expand(v.shape), None if zone is None else tau)
        if not bool(torch.isfinite(x).all()):
            raise FloatingPointError("ProxActivation: the prox returned non-finite latents")
        ctx.mod = mod
        ctx.save_for_backward(v, x, param, t)
        return x

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        v, x, param, t = ctx.saved_tensors
        mod = ctx.mod
        x64 = x.double()
        live = x64 != 0
        at = torch.where(live, x64, torch.ones_like(x64))
        d1, d2 = mod._derivs(at) if mod._derivs is not None else _pen_derivatives(mod._pen, at)
        denom = 1 + t * d2
        inv = torch.where(live & (denom > 0), 1 / denom, torch.zeros_like(denom))
        g64 = g.double()
        grad_v = (g64 * inv).to(v.dtype)
        dx_dt = torch.where(live, -d1 * inv, torch.zeros_like(inv))
        lead = tuple(range(v.ndim - 1))
        zone = mod._zone
        if zone is None:
            grad_p = (g64 * dx_dt * t).sum(lead)  # d/dlog t
        else:
            tau = param.detach().clamp_min(1e-30).double()
            if zone.has_jump:
                # at a jump ½τ² = ½(f_τ − τ)² + t·pen(f_τ); with stationarity, dt/dτ = f_τ/pen(f_τ)
                f_tau = mod._prox(tau * (1 + 1e-12), t)
                pen_tau = mod._pen(f_tau)
                ok = (f_tau != 0) & (pen_tau > 0)
                dt_dtau = torch.where(ok, f_tau.abs() / pen_tau, zone.dt_dtau(tau))
            else:
                dt_dtau = zone.dt_dtau(tau)
            grad_p = (g64 * dx_dt * dt_dtau).sum(lead)
            if zone.has_jump:
                f_tau = f_tau.abs()
                eps = mod.bandwidth
                kernel = ((v.double().abs() - tau).abs() <= eps / 2).double() / eps
                grad_p = grad_p - (g64 * f_tau * kernel * torch.sign(v.double())).sum(lead)
        return grad_v, grad_p.to(param.dtype), None


class ThresholdStep(torch.autograd.Function):
    """``1[a > τ]`` with the rectangle-kernel pseudo-derivative for τ (none for ``a``)."""

    @staticmethod
    def forward(ctx, a, tau, eps):  # noqa: D102
        ctx.save_for_backward(a, tau)
        ctx.eps = eps
        return (a > tau).to(a.dtype)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        a, tau = ctx.saved_tensors
        kernel = ((a - tau).abs() <= ctx.eps / 2).to(g.dtype) / ctx.eps
        grad_tau = -(g * kernel).sum(tuple(range(a.ndim - 1)))
        return None, grad_tau.to(tau.dtype), None


class _JointProx(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, log_t, prox_fn, pen_fn):  # noqa: D102
        with torch.no_grad():
            t = log_t.double().exp().expand(v.shape[:-1])
            x = prox_fn(v, t)
        if not bool(torch.isfinite(x).all()):
            raise FloatingPointError("ProxActivation: the prox returned non-finite latents")
        ctx.pen_fn, ctx.pdtype = pen_fn, log_t.dtype
        ctx.save_for_backward(v, x, t)
        return x

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        v, x, t = ctx.saved_tensors
        k = x.shape[-1]
        flat = x.double().reshape(-1, k)
        active = flat != 0
        # at x itself: inactive coordinates stay 0 (a mutually exclusive penalty is +inf
        # elsewhere); NaN derivatives there are masked below
        d1, hess = _grad_and_hessian(ctx.pen_fn, flat)
        both = active.unsqueeze(-1) & active.unsqueeze(-2)
        eye = torch.eye(k, dtype=torch.float64).expand_as(hess)
        tt = t.reshape(-1, 1, 1)
        m = torch.where(both, eye + tt * torch.where(both, hess, torch.zeros_like(hess)), eye)
        rhs = torch.where(active, g.double().reshape(-1, k), torch.zeros_like(flat))
        u = torch.linalg.solve(m, rhs.unsqueeze(-1)).squeeze(-1)
        u = torch.where(active, u, torch.zeros_like(u))
        grad_v = u.reshape(v.shape).to(v.dtype)
        d1 = torch.where(active, d1, torch.zeros_like(d1))
        dl_dt = -(u * d1).sum(-1).reshape(v.shape[:-1])
        grad_log_t = (dl_dt * t).reshape(-1, v.shape[-2]).sum(0)
        return grad_v, grad_log_t.to(ctx.pdtype), None, None


def joint_prox_vjp(prox_fn, pen_fn, groups: torch.Tensor, log_t: torch.Tensor) -> torch.Tensor:
    """``prox_{t·pen}`` over groups ``(..., G, k)`` with ``t = exp(log_t)`` of shape ``(G,)``."""
    return _JointProx.apply(groups, log_t, prox_fn, pen_fn)
