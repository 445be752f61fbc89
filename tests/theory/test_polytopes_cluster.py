"""Hamming clustering of polytope codes (theory.polytopes.cluster_codes)."""

import numpy as np
import pytest
import torch

from theory.polytopes import adjusted_rand_index, cluster_codes


def planted(seed, k=3, per=50, H=40, flip=0.05):
    rng = np.random.default_rng(seed)
    protos = rng.random((k, H)) < 0.5
    truth = np.repeat(np.arange(k), per)
    codes = protos[truth] ^ (rng.random((k * per, H)) < flip)
    centers = 3.0 * rng.normal(size=(k, 8))
    acts = centers[truth] + 0.3 * rng.normal(size=(k * per, 8))
    return codes, acts, truth


def test_adjusted_rand_index_hand_values():
    # contingency {a0: b0×2}, {a1: b1, b2}: (1 − 1/3) / (3/2 − 1/3) = 4/7
    assert adjusted_rand_index([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(4 / 7)
    assert adjusted_rand_index([0, 0, 1, 1, 2], [5, 5, 7, 7, 1]) == pytest.approx(1.0)
    assert adjusted_rand_index([0, 0, 0, 0], [1, 1, 1, 1]) == 1.0
    # independent labelings average to 0: |mean| within 4 standard errors
    rng = np.random.default_rng(0)
    vals = [
        adjusted_rand_index(rng.integers(0, 3, 200), rng.integers(0, 3, 200)) for _ in range(200)
    ]
    assert abs(np.mean(vals)) < 4 * np.std(vals) / np.sqrt(len(vals))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_clusters_recovered(seed):
    codes, acts, truth = planted(seed)
    res = cluster_codes(torch.as_tensor(codes), 3, activations=acts, labels=truth)
    assert res.ari_codes_labels == 1.0
    assert res.ari_activations_labels == 1.0
    assert res.ari_codes_activations == 1.0
    assert res.within_hamming < 0.15 < res.between_hamming
    assert sorted(np.bincount(res.labels)) == [50, 50, 50]


def test_codes_and_activations_can_disagree():
    # activations carry a split the codes do not: codes give 1 cluster structure
    codes, _, truth = planted(3, k=2, per=60)
    rng = np.random.default_rng(3)
    acts = np.where(rng.random((120, 1)) < 0.5, -5.0, 5.0) + 0.1 * rng.normal(size=(120, 4))
    res = cluster_codes(codes, 2, activations=acts, labels=truth)
    assert res.ari_codes_labels == 1.0
    assert abs(res.ari_codes_activations) < 0.2


def test_cluster_plot_and_errors():
    import matplotlib

    matplotlib.use("Agg")
    codes, acts, truth = planted(0)
    assert cluster_codes(codes, 3, activations=acts).plot() is not None
    with pytest.raises(ValueError, match="codes must have shape"):
        cluster_codes(codes[0], 2)
    with pytest.raises(ValueError, match="n_clusters"):
        cluster_codes(codes, 0)
    with pytest.raises(ValueError, match="boolean"):
        cluster_codes(codes * 2.5, 2)
    with pytest.raises(ValueError, match="activations"):
        cluster_codes(codes, 2, activations=acts[:10])
    with pytest.raises(ValueError, match="a and b"):
        adjusted_rand_index([0, 1], [0, 1, 2])
