r"""Proximal operators of joint (group) penalties; groups lie on the last tensor axis.

* radial ``pen(a) = f(‖a‖)``: ``prox(v) = ρ(‖v‖) v/‖v‖`` with ``ρ`` the 1-D prox of ``f`` on
  r ≥ 0 (group lasso: ``max(0, 1 − tλ/‖v‖) v``).
* mutually exclusive: each coordinate's 1-D prox, then keep the single coordinate with the
  largest decrease of the objective (or none).
"""

from __future__ import annotations

import torch

__all__ = ["joint_prox"]


def joint_prox(pen):
    from .joint import radial_profile
    from .prox import Prox, prox

    radial = radial_profile(pen)
    if radial is not None:
        inner = prox(radial)

        def build_radial():
            f1 = inner.to_torch()

            def f(v, t):
                if not isinstance(v, torch.Tensor):
                    raise TypeError(f"v: expected a torch.Tensor, got {type(v).__name__}")
                if v.shape[-1] != pen.dim:
                    raise ValueError(f"v: expected last dimension {pen.dim}, got {tuple(v.shape)}")
                with torch.no_grad():
                    v64 = v.detach().to(torch.float64)
                    n = torch.linalg.vector_norm(v64, dim=-1)
                    t64 = torch.as_tensor(t, dtype=torch.float64, device=v.device).expand_as(n)
                    rho = f1(n, t64)
                    scale = torch.where(n > 0, rho / torch.where(n > 0, n, 1.0), 0.0)
                    return (scale.unsqueeze(-1) * v64).to(v.dtype)

            return f

        return Prox(pen, inner.closed_form, f"radial: {inner.method}", False, None,
                    inner.threshold_expr, (), {"torch": build_radial, "inner": inner})
    if "exclusive" in pen.meta:
        coord = pen.meta["exclusive"]
        inner = prox(coord)

        def build_exclusive():
            f1 = inner.to_torch()
            g = coord.to_torch()

            def f(v, t):
                if not isinstance(v, torch.Tensor):
                    raise TypeError(f"v: expected a torch.Tensor, got {type(v).__name__}")
                if v.shape[-1] != pen.dim:
                    raise ValueError(f"v: expected last dimension {pen.dim}, got {tuple(v.shape)}")
                with torch.no_grad():
                    v64 = v.detach().to(torch.float64)
                    t64 = torch.as_tensor(t, dtype=torch.float64, device=v.device)
                    t64 = t64.unsqueeze(-1).expand_as(v64) if t64.ndim else t64.expand_as(v64)
                    x = f1(v64, t64)
                    gain = 0.5 * v64**2 - (0.5 * (x - v64) ** 2 + t64 * g(x))
                    best = torch.argmax(gain, dim=-1, keepdim=True)
                    keep = torch.gather(gain, -1, best) > 0
                    out = torch.zeros_like(v64)
                    out.scatter_(-1, best, torch.where(keep, torch.gather(x, -1, best), 0.0))
                    return out.to(v.dtype)

            return f

        return Prox(pen, inner.closed_form, f"mutually exclusive: {inner.method}", False, None,
                    None, (), {"torch": build_exclusive, "inner": inner})
    raise NotImplementedError(
        "prox: joint penalties are handled when radial (f(||a||)) or mutually exclusive; "
        f"got {pen.expr}"
    )
