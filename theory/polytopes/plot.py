"""Picture of the exact linear-region partition of a 2-D input box."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_regions_2d"]

_COLOR_BY = ("region", "n_active", "output")


def draw_regions(enum, ax=None, color_by: str = "region", cmap: str = "tab20", edge: bool = True):
    """Draw a 2-D :class:`RegionEnumeration`; returns the Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    if enum.lower.shape[0] != 2:
        raise ValueError(f"plotting needs a 2-D input box, got d={enum.lower.shape[0]}")
    if color_by not in _COLOR_BY:
        raise ValueError(f"color_by must be one of {_COLOR_BY}, got {color_by!r}")
    fig = ax.figure if ax is not None else plt.figure(figsize=(4.8, 4.2))
    ax = ax if ax is not None else fig.add_subplot(111)
    polys = [r.vertices for r in enum]
    cm = plt.get_cmap(cmap)
    if color_by == "region":
        # neighbours in DFS order are often adjacent: scatter the colour indices
        idx = (np.arange(len(polys)) * 7919) % max(getattr(cm, "N", 256), 1)
        colors = cm(idx % getattr(cm, "N", 256))
        coll = PolyCollection(polys, facecolors=colors)
    else:
        if color_by == "n_active":
            val = np.array([r.code.sum() for r in enum], dtype=float)
        else:  # first output at the interior point
            val = np.array([r.out_A[0] @ r.interior_point + r.out_c[0] for r in enum])
        coll = PolyCollection(polys, array=val, cmap=cm)
        fig.colorbar(coll, ax=ax, label="active units" if color_by == "n_active" else "output[0]")
    coll.set_edgecolor("k" if edge else "face")
    coll.set_linewidth(0.3 if edge else 0.0)
    ax.add_collection(coll)
    ax.set_xlim(enum.lower[0], enum.upper[0])
    ax.set_ylim(enum.lower[1], enum.upper[1])
    ax.set_aspect("equal")
    ax.set_title(f"{len(enum)} linear regions")
    return fig


def plot_regions_2d(
    model,
    lower,
    upper,
    *,
    ax=None,
    color_by: str = "region",
    cmap: str = "tab20",
    progress: bool = False,
    **enumerate_kwargs,
):
    """Draw the exact partition of a 2-D box into the model's linear regions.

    Parameters
    ----------
    model : nn.Module
        ReLU/LeakyReLU/PReLU MLP with 2 inputs.
    lower, upper : array-like, shape (2,)
    ax : matplotlib Axes, optional
    color_by : {"region", "n_active", "output"}
        Distinct colours per region, number of active units, or the first output
        at the region's interior point.
    cmap : str
    progress : bool
    **enumerate_kwargs
        Passed to :func:`enumerate_regions` (``method``, ``tol``, ``max_regions``).

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    The polygons are the exact regions (vertices from the enumeration), not a
    rasterised code map.
    """
    from .enumeration import enumerate_regions

    lo = np.atleast_1d(np.asarray(lower, dtype=float))
    if lo.shape != (2,):
        raise ValueError(f"lower must have shape (2,) for a 2-D plot, got {lo.shape}")
    enum = enumerate_regions(model, lower, upper, progress=progress, **enumerate_kwargs)
    return draw_regions(enum, ax=ax, color_by=color_by, cmap=cmap)
