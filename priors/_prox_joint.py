r"""Torch proximal operators of joint (group) penalties; groups lie on the last tensor axis.

Built from the 1-D proxes that :func:`priors.prox` derives for the group's structure:

* radial ``pen(a) = f(‖a‖)``: ``prox(v) = ρ(‖v‖) v/‖v‖`` with ``ρ`` the 1-D prox of ``f`` on
  r ≥ 0 (group lasso: ``max(0, 1 − tλ/‖v‖) v``).
* mutually exclusive: each coordinate's 1-D prox, then keep the single coordinate with the
  largest decrease of the objective (or none).

The proxes and penalties come in as arguments (anything with ``to_torch``): this module sits
below :mod:`priors.prox`, which composes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ._prox_numeric import check_t, check_v

__all__ = ["exclusive_torch", "radial_torch"]


def _check_group(v: Any, dim: int) -> None:
    check_v(v)
    if v.ndim == 0 or v.shape[-1] != dim:
        raise ValueError(f"v: expected last dimension {dim}, got {tuple(v.shape)}")


def radial_torch(dim: int, inner: Any) -> Callable:
    """``f(v, t)`` for ``pen(a) = f(‖a‖)`` on groups of ``dim``; ``inner`` is the prox of ``f``."""
    f1 = inner.to_torch()

    def f(v, t):
        _check_group(v, dim)
        with torch.no_grad():
            v64 = v.detach().to(torch.float64)
            n = torch.linalg.vector_norm(v64, dim=-1)
            t64 = check_t(t, v.device).expand_as(n)
            rho = f1(n, t64)
            scale = torch.where(n > 0, rho / torch.where(n > 0, n, 1.0), 0.0)
            # a group with a NaN or inf is NaN: its direction is undefined
            out = torch.where(torch.isfinite(n).unsqueeze(-1), scale.unsqueeze(-1) * v64,
                              math.nan)
            return out.to(v.dtype)

    return f


def exclusive_torch(dim: int, inner: Any, coord: Any) -> Callable:
    """``f(v, t)`` for at most one active coordinate of ``dim``.

    ``coord`` is the per-coordinate penalty and ``inner`` its prox.
    """
    f1 = inner.to_torch()
    g = coord.to_torch()

    def f(v, t):
        _check_group(v, dim)
        with torch.no_grad():
            v64 = v.detach().to(torch.float64)
            t64 = check_t(t, v.device)
            t64 = t64.unsqueeze(-1).expand_as(v64) if t64.ndim else t64.expand_as(v64)
            x = f1(v64, t64)
            gain = 0.5 * v64**2 - (0.5 * (x - v64) ** 2 + t64 * g(x))
            best = torch.argmax(gain, dim=-1, keepdim=True)
            keep = torch.gather(gain, -1, best) > 0
            out = torch.zeros_like(v64)
            out.scatter_(-1, best, torch.where(keep, torch.gather(x, -1, best), 0.0))
            finite = torch.isfinite(v64).all(-1, keepdim=True)  # NaN/inf groups are NaN
            return torch.where(finite, out, math.nan).to(v.dtype)

    return f
