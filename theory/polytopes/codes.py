"""Polytope codes: the sign pattern of every hidden neuron (Black et al. 2022)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._network import PLNet, as_points, net_for, torch_layers

__all__ = ["activation_codes", "count_regions", "RegionCount"]


def _forward(net: PLNet, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Pre-activations of every hidden layer and the output, float64, on x's device."""
    h = x.to(torch.float64)
    pres = []
    layers = torch_layers(net, x.device)
    for W, b, alpha in layers[:-1]:
        z = h @ W.T + b
        pres.append(z)
        h = torch.where(z > 0, z, alpha * z)
    W, b, _ = layers[-1]
    return pres, h @ W.T + b


def activation_codes(model, x) -> torch.Tensor:
    """Polytope code of each input: the concatenated per-layer sign patterns.

    Parameters
    ----------
    model : nn.Module or list of modules
        ``nn.Sequential`` / ``nn.ModuleList`` (nesting allowed) of ``nn.Linear`` and
        ``nn.ReLU`` / ``nn.LeakyReLU`` / ``nn.PReLU`` layers (``Identity``,
        ``Flatten`` and ``Dropout`` are read as no-ops, i.e. eval mode).  Activations
        with two breakpoints (``ReLU6``, ``Hardtanh``, ...) raise ``TypeError``:
        their codes would be ternary; rewrite them with ReLUs.  Smooth activations
        raise ``TypeError``.  The model is not modified.
    x : Tensor, shape (N, d) or (d,)
        Inputs.

    Returns
    -------
    Tensor of bool, shape (N, H) or (H,), on x's device
        ``H`` is the total number of hidden units, layers in order.

    Notes
    -----
    With pre-activations ``z_l = W_l h_{l-1} + b_l`` computed in float64,

    .. math:: \\mathrm{code}(x) = (1[z_1 > 0], \\dots, 1[z_L > 0]).

    Each code's input region ``{x : code(x) = s}`` is convex: it is
    ``∩_i {s_i (a_i·x + c_i) > 0}`` (``≤ 0`` for ``s_i = 0``) with ``(a_i, c_i)``
    neuron i's pre-activation as an affine function of x on the region.

    References
    ----------
    Black et al., "Interpreting Neural Networks through the Polytope Lens",
    arXiv:2211.12312 (2022).
    """
    xt = as_points(x, "x")
    net = net_for(model, xt, "x")
    pres, _ = _forward(net, xt)
    if not pres:
        return torch.zeros((*xt.shape[:-1], 0), dtype=torch.bool, device=xt.device)
    return torch.cat([z > 0 for z in pres], dim=-1)


@dataclass(frozen=True)
class RegionCount:
    """Distinct polytope codes met by a data set.

    Attributes
    ----------
    n_regions : int
        Number of distinct codes (a lower bound on the regions meeting the data).
    codes : Tensor of bool, shape (R, H)
        The distinct codes, most populated first.
    counts : Tensor of int64, shape (R,)
        Points per code (the code histogram), decreasing.
    inverse : Tensor of int64, shape (N,)
        Index into ``codes`` of each point.
    n_points : int
        Number of points N.
    """

    n_regions: int
    codes: torch.Tensor
    counts: torch.Tensor
    inverse: torch.Tensor
    n_points: int

    @property
    def singleton_fraction(self) -> float:
        """Fraction of codes met by exactly one point (near 1: the count is far
        from saturated and the true number of regions is likely much larger)."""
        return float((self.counts == 1).sum()) / max(self.n_regions, 1)

    def plot(self, ax=None):
        """Rank-ordered code histogram (log-log); returns the Figure."""
        import matplotlib.pyplot as plt

        fig = ax.figure if ax is not None else plt.figure(figsize=(4.5, 3.2))
        ax = ax if ax is not None else fig.add_subplot(111)
        c = self.counts.cpu().numpy()
        ax.loglog(range(1, len(c) + 1), c, marker=".", lw=1)
        ax.set_xlabel("region rank")
        ax.set_ylabel("points in region")
        ax.set_title(f"{self.n_regions} codes met by {self.n_points} points")
        return fig


def count_regions(model, x) -> RegionCount:
    """Count the distinct polytope codes met by data ``x``, with the histogram.

    Parameters
    ----------
    model : nn.Module
        A ReLU/LeakyReLU/PReLU MLP (see :func:`activation_codes`).
    x : Tensor, shape (N, d)
        Data points.

    Returns
    -------
    RegionCount

    Notes
    -----
    ``n_regions = |{code(x_n) : n = 1..N}|``.  Each code's region is convex, hence
    connected, so this is a lower bound on the number of linear regions that meet
    the support of the data; :func:`enumerate_regions` gives the exact count in a box.
    """
    xt = as_points(x, "x")
    if xt.ndim == 1:
        xt = xt[None]
    codes = activation_codes(model, xt)
    if codes.shape[1] == 0:  # no hidden unit: one region
        n = codes.shape[0]
        idx = torch.zeros(n, dtype=torch.long, device=codes.device)
        return RegionCount(1, codes[:1], torch.tensor([n], device=codes.device), idx, n)
    uniq, inverse, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    order = torch.argsort(counts, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    return RegionCount(
        n_regions=int(uniq.shape[0]),
        codes=uniq[order],
        counts=counts[order],
        inverse=rank[inverse],
        n_points=int(xt.shape[0]),
    )
