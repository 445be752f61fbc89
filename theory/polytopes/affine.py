"""The affine map of the region containing a point, and the distance to its boundary."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._network import PLNet, as_points, net_for, torch_layers

__all__ = ["LocalAffineMap", "local_affine_map", "distance_to_boundary"]


@dataclass(frozen=True)
class LocalAffineMap:
    """Affine maps valid on the linear region containing each input.

    Leading batch shape ``B`` is ``(N,)`` for inputs of shape (N, d) and ``()`` for
    a single point of shape (d,).  All tensors are float64 on the input's device.

    Attributes
    ----------
    A : Tensor, shape (*B, out, d)
        Output Jacobian on the region: ``model(x') = A x' + c`` for x' in the region.
    c : Tensor, shape (*B, out)
    pre_A : Tensor, shape (*B, H, d)
        Row i is ``a_i``: neuron i's pre-activation is ``a_i·x' + c_i`` on the region.
    pre_c : Tensor, shape (*B, H)
    code : Tensor of bool, shape (*B, H)
        Polytope code ``1[a_i·x + c_i > 0]``.
    widths : tuple of int
        Hidden layer widths (to split the H neurons by layer).
    """

    A: torch.Tensor
    c: torch.Tensor
    pre_A: torch.Tensor
    pre_c: torch.Tensor
    code: torch.Tensor
    widths: tuple[int, ...]

    def evaluate_pre(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``pre_A x + pre_c`` of the stored maps at points ``x``
        (valid only while x stays in the same region), shape (*B, H)."""
        x = x.to(self.pre_A)
        return (self.pre_A @ x.unsqueeze(-1)).squeeze(-1) + self.pre_c


def _local_maps(net: PLNet, x: torch.Tensor):
    """Propagate (value, Jacobian) through the net; x: (N, d) float64."""
    n, d = x.shape
    J = torch.eye(d, dtype=torch.float64, device=x.device).expand(n, d, d)
    c = torch.zeros(n, d, dtype=torch.float64, device=x.device)
    h = x
    pre_A, pre_c, codes = [], [], []
    layers = torch_layers(net, x.device)
    for W, b, alpha in layers[:-1]:
        zA = W @ J  # (N, k, d)
        zc = c @ W.T + b
        z = h @ W.T + b
        on = z > 0
        s = torch.where(on, torch.ones_like(z), alpha.expand_as(z))
        pre_A.append(zA)
        pre_c.append(zc)
        codes.append(on)
        J = s.unsqueeze(-1) * zA
        c = s * zc
        h = s * z
    W, b, _ = layers[-1]
    A = W @ J
    cc = c @ W.T + b
    if pre_A:
        return A, cc, torch.cat(pre_A, 1), torch.cat(pre_c, 1), torch.cat(codes, 1)
    empty = torch.zeros(n, 0, dtype=torch.float64, device=x.device)
    return A, cc, empty.unsqueeze(-1).expand(n, 0, d), empty, empty.bool()


def local_affine_map(model, x) -> LocalAffineMap:
    """The affine map ``(A, c)`` of the region containing ``x``, and every neuron's
    pre-activation as an affine function of the input on that region.

    Parameters
    ----------
    model : nn.Module
        ReLU/LeakyReLU/PReLU MLP (see :func:`activation_codes`).
    x : Tensor, shape (N, d) or (d,)

    Returns
    -------
    LocalAffineMap
        float64 tensors on x's device.

    Notes
    -----
    With ``D_l = diag(s_l)``, ``s_l = 1`` on active units and the negative slope
    (0 for ReLU) otherwise, the Jacobians obey ``J_0 = I``, ``c_0 = 0`` and

    .. math::
        a^{(l)} = W_l J_{l-1},\\quad c^{(l)} = W_l c_{l-1} + b_l,\\quad
        J_l = D_l a^{(l)},\\quad c_l = D_l c^{(l)},

    so that on the region ``z_l(x') = a^{(l)} x' + c^{(l)}`` and
    ``f(x') = W_{L+1} J_L x' + W_{L+1} c_L + b_{L+1}``.

    References
    ----------
    Black et al., arXiv:2211.12312 (2022).
    """
    xt = as_points(x, "x")
    net = net_for(model, xt, "x")
    single = xt.ndim == 1
    x2 = xt.to(torch.float64).reshape(-1, xt.shape[-1])
    A, c, pA, pc, code = _local_maps(net, x2)
    if single:
        A, c, pA, pc, code = A[0], c[0], pA[0], pc[0], code[0]
    return LocalAffineMap(A=A, c=c, pre_A=pA, pre_c=pc, code=code, widths=net.widths)


def distance_to_boundary(model, x, return_index: bool = False):
    """Exact Euclidean distance from ``x`` to the boundary of its linear region.

    Parameters
    ----------
    model : nn.Module
        ReLU/LeakyReLU/PReLU MLP.
    x : Tensor, shape (N, d) or (d,)
    return_index : bool
        Also return the index (into the concatenated code) of the nearest neuron
        boundary (-1 when no neuron depends on x on the region).

    Returns
    -------
    Tensor, shape (N,) or ()
        float64 distances (``inf`` when every pre-activation is constant on the
        region); with ``return_index`` a pair (distances, indices).

    Notes
    -----
    The region of x is the convex polyhedron ``∩_i {s_i (a_i·x' + c_i) ≥ 0}``, so
    for x in its interior the distance to its boundary is that to the nearest
    bounding hyperplane:

    .. math:: d(x) = \\min_{i : a_i \\ne 0} \\frac{|a_i·x + c_i|}{\\lVert a_i \\rVert}.

    The ball of that radius lies in every half-space, and its touching point with
    the nearest hyperplane is on the region's boundary.  ``d = 0`` on a boundary.

    References
    ----------
    Black et al., arXiv:2211.12312 (2022): distance to the polytope boundary.
    """
    m = local_affine_map(model, x)
    pA, pc = m.pre_A, m.pre_c
    xt = as_points(x, "x").to(pA)
    z = (pA @ xt.unsqueeze(-1)).squeeze(-1) + pc
    norms = torch.linalg.vector_norm(pA, dim=-1)
    # a_i = 0: the unit is constant on the region and bounds nothing
    scale = norms.amax(dim=-1, keepdim=True) if norms.shape[-1] else norms
    live = norms > 1e-13 * scale.clamp_min(1e-300)
    dist = torch.where(live, z.abs() / norms.clamp_min(1e-300), torch.full_like(z, float("inf")))
    if dist.shape[-1] == 0:
        d = torch.full(dist.shape[:-1], float("inf"), dtype=torch.float64, device=dist.device)
        idx = torch.full(dist.shape[:-1], -1, dtype=torch.long, device=dist.device)
    else:
        d, idx = dist.min(dim=-1)
        idx = torch.where(torch.isfinite(d), idx, torch.full_like(idx, -1))
    return (d, idx) if return_index else d
