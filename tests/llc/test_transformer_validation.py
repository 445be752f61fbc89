"""The transformer checks of :mod:`llc.validate_lm` at small sizes: the finite-n target of a
regular model against its Gaussian posterior, and agreement with devinterp's sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import llc
from llc.validate_lm import devinterp_agreement
from llc.zoo import regular_llc


def test_regular_llc_is_the_localized_gaussian_posterior_mean():
    """A linear model with MSE: the posterior is Gaussian and E[nβ K] = ½ Σ nβh/(nβh + γ)."""
    gen = torch.Generator().manual_seed(0)
    n = 400
    scales = torch.tensor([1.0, 0.1, 0.01], dtype=torch.float64)  # h = 1, 1e-2, 1e-4
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64) * scales
    model = nn.Linear(3, 1, bias=False).double()
    y = x @ model.weight.detach().T + torch.randn(n, 1, generator=gen, dtype=torch.float64)
    with torch.no_grad():  # the least-squares minimum: K is exactly quadratic around it
        model.weight.copy_(torch.linalg.lstsq(x, y).solution.T)
    hessian = x.T @ x / n
    nbeta = n / math.log(n)
    target = regular_llc(torch.linalg.eigvalsh(hessian), nbeta, 0.3)
    assert 0.5 < target < 1.0  # the flat directions count for much less than ½ each
    for seed in (0, 1):
        res = llc.estimate_llc(
            model, (x, y), batch_size=n, seed=seed, max_draws=4000, progress=False
        )
        assert abs(res.mean - target) < 4 * res.mcse + 0.02 * target, (res.mean, target)


@pytest.mark.slow
def test_agrees_with_devinterp_sgld_over_three_seeds():
    pytest.importorskip("devinterp")
    rows = devinterp_agreement(seeds=(0, 1, 2), n=128, seq_len=8, d_model=16, num_chains=4,
                               num_burnin=200, num_draws=600, batch_size=16)  # fmt: skip
    z = np.array([r["z"] for r in rows])
    assert np.all(np.isfinite(z)) and np.all(np.abs(z) < 3), rows
    assert all(r["ours"] > 0 and r["devinterp"] > 0 for r in rows)
