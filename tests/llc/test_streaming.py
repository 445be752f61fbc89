"""Streamed data: batches read one at a time and shared by all chains (llc.Streamed)."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import llc
from llc.potential import Potential
from llc.streaming import StreamedPotential

from ._models import Shuffled


def _problem(n=1200, seed=0):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 2))
    x = torch.randn(n, 5, generator=g)
    with torch.no_grad():
        y = model(x) + 0.3 * torch.randn(n, 2, generator=g)
    return model, x, y


def test_one_pass_gives_n_and_the_loss_at_the_center():
    model, x, y = _problem()
    loader = DataLoader(TensorDataset(x, y), batch_size=500)  # 500, 500, 200
    pot = StreamedPotential(model, llc.Streamed(loader))
    full = Potential(model, (x, y))
    assert pot.n == 1200 and pot.batch_size == 500
    assert math.isclose(pot.center_loss_mean, full.center_loss_mean, rel_tol=1e-6)
    sizes = [len(pot.advance()) for _ in range(4)]
    assert sizes == [500, 200, 500, 500]  # the rest of the first pass, then a new one
    assert torch.allclose(pot.center_losses, full.center_losses[500:1000])  # second batch


@pytest.mark.filterwarnings("ignore::llc.LLCWarning")
def test_a_stream_of_the_whole_data_is_the_full_batch_run_bit_for_bit():
    # one batch of all n samples, shared by every chain, is what the in-memory run with
    # batch_size = n evaluates: the same draws
    model, x, y = _problem(n=400)
    kw = dict(num_chains=3, progress=False, seed=2, max_draws=300)
    streamed = llc.estimate_llc(model, llc.Streamed([(x, y)]), **kw)
    memory = llc.estimate_llc(model, (x, y), batch_size=400, **kw)
    assert np.array_equal(streamed.llc_trace, memory.llc_trace)
    assert streamed.batch_size == 400 and streamed.config["n"] == 400
    assert math.isclose(streamed.init_loss, memory.init_loss, rel_tol=1e-12)


@pytest.mark.filterwarnings("ignore::llc.LLCWarning")
def test_shared_minibatches_estimate_the_same_llc():
    # sharing a minibatch between chains leaves each chain's control variate unbiased: the
    # two estimates agree within their combined Monte Carlo error (z <= 3.5 on each seed)
    model, x, y = _problem()
    for seed in (0, 1):
        kw = dict(num_chains=4, progress=False, seed=seed, max_draws=3000)
        streamed = llc.estimate_llc(model, llc.Streamed(Shuffled(x, y, 256, seed)), **kw)
        memory = llc.estimate_llc(model, (x, y), batch_size=256, **kw)
        z = (streamed.mean - memory.mean) / math.hypot(streamed.mcse, memory.mcse)
        assert abs(z) <= 3.5, (seed, streamed.mean, memory.mean, z)


def test_refusals_name_what_streamed_data_cannot_take():
    model, x, y = _problem(n=100)
    data = llc.Streamed([(x, y)])
    with pytest.raises(ValueError, match="batch_size"):
        llc.estimate_llc(model, data, batch_size=10, progress=False)
    with pytest.raises(ValueError, match="observables"):
        llc.estimate_llc(model, data, observables=[llc.ProbeLosses(x, y)], progress=False)
    with pytest.raises(ValueError, match="behavioral"):
        llc.estimate_llc(model, llc.Streamed([x]), loss="behavioral", progress=False)
    with pytest.raises(ValueError, match="no batch"):
        llc.estimate_llc(model, llc.Streamed([]), progress=False)
    for bad in ((x, y), x, 3):
        with pytest.raises(TypeError, match="Streamed takes"):
            llc.Streamed(bad)
    with pytest.raises(TypeError, match="estimate_llc only"):
        Potential(model, data)
