"""Plots of an :class:`~theory.interaction.InteractionBasis` (private helper)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def plot_spectrum(lib, ax=None) -> Figure:
    """``Λ`` (interaction) and ``D`` (PCA) per node layer, log scale, normalised to their max."""
    n = len(lib.layers)
    if ax is None:
        fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.0), squeeze=False)
        axes = axes[0]
    else:
        axes = np.atleast_1d(ax)
        if len(axes) != n:
            raise ValueError(f"ax must hold {n} axes (one per node layer), got {len(axes)}")
        fig = axes[0].figure
    for i, (a, lb) in enumerate(zip(axes, lib.layers)):
        for vals, label, style in (
            (lb.eigenvalues, "interaction Λ", "o-"),
            (lb.pca_eigenvalues, "PCA D", "s--"),
        ):
            v = vals.detach().cpu().double().numpy()
            v = v[v > 0]
            if v.size:
                a.semilogy(np.arange(1, v.size + 1), v / v.max(), style, ms=3, label=label)
        name = "inputs" if i == 0 else ("outputs" if lb.is_output else f"node layer {i}")
        a.set_title(f"{name}: kept {lb.n_kept}/{lb.width + 1}")
        a.set_xlabel("index")
    axes[0].set_ylabel("eigenvalue / max")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_graph(lib, max_nodes: int = 12, ax=None) -> Figure:
    """Node layers as columns, the top ``max_nodes`` features of each; line width ∝ edge."""
    if isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1:
        raise ValueError(f"max_nodes must be a positive int, got {max_nodes!r}")
    if any(lb.edges is None for lb in lib.layers[:-1]):
        raise ValueError("plot_graph needs edges: call interaction_basis(..., edges=True)")
    if ax is None:
        fig, ax = plt.subplots(figsize=(2.2 * len(lib.layers) + 1, 4.5))
    else:
        fig = ax.figure
    sizes = [min(lb.n_kept, max_nodes) for lb in lib.layers]
    ys = [np.linspace(1, 0, s) if s > 1 else np.array([0.5]) for s in sizes]
    for col, lb in enumerate(lib.layers[:-1]):
        e = lb.edges.detach().cpu().double().numpy()[: sizes[col + 1], : sizes[col]]
        top = e.max() if e.size and e.max() > 0 else 1.0
        for i in range(e.shape[0]):
            for j in range(e.shape[1]):
                w = e[i, j] / top
                if w > 1e-3:
                    ax.plot([col, col + 1], [ys[col][j], ys[col + 1][i]], color="tab:blue",
                            lw=3 * w, alpha=min(1.0, 0.15 + w))
    for col, y in enumerate(ys):
        ax.scatter(np.full(len(y), col), y, s=30, color="black", zorder=3)
    ax.set_xticks(range(len(lib.layers)))
    ax.set_xticklabels(
        ["inputs"] + [f"layer {i}" for i in range(1, len(lib.layers) - 1)] + ["outputs"]
    )
    ax.set_yticks([])
    ax.set_title(f"interaction graph (top {max_nodes} features per layer, edges ∝ E_ij)")
    fig.tight_layout()
    return fig
