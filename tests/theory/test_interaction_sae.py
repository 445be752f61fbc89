"""theory.interaction_sae: the bases invert exactly, the FVUs are what they say, the table."""

import numpy as np
import pytest
import torch

from priors.sae import train_sae
from theory.interaction import interaction_basis
from theory.interaction_sae import (
    SAEBasisComparison,
    _bases,
    compare_sae_bases,
    sparse_inputs,
    train_toy_autoencoder,
)


@pytest.fixture(scope="module")
def toy(one_thread):
    layers = train_toy_autoencoder(seed=0, n_feat=6, hidden=12, steps=200)
    x = sparse_inputs(1500, 6, 0.1, seed=1)
    return layers, x


def test_bases_have_unit_spread_and_invert(toy):
    """raw and PCA invert exactly; the interaction basis drops directions (Λ below the
    threshold), so its round trip is a projection: applying it twice changes nothing."""
    layers, x = toy
    lib = interaction_basis(layers, x, edges=False, progress=False)
    h = layers[0](x).double()
    tol = 1e-8 * float(h.abs().max())
    for name, b in _bases({"lib": lib}, h).items():
        v = b.fwd(h)
        assert float((v - v.mean(0)).pow(2).sum(1).mean()) == pytest.approx(1.0, rel=1e-9), name
        once = b.inv(v)
        target = once if name == "lib" else h
        torch.testing.assert_close(b.inv(b.fwd(once)), target, rtol=0, atol=tol)
        if name != "lib":
            torch.testing.assert_close(once, h, rtol=0, atol=tol)


def test_toy_learns_its_task_and_inputs_are_sparse(toy):
    layers, _ = toy
    x = sparse_inputs(2000, 6, 0.1, seed=5)
    assert abs(float((x > 0).double().mean()) - 0.1) < 5 * (0.09 / x.numel()) ** 0.5
    net = torch.nn.Sequential(*layers)
    fvu = ((net(x) - x) ** 2).sum(1).mean() / ((x - x.mean(0)) ** 2).sum(1).mean()
    assert float(fvu) < 0.5


def test_comparison_runs_and_one_seed_table_has_no_nan(toy):
    res = compare_sae_bases(train_sae, seeds=(0,), n_feat=6, hidden=12, toy_steps=200, n_train=1000,
                            n_test=500, m=16, sae_steps=100)  # fmt: skip
    text = res.table()
    assert "nan" not in text and "no standard error" in text
    assert set(res.values) == {"raw", "pca", "lib", "lib τ=1e-4"}
    for basis, r in res.values.items():
        assert all(len(v) == 1 and np.isfinite(v[0]) for v in r.values()), basis
        assert 0 <= r["true"][0] <= 1 and r["l0"][0] <= 16
    assert res.kept["lib τ=1e-4"][0] <= res.kept["lib"][0] <= 13


def test_trainer_must_be_callable():
    with pytest.raises(TypeError, match="train_sae"):
        compare_sae_bases(None)


def test_standard_error_over_seeds():
    vals = {"raw": {k: [1.0, 2.0, 3.0] for k in
                    ("out_fvu", "act_fvu", "l0", "lib", "pca", "random", "true")}}  # fmt: skip
    res = SAEBasisComparison(vals, {"lib": [3] * 3, "lib τ=1e-4": [2] * 3}, 4, (0, 1, 2))
    assert "2.000±0.577" in res.table() and res.mean("raw", "l0") == 2.0
