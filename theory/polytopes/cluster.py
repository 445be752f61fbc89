"""Clustering polytope codes by Hamming distance, against clustering raw activations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist
from scipy.special import comb

__all__ = ["CodeClustering", "cluster_codes", "adjusted_rand_index"]

_MAX_POINTS = 20_000  # pdist needs N(N−1)/2 distances


def _array(x, name: str, dtype=None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
    return a


def adjusted_rand_index(a, b) -> float:
    """Adjusted Rand index between two labelings of the same points.

    Notes
    -----
    With contingency counts ``n_ij``, row sums ``a_i``, column sums ``b_j``:

    .. math::
        \\mathrm{ARI} = \\frac{\\sum_{ij}\\binom{n_{ij}}{2} - E}{\\tfrac12
        [\\sum_i\\binom{a_i}{2} + \\sum_j\\binom{b_j}{2}] - E},\\quad
        E = \\frac{\\sum_i\\binom{a_i}{2}\\sum_j\\binom{b_j}{2}}{\\binom{n}{2}}.

    1 for identical partitions (up to relabelling), about 0 for independent ones.
    Returns 1.0 when both labelings put every point in one cluster (0/0).

    References
    ----------
    Hubert & Arabie, "Comparing partitions", J. Classification 2 (1985).
    """
    a = _array(a, "a").ravel()
    b = _array(b, "b").ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same length, got {a.size} and {b.size}")
    if a.size < 2:
        raise ValueError("a and b need at least 2 points")
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1), dtype=np.int64)
    np.add.at(table, (ai, bi), 1)
    s_ij = comb(table, 2).sum()
    s_a = comb(table.sum(1), 2).sum()
    s_b = comb(table.sum(0), 2).sum()
    expected = s_a * s_b / comb(a.size, 2)
    top = 0.5 * (s_a + s_b)
    if top == expected:
        return 1.0
    return float((s_ij - expected) / (top - expected))


@dataclass(frozen=True)
class CodeClustering:
    """Hierarchical clustering of polytope codes (and of raw activations).

    Attributes
    ----------
    labels : ndarray of int, shape (N,)
        Cluster of each point from its code (0-based).
    n_clusters : int
        Requested number of clusters.
    method : str
        Linkage used on Hamming distances.
    within_hamming : float
        Mean normalised Hamming distance between codes in the same cluster.
    between_hamming : float
        Mean normalised Hamming distance between codes in different clusters.
    activation_labels : ndarray of int, shape (N,), or None
        Clusters of the raw activations (Euclidean, Ward linkage).
    ari_codes_activations : float or None
        ARI between the two clusterings.
    ari_codes_labels, ari_activations_labels : float or None
        ARI of each clustering against given reference labels.
    """

    labels: np.ndarray
    n_clusters: int
    method: str
    within_hamming: float
    between_hamming: float
    activation_labels: np.ndarray | None = None
    ari_codes_activations: float | None = None
    ari_codes_labels: float | None = None
    ari_activations_labels: float | None = None

    def plot(self, ax=None):
        """Contingency table of code clusters against activation clusters;
        returns the Figure."""
        import matplotlib.pyplot as plt

        if self.activation_labels is None:
            raise ValueError("plot needs activation clusters: pass activations= to cluster_codes")
        fig = ax.figure if ax is not None else plt.figure(figsize=(4, 3.4))
        ax = ax if ax is not None else fig.add_subplot(111)
        k1, k2 = self.labels.max() + 1, self.activation_labels.max() + 1
        table = np.zeros((k1, k2), dtype=int)
        np.add.at(table, (self.labels, self.activation_labels), 1)
        im = ax.imshow(table, cmap="Blues")
        fig.colorbar(im, ax=ax, label="points")
        ax.set_xticks(range(k2))
        ax.set_yticks(range(k1))
        ax.set_xlabel("activation cluster")
        ax.set_ylabel("code cluster")
        ax.set_title(f"ARI {self.ari_codes_activations:.2f}")
        return fig


def cluster_codes(
    codes,
    n_clusters: int,
    *,
    activations=None,
    labels=None,
    method: str = "average",
) -> CodeClustering:
    """Cluster points by the Hamming distance between their polytope codes.

    Parameters
    ----------
    codes : Tensor or array of bool, shape (N, H)
        Polytope codes (e.g. from :func:`activation_codes`).
    n_clusters : int
        Number of clusters to cut the dendrogram into.
    activations : Tensor or array, shape (N, H'), optional
        Raw activations of the same points, clustered with Euclidean Ward linkage
        for comparison.
    labels : array-like of int, shape (N,), optional
        Reference labels (e.g. classes) to score both clusterings.
    method : {"average", "complete", "single", "weighted"}
        Linkage on Hamming distances.

    Returns
    -------
    CodeClustering

    Notes
    -----
    Hamming distance ``d_H(s, s') = (1/H) Σ_i 1[s_i ≠ s'_i]``; agglomerative
    clustering (scipy ``linkage``) cut into ``n_clusters`` with ``fcluster``.
    Clusters are compared by the adjusted Rand index
    (:func:`adjusted_rand_index`).  Memory is O(N²): at most 20 000 points.

    References
    ----------
    Black et al., arXiv:2211.12312 (2022): clustering polytope codes by Hamming distance.
    """
    c = _array(codes, "codes")
    if c.ndim != 2:
        raise ValueError(f"codes must have shape (N, H), got {c.shape}")
    if c.dtype != bool:
        if not np.all((c == 0) | (c == 1)):
            raise ValueError("codes must be boolean (or 0/1)")
        c = c.astype(bool)
    n = c.shape[0]
    if n < 2 or n > _MAX_POINTS:
        raise ValueError(f"codes must have between 2 and {_MAX_POINTS} rows, got {n}")
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be an int in [1, N={n}], got {n_clusters!r}")
    if method not in ("average", "complete", "single", "weighted"):
        raise ValueError(f"method must be average/complete/single/weighted, got {method!r}")
    dist = pdist(c, metric="hamming") if c.shape[1] else np.zeros(n * (n - 1) // 2)
    lab = fcluster(linkage(dist, method=method), n_clusters, criterion="maxclust") - 1
    same = (lab[:, None] == lab[None, :])[np.triu_indices(n, 1)]
    within = float(dist[same].mean()) if same.any() else 0.0
    between = float(dist[~same].mean()) if (~same).any() else float("nan")
    act_lab = ari_ca = ari_cl = ari_al = None
    if activations is not None:
        act = _array(activations, "activations", np.float64)
        if act.ndim != 2 or act.shape[0] != n:
            raise ValueError(f"activations must have shape (N={n}, H'), got {act.shape}")
        act_lab = fcluster(linkage(act, method="ward"), n_clusters, criterion="maxclust") - 1
        ari_ca = adjusted_rand_index(lab, act_lab)
    if labels is not None:
        ref = _array(labels, "labels").ravel()
        if ref.shape[0] != n:
            raise ValueError(f"labels must have N={n} entries, got {ref.shape[0]}")
        ari_cl = adjusted_rand_index(lab, ref)
        if act_lab is not None:
            ari_al = adjusted_rand_index(act_lab, ref)
    return CodeClustering(
        labels=lab,
        n_clusters=n_clusters,
        method=method,
        within_hamming=within,
        between_hamming=between,
        activation_labels=act_lab,
        ari_codes_activations=ari_ca,
        ari_codes_labels=ari_cl,
        ari_activations_labels=ari_al,
    )
