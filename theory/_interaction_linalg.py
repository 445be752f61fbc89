"""Linear algebra of the interaction basis: moments, PCA basis, whitening, rotation.

Private helper of :mod:`theory.interaction`.  Row vectors, homogeneous coordinates ``f = (x, 1)``
with the constant slot last, ``f̂ = f C`` (REFERENCES §5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


class Moments:
    """Streaming mean and covariance of one node layer (shifted sums, so no cancellation)."""

    def __init__(self, width: int, device, dtype):
        self.n = 0
        self.shift: Tensor | None = None
        self.s1 = torch.zeros(width, device=device, dtype=dtype)
        self.s2 = torch.zeros(width, width, device=device, dtype=dtype)

    def update(self, x: Tensor) -> None:
        if self.shift is None:
            self.shift = x.mean(0)
        y = x - self.shift
        self.n += x.shape[0]
        self.s1 += y.sum(0)
        self.s2 += y.T @ y

    @property
    def mean(self) -> Tensor:
        return self.shift + self.s1 / self.n

    @property
    def cov(self) -> Tensor:
        m = self.s1 / self.n
        c = self.s2 / self.n - torch.outer(m, m)
        return (c + c.T) / 2

    def raw_gram(self) -> Tensor:
        """``G = E[fᵀ f]`` of the homogeneous ``f = (x, 1)``, shape ``(d + 1, d + 1)``."""
        mu = self.mean
        d = mu.shape[0]
        g = torch.empty(d + 1, d + 1, dtype=mu.dtype, device=mu.device)
        g[:d, :d] = self.cov + torch.outer(mu, mu)
        g[:d, d] = mu
        g[d, :d] = mu
        g[d, d] = 1.0
        return g


def eigh_desc(a: Tensor) -> tuple[Tensor, Tensor]:
    """Eigen-decomposition of a symmetric matrix, eigenvalues descending."""
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return w.flip(0), v.flip(1)


def keep_mask(values: Tensor, threshold: float) -> Tensor:
    """Eigenvalues kept: ``λ > threshold · max λ`` (none if all are ≤ 0)."""
    top = values.max() if values.numel() else values.new_tensor(0.0)
    if top <= 0:
        return torch.zeros_like(values, dtype=torch.bool)
    return values > threshold * top


@dataclass(frozen=True)
class PCABasis:
    """``B = Y U`` and ``B⁺ = Uᵀ Y⁻¹`` with Gram eigenvalues ``D`` (kept only)."""

    basis: Tensor  # (d + 1, r)
    pinv: Tensor  # (r, d + 1)
    eigenvalues: Tensor  # (r,)


def pca_basis(mom: Moments, center: bool, threshold: float) -> PCABasis:
    """Eigenbasis of the (centered) Gram of ``f = (x, 1)``.

    With ``center``, ``f Y = (x - μ, 1)`` has the block-diagonal Gram ``diag(Σ, 1)``: the constant
    direction comes first with ``D = 1``, then the principal directions of ``Σ`` (kept if
    ``D > threshold · max D_Σ``).  Without ``center`` the raw Gram is diagonalised as a whole.
    """
    mu = mom.mean
    d = mu.shape[0]
    if center:
        dc, uc = eigh_desc(mom.cov)
        keep = keep_mask(dc, threshold)
        dc, uc = dc[keep], uc[:, keep]
        r = uc.shape[1] + 1
        basis = torch.zeros(d + 1, r, dtype=mu.dtype, device=mu.device)
        pinv = torch.zeros(r, d + 1, dtype=mu.dtype, device=mu.device)
        basis[d, 0] = 1.0  # Y e_c = e_c
        basis[:d, 1:] = uc
        basis[d, 1:] = -(mu @ uc)  # Y (u, 0) = (u, -μ·u)
        pinv[0, :d] = mu  # e_cᵀ Y⁻¹ = (μ, 1)
        pinv[0, d] = 1.0
        pinv[1:, :d] = uc.T
        vals = torch.cat([dc.new_ones(1), dc])
        return PCABasis(basis, pinv, vals)
    dr, ur = eigh_desc(mom.raw_gram())
    keep = keep_mask(dr, threshold)
    return PCABasis(ur[:, keep], ur[:, keep].T, dr[keep])


@dataclass(frozen=True)
class Rotation:
    C: Tensor  # (d + 1, k)
    C_pinv: Tensor  # (k, d + 1)
    eigenvalues: Tensor  # (k,) kept Λ, descending
    all_eigenvalues: Tensor  # (r,) Λ before truncation


def interaction_rotation(pca: PCABasis, mdash: Tensor, threshold: float) -> Rotation:
    """``C = Y U D^{-1/2} V Λ^{1/2}`` and ``C⁺ = Λ^{-1/2} Vᵀ D^{1/2} Uᵀ Y⁻¹``.

    ``M = D^{1/2} Uᵀ Y⁻¹ M' Y⁻ᵀ U D^{1/2} = V Λ Vᵀ``; directions with
    ``Λ ≤ threshold · max Λ`` are dropped.
    """
    sq = pca.eigenvalues.sqrt()
    w_pinv = sq[:, None] * pca.pinv  # D^{1/2} Uᵀ Y⁻¹
    w = pca.basis / sq  # Y U D^{-1/2}
    lam, v = eigh_desc(w_pinv @ mdash @ w_pinv.T)
    lam = lam.clamp_min(0.0)  # M is PSD; negatives are round-off
    keep = keep_mask(lam, threshold)
    lk, vk = lam[keep], v[:, keep]
    c = (w @ vk) * lk.sqrt()
    c_pinv = (vk.T @ w_pinv) / lk.sqrt()[:, None]
    return Rotation(c, c_pinv, lk, lam)


def output_rotation(mom: Moments, rotate: bool) -> Rotation:
    """Basis of the output node layer: the outputs, or their uncentered eigenbasis.

    ``C = (U; 0)`` with ``E[y yᵀ] = U diag(λ) Uᵀ`` (``U = I`` without ``rotate``); orthogonal, so
    ``C⁺ = (Uᵀ, 0)`` and every earlier layer is unchanged by the rotation.  ``eigenvalues`` are
    those of ``E[y yᵀ]`` in both cases.
    """
    g = mom.raw_gram()[:-1, :-1]
    d = g.shape[0]
    lam, u = eigh_desc(g)
    lam = lam.clamp_min(0.0)
    if not rotate:
        u = torch.eye(d, dtype=g.dtype, device=g.device)
    c = torch.cat([u, u.new_zeros(1, d)], dim=0)
    return Rotation(c, c.T.contiguous(), lam, lam)


def quadrature(integration: str, n_points: int, device, dtype) -> tuple[Tensor, Tensor]:
    """Nodes ``α_q`` and weights ``w_q`` on ``[0, 1]`` for the path integral in α.

    The trapezoid node ``α = 0`` is evaluated at ``α = 1e-8`` (the right-hand limit), because
    piecewise-linear activations have their kink at the origin.
    """
    if integration == "gradient":
        a, w = np.ones(1), np.ones(1)
    elif integration == "trapezoid":
        a = np.linspace(0.0, 1.0, n_points)
        w = np.full(n_points, 1.0 / (n_points - 1))
        w[[0, -1]] /= 2
        a[0] = 1e-8
    else:
        t, wt = np.polynomial.legendre.leggauss(n_points)
        a, w = (t + 1) / 2, wt / 2
    return (torch.as_tensor(a, device=device, dtype=dtype),
            torch.as_tensor(w, device=device, dtype=dtype))
