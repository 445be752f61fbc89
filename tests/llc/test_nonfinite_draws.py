"""A loss that is NaN on rare minibatches never leaves silent NaN draws (issue 18, defect 4)."""

import warnings

import numpy as np
import torch
from torch import nn

import llc
from llc._assemble import _flag_nonfinite
from llc.sampling import Chains

N, FLAGGED = 8192, 7  # one sample in 8192 turns the loss NaN away from w*


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).eval()
    x = torch.randn(N, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x) + 0.1 * torch.randn(N, 2, generator=torch.Generator().manual_seed(2))
        y[FLAGGED] = model(x[FLAGGED])  # zero residual at w* only
    flag = torch.zeros(N, 1)
    flag[FLAGGED] = 1.0
    return model, (x, torch.cat([y, flag], dim=1))


def rare_nan(outputs, targets):
    """½‖y − f(x)‖², NaN for the flagged sample once w leaves w* (its gradient stays finite)."""
    y, flag = targets[:, :2], targets[:, 2]
    loss = 0.5 * ((outputs - y) ** 2).sum(1)
    bad = (flag > 0) & (loss > 1e-12)
    return torch.where(bad, torch.full_like(loss, float("nan")), loss)


def test_rare_nan_minibatches_flag_their_chains(one_thread):
    model, data = _setup()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = llc.estimate_llc(
            model, data, loss=rare_nan, num_chains=8, batch_size=8, num_burnin=100,
            num_draws=200, step_size=1e-4, seed=0, progress=False,
        )  # fmt: skip
    bad_rows = ~np.isfinite(res.llc_trace).all(axis=1)
    assert bad_rows.any() and not bad_rows.all()  # the case is exercised: some chains hit NaN
    np.testing.assert_array_equal(bad_rows, res.diverged)  # each one flagged, and only those
    said = [str(w.message) for w in caught if "diverged" in str(w.message)]
    assert len(said) == int(res.diverged.sum())
    for value in (res.mean, res.mcse, res.r_hat, res.ess):
        assert np.isfinite(value)
    assert np.isnan(res.per_chain[res.diverged]).all()
    assert np.isfinite(res.per_chain[~res.diverged]).all()


def test_safety_net_flags_a_nonfinite_trace():
    """The result never averages a chain with a NaN draw, whatever path it came by."""

    class _Pot:
        n, dim = 10, 3
        device = torch.device("cpu")
        generic = stochastic = convolutional = False  # the MLP path

    class _Rand:
        num_chains, batch_size = 3, 4

    chains = Chains(_Pot(), _Rand())
    chains.steps_done = 40
    trace = np.ones((3, 5))
    trace[1, 2] = np.nan
    _flag_nonfinite(chains, trace)
    assert chains.diverged_at == [None, 40, None]
    assert chains.diverged_why[1] == "non-finite draw"
