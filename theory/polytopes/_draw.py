"""Drawing of an enumerated 2-D region partition (private).

Takes the enumeration by its attributes (``lower``, ``upper``, iteration over regions with
``vertices``, ``code``, ``out_A``, ``out_c``, ``interior_point``) and imports no data module, so
that :meth:`RegionEnumeration.plot` can call it without an import circle.
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw_regions"]

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
