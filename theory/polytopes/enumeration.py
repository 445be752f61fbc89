"""Exact enumeration of the linear regions of a ReLU network inside a box."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from ._dfs import enumerate_lp, enumerate_polygon
from ._draw import draw_regions
from ._lp import BACKENDS, LPSolver
from ._network import check_box, model_in_dim, parse_model
from ._region import Region
from .bounds import arrangement_regions

__all__ = ["Region", "RegionEnumeration", "enumerate_regions"]

_METHODS = ("auto", "lp", "polygon")
# Regions each method enumerates in about a minute (bench/polytopes_speed.py; an LP region costs
# ~1-10 ms, more in high dimension): above, max_regions must be given.
REGION_LIMIT = {"lp": 20_000, "polygon": 1_000_000}


def estimated_regions(net, lo: np.ndarray, hi: np.ndarray) -> tuple[int, int]:
    """``(Σ_{i≤d} C(m, i), m)``: m first-layer hyperplanes that cut the box, in general position.

    Exact for one hidden layer in general position when the box holds every bounded region
    (Zaslavsky), otherwise an upper bound for that layer; deeper layers only split regions.
    """
    if not net.slopes:
        return 1, 0
    w, b = net.weights[0], net.biases[0]
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    reach = np.abs(w) @ half
    cut = int(((reach > 0) & (np.abs(w @ mid + b) < reach)).sum())
    return arrangement_regions(cut, lo.shape[0]), cut


@dataclass(frozen=True)
class RegionEnumeration:
    """The linear regions of a network inside the box ``[lower, upper]``.

    Behaves as a sequence of :class:`Region` (``len``, indexing, iteration).

    Attributes
    ----------
    regions : tuple of Region
    lower, upper : ndarray, shape (d,)
    method : str
        ``"lp"`` or ``"polygon"`` (the one actually used).
    lp_backend : str
        ``"highs"`` or ``"linprog"`` (the one actually used).
    tol : float
        Relative tolerance; ``tol_abs = tol · max(upper − lower)`` is the smallest
        inradius a region must have to be reported.
    n_lp : int
        Linear programs solved.
    n_nodes : int
        Search-tree nodes visited.
    n_dropped : int
        Cells discarded as thinner than ``tol_abs`` after the search.
    seconds : float
        Wall time.
    truncated : bool
        True when the search stopped on reaching ``max_regions`` (more regions
        may exist: the count is then a lower bound).
    """

    regions: tuple[Region, ...]
    lower: np.ndarray
    upper: np.ndarray
    method: str
    lp_backend: str
    tol: float
    n_lp: int
    n_nodes: int
    n_dropped: int
    seconds: float
    truncated: bool

    def __len__(self) -> int:
        return len(self.regions)

    def __getitem__(self, i):
        return self.regions[i]

    def __iter__(self) -> Iterator[Region]:
        return iter(self.regions)

    @property
    def n_regions(self) -> int:
        return len(self.regions)

    @property
    def codes(self) -> np.ndarray:
        """Codes of all regions, shape (R, H), bool."""
        if not self.regions:
            return np.zeros((0, 0), dtype=bool)
        return np.stack([r.code for r in self.regions])

    def plot(self, ax=None, color_by: str = "region", cmap: str = "tab20"):
        """Draw the 2-D partition (see :func:`plot_regions_2d`); returns the Figure."""
        return draw_regions(self, ax=ax, color_by=color_by, cmap=cmap)


def enumerate_regions(
    model,
    lower,
    upper,
    *,
    method: str = "auto",
    tol: float = 1e-7,
    max_regions: int | None = None,
    bbox_lp: bool = False,
    lp_backend: str = "highs",
    progress: bool = True,
) -> RegionEnumeration:
    """Exact enumeration of the linear regions of ``model`` inside a box.

    Parameters
    ----------
    model : nn.Module
        MLP of ``nn.Linear`` and ``nn.ReLU`` / ``nn.LeakyReLU`` / ``nn.PReLU``.
    lower, upper : array-like, shape (d,)
        The box; ``lower < upper`` in every coordinate.
    method : {"auto", "lp", "polygon"}
        ``"lp"``: depth-first search over sign patterns with HiGHS LP feasibility
        checks, any d.  ``"polygon"``: exact convex-polygon splitting, d = 2 only,
        no LP.  ``"auto"``: polygon for d = 2, lp otherwise.
    tol : float
        Relative tolerance: cells whose inscribed ball has radius below
        ``tol · max(upper − lower)`` are treated as empty (they are slivers at the
        scale of the solver's tolerances).
    max_regions : int, optional
        Stop after this many regions (``truncated=True`` in the result).  Required when the
        first layer alone makes more than 20,000 regions in the box (``lp``; 10^6 for
        ``polygon``): see Notes.
    bbox_lp : bool
        ``lp`` only.  Every split cell gets an outer box by bound propagation
        (free), and units whose hyperplane misses that box are fixed without an
        LP; with ``bbox_lp=True`` the box is tightened by 2d extra LPs per split
        (fewer unit LPs, more box LPs: see ``bench/polytopes_speed.py``).
    lp_backend : {"highs", "linprog"}
        ``"highs"`` reuses one ``highspy.Highs`` instance (fast, ~0.2 ms per small
        LP); ``"linprog"`` goes through ``scipy.optimize.linprog(method="highs")``
        (same solver, ~1.4 ms per LP).  ``"highs"`` falls back to linprog when
        highspy is not importable.
    progress : bool
        tqdm bar over the regions found.

    Returns
    -------
    RegionEnumeration
        One :class:`Region` per region: code, H-representation, interior point,
        exact inradius-at-that-point, local affine map and (2-D) vertices.

    Notes
    -----
    A partial code fixes units in order (layer by layer).  Given layers < l fixed,
    unit i of layer l has pre-activation ``a_i·x + c_i`` on the cell, and the cell
    of a partial code ``s`` is ``∩_i {s_i (a_i·x + c_i) ≥ 0} ∩ box``
    (``s_i = ±1``).  A partial code is kept iff its cell has interior, checked by

    .. math:: \\max t \\;\\text{s.t.}\\; s_i(\\hat a_i·x + \\hat c_i) \\ge t,\\;
              \\text{lower} + t \\le x \\le \\text{upper} - t

    with unit-norm rows (so t is the Chebyshev radius), keeping it iff
    ``t* > tol_abs``.  Infeasible prefixes prune their whole subtree; the side of
    a unit that contains the parent's LP solution needs no LP; a unit that does
    not cut the cell is fixed without a constraint (by interval arithmetic on an
    outer box of the cell when possible, otherwise after one LP).

    Cost and limits: the number of regions grows like ``Σ_{i≤d} C(H, i)`` in the
    worst case, and ``lp`` solves O(1–10) LPs of ~1 ms per region, so it is
    practical for d ≤ 3–4 and up to ~10^4 regions; ``polygon`` handles ~10^4
    regions of a 2-D input in seconds (see ``bench/polytopes_speed.py``).  Before
    searching, the count is estimated from the first layer: its m hyperplanes that
    cut the box (interval arithmetic) make ``Σ_{i≤d} C(m, i)`` regions in general
    position (Zaslavsky), and deeper layers only split them.  Without ``max_regions``
    an estimate above 20,000 (``lp``) or 10^6 (``polygon``) is refused with a
    ``ValueError`` instead of a search of hours: e.g. 16 ReLUs on a 100-D box make
    2^16 regions, ~10 minutes of LPs.  The estimate is exact for one generic hidden
    layer and a box holding every bounded region, and a guide otherwise.

    Raises
    ------
    ValueError
        Bad box, method, tol, max_regions or lp_backend; non-finite weights (named);
        too many regions expected without ``max_regions``.
    TypeError
        Unsupported layers.

    References
    ----------
    Black et al., arXiv:2211.12312 (2022); Serra, Tjandraatmadja & Ramalingam,
    ICML 2018 (exact counting by mixed-integer programming; here DFS + LP).
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol must be in (0, 1), got {tol!r}")
    if max_regions is not None and (not isinstance(max_regions, int) or max_regions < 1):
        raise ValueError(f"max_regions must be a positive int or None, got {max_regions!r}")
    lo, hi = check_box(lower, upper, model_in_dim(model))
    net = parse_model(model, in_dim=lo.shape[0])
    d = lo.shape[0]
    if method == "auto":
        method = "polygon" if d == 2 else "lp"
    if method == "polygon" and d != 2:
        raise ValueError(f"method='polygon' needs a 2-D input box, got d={d}")
    tol_abs = float(tol * np.max(hi - lo))
    regions: list[Region] = []
    if lp_backend not in BACKENDS:
        raise ValueError(f"lp_backend must be one of {BACKENDS}, got {lp_backend!r}")
    estimate, cut = estimated_regions(net, lo, hi)
    if max_regions is None and estimate > REGION_LIMIT[method]:
        raise ValueError(
            f"max_regions is None but the network has about {estimate} linear regions in the box "
            f"(its first layer alone: {cut} hyperplanes cut the box, Σ_{{i≤{d}}} C({cut}, i) "
            f"regions), more than the {REGION_LIMIT[method]} that method={method!r} enumerates "
            "in about a minute; pass max_regions=N to stop after N regions (the result is then "
            "marked truncated), or use a smaller box"
        )
    stats = LPSolver(lp_backend)
    bar = tqdm(desc="regions", unit="region", disable=not progress)
    state = {"truncated": False}

    def on_region(reg: Region) -> bool:
        regions.append(reg)
        bar.update(1)
        if max_regions is not None and len(regions) >= max_regions:
            state["truncated"] = True
            return False
        return True

    t0 = time.perf_counter()
    try:
        if method == "polygon":
            enumerate_polygon(net, lo, hi, tol_abs, on_region, stats)
        else:
            enumerate_lp(net, lo, hi, tol_abs, on_region, stats, bbox_lp=bbox_lp)
    finally:
        bar.close()
    return RegionEnumeration(
        regions=tuple(regions),
        lower=lo,
        upper=hi,
        method=method,
        lp_backend=stats.backend,
        tol=float(tol),
        n_lp=stats.n_lp,
        n_nodes=stats.n_nodes,
        n_dropped=stats.n_dropped,
        seconds=time.perf_counter() - t0,
        truncated=state["truncated"],
    )
