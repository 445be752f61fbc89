"""Picture of the exact linear-region partition of a 2-D input box.

Enumerates the regions (:mod:`.enumeration`) and draws them (:mod:`._draw`, which
:meth:`RegionEnumeration.plot` also uses).
"""

from __future__ import annotations

import numpy as np

from ._draw import draw_regions
from .enumeration import enumerate_regions

__all__ = ["plot_regions_2d"]


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
    lo = np.atleast_1d(np.asarray(lower, dtype=float))
    if lo.shape != (2,):
        raise ValueError(f"lower must have shape (2,) for a 2-D plot, got {lo.shape}")
    enum = enumerate_regions(model, lower, upper, progress=progress, **enumerate_kwargs)
    return draw_regions(enum, ax=ax, color_by=color_by, cmap=cmap)
