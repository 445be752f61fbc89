"""Polytope lens on ReLU networks: codes, local affine maps, exact regions.

Black et al., "Interpreting Neural Networks through the Polytope Lens",
arXiv:2211.12312 (2022); bounds from Serra, Tjandraatmadja & Ramalingam (2018).
"""

from .affine import LocalAffineMap, distance_to_boundary, local_affine_map
from .bounds import (
    RegionBounds,
    arrangement_regions,
    bounded_regions,
    central_arrangement_regions,
    region_bounds,
)
from .cluster import CodeClustering, adjusted_rand_index, cluster_codes
from .codes import RegionCount, activation_codes, count_regions
from .crossings import PathCrossings, PathDensity, boundaries_crossed, polytope_density
from .enumeration import Region, RegionEnumeration, enumerate_regions
from .plot import plot_regions_2d

__all__ = [
    "activation_codes",
    "count_regions",
    "RegionCount",
    "local_affine_map",
    "LocalAffineMap",
    "distance_to_boundary",
    "boundaries_crossed",
    "PathCrossings",
    "polytope_density",
    "PathDensity",
    "enumerate_regions",
    "Region",
    "RegionEnumeration",
    "region_bounds",
    "RegionBounds",
    "arrangement_regions",
    "bounded_regions",
    "central_arrangement_regions",
    "cluster_codes",
    "CodeClustering",
    "adjusted_rand_index",
    "plot_regions_2d",
]
