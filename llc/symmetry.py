"""Moves along the symmetry orbits of a network's parameters.

Two consecutive linear layers joined by the identity (any two ``nn.Linear`` of an
``nn.Sequential`` with nothing between them, as in a deep linear network) compute the same
function for every invertible matrix A of their inner width k:

    W_l → A W_l,    b_l → A b_l,    W_{l+1} → W_{l+1} A⁻¹.

The loss is constant along such an orbit, so a Metropolis–Hastings move along it needs no
model evaluation. The potential ``U(w) = nβ L(w) + (γ/2)‖w − w*‖²`` changes by its localization
term alone, and the map ``w → A·w`` is linear with Jacobian ``|det A|^(m_l + [b_l] − n_{l+1})``
(``m_l`` the input width of layer l, ``[b_l]`` 1 if it has a bias, ``n_{l+1}`` the output width of
layer l+1).

Why: the localized posterior of a deep network is a funnel. Weights that spread along a flat
direction make the weights downstream of them stiffer, so every step set by the local curvature
shrinks on the way out, and gradient samplers started at w* stay where the posterior is
narrow, which biases λ̂ low (``docs/design.md``). The orbit moves cross the funnel at no
gradient cost; SGLD, re-warmed at the points they reach, then measures.

Notes
-----
A move on link l draws ``X`` with i.i.d. ``N(0, s_l²/k)`` entries and sets A to its Cayley
transform ``A = (I − X/2)⁻¹ (I + X/2)``, whose inverse is the transform of −X, so A and A⁻¹ are
equally likely: the proposal is symmetric under inversion. It is accepted with probability

    min(1, exp(−(γ/2)(‖A·w − w*‖² − ‖w − w*‖²)) |det A|^(m_l + [b_l] − n_{l+1})).

Two LU factorizations give A, A⁻¹ and ``log |det A|``, in float64 (a third of the cost of
``exp(±X)`` by :func:`torch.linalg.matrix_exp`, measured at k = 60). The scale ``s_l`` is
adapted to an acceptance of :data:`TARGET_ACCEPTANCE` (:mod:`llc.adaptation.orbit_scale`).

References
----------
.. [1] J. S. Liu and C. Sabatti, "Generalised Gibbs sampler and multigrid Monte Carlo for
   Bayesian computation", Biometrika 87 (2000) 353–369 (moves along a group acting on the
   state space, with the Jacobian in the acceptance).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["TARGET_ACCEPTANCE", "Link", "cayley", "linear_links", "move", "propose"]

TARGET_ACCEPTANCE = 0.3


@dataclass(frozen=True)
class Link:
    """Two consecutive linear layers joined by the identity, as columns of the flat
    ``(chain, D)`` parameters.

    Attributes
    ----------
    weight, next_weight : slice
        The columns of ``W_l`` (shape ``shape``) and ``W_{l+1}`` (shape ``next_shape``).
    shape, next_shape : tuple of int
        ``(out, in)`` of each weight, as ``nn.Linear`` stores them.
    bias : slice or None
        The columns of ``b_l``.
    """

    weight: slice
    shape: tuple[int, int]
    bias: slice | None
    next_weight: slice
    next_shape: tuple[int, int]

    @property
    def width(self) -> int:
        """k, the inner width that A acts on."""
        return self.shape[0]

    @property
    def jacobian_power(self) -> int:
        """``m_l + [b_l] − n_{l+1}``: ``log |J| = jacobian_power · log |det A|``."""
        return self.shape[1] + (self.bias is not None) - self.next_shape[0]


def linear_links(layers) -> tuple[Link, ...]:
    """The links of an MLP's layers (each with ``weight``, ``shape``, ``bias``, ``act``; the
    activation after layer l, None for the identity): every layer without an activation that
    is followed by another layer."""
    return tuple(
        Link(a.weight, a.shape, a.bias, b.weight, b.shape)
        for a, b in zip(layers, layers[1:])
        if a.act is None
    )


def propose(gen: torch.Generator, num_chains: int, link: Link, scale: float, device):
    """``(X, log u)``: the algebra element, shape (chain, k, k), float64, and the log of the
    uniform that decides acceptance, shape (chain,)."""
    k = link.width
    # drawn in float32, half the cost of float64 draws: any symmetric law keeps the moves exact
    x = torch.randn(num_chains, k, k, generator=gen, device=device).double()
    log_u = torch.rand(num_chains, generator=gen, device=device, dtype=torch.float64).log()
    return x.mul_(scale / k**0.5), log_u


def move(position, link: Link, x, log_u, center, localization):
    """One Metropolis–Hastings move of every chain along the orbit of ``link`` (pure).

    Parameters
    ----------
    position : Tensor, shape (chain, D)
    link : Link
    x : Tensor, shape (chain, k, k), float64
        The algebra element whose Cayley transform is A (from :func:`propose`).
    log_u : Tensor, shape (chain,), float64
    center : Tensor, shape (D,)
        w*.
    localization : float or Tensor of shape (chain, 1)
        γ.

    Returns
    -------
    (Tensor, Tensor)
        The new positions (a new tensor) and which chains accepted, shape (chain,) bool.
    """
    c, dtype = position.shape[0], position.dtype
    a, inv, log_det = cayley(x)
    w = _block(position, link.weight, link.shape)
    wn = _block(position, link.next_weight, link.next_shape)
    new_w, new_wn = a.to(dtype) @ w, wn @ inv.to(dtype)
    parts = [(new_w, w, center[link.weight].view(link.shape)),
             (new_wn, wn, center[link.next_weight].view(link.next_shape))]  # fmt: skip
    if link.bias is not None:
        b = position[:, link.bias].unsqueeze(-1)
        new_b = a.to(dtype) @ b
        parts.append((new_b, b, center[link.bias].unsqueeze(-1)))
    d_sq = sum(_sq(new, ref) - _sq(old, ref) for new, old, ref in parts)
    gamma = localization.reshape(-1).double() if torch.is_tensor(localization) else localization
    log_ratio = -0.5 * gamma * d_sq + link.jacobian_power * log_det
    accepted = log_u < log_ratio  # False for a non-finite position: NaN compares False
    keep = accepted.to(dtype).view(c, 1, 1)
    out = position.clone()
    out[:, link.weight] = (keep * new_w + (1 - keep) * w).flatten(1)
    out[:, link.next_weight] = (keep * new_wn + (1 - keep) * wn).flatten(1)
    if link.bias is not None:
        out[:, link.bias] = (keep * new_b + (1 - keep) * b).flatten(1)
    return out, accepted


def cayley(x):
    """``(A, A⁻¹, log |det A|)`` for ``A = (I − X/2)⁻¹ (I + X/2)``, float64 (singular factors
    give non-finite values, which :func:`move` rejects)."""
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    minus, plus = eye - 0.5 * x, eye + 0.5 * x
    lu_m, piv_m, _ = torch.linalg.lu_factor_ex(minus)
    lu_p, piv_p, _ = torch.linalg.lu_factor_ex(plus)
    a = torch.linalg.lu_solve(lu_m, piv_m, plus)
    inv = torch.linalg.lu_solve(lu_p, piv_p, minus)
    log_det = _log_abs_diag(lu_p) - _log_abs_diag(lu_m)
    return a, inv, log_det


def _log_abs_diag(lu):
    return lu.diagonal(dim1=-2, dim2=-1).abs().log().sum(-1)


def _block(position, cols: slice, shape: tuple[int, int]):
    return position[:, cols].reshape(position.shape[0], *shape)


def _sq(m, ref):
    return ((m - ref) ** 2).flatten(1).sum(1).double()
