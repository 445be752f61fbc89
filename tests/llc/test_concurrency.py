"""Several threads estimating on one model, and interrupts mid-run (issue 18, defect 1)."""

import threading

import numpy as np
import pytest
import torch
from torch import nn

import llc
from tests.fuzz._contract import model_snapshot, rng_state, same_model, same_rng

FAST = dict(num_chains=2, num_draws=40, num_burnin=40, progress=False)


class Net(nn.Module):
    """A custom forward: the generic (functional_call) path, not the MLP fast path."""

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.a, self.b = nn.Linear(3, 6), nn.Linear(6, 2)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.b(self.drop(torch.tanh(self.a(x))))


def _data():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(64, 3, generator=gen), torch.randn(64, 2, generator=gen)


def _threads(fn, seeds):
    out, errors = {}, []

    def go(s):
        try:
            out[s] = fn(s)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    return out


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_threads_on_one_model_equal_sequential_calls(one_thread, dropout):
    torch.manual_seed(0)
    model = Net(dropout)
    if dropout == 0.0:
        model.eval()
    data = _data()
    seeds = range(4)
    before, rng = model_snapshot(model), rng_state()
    seq = {s: llc.estimate_llc(model, data, seed=s, **FAST).llc_trace for s in seeds}
    par = _threads(lambda s: llc.estimate_llc(model, data, seed=s, **FAST).llc_trace, seeds)
    for s in seeds:
        np.testing.assert_array_equal(par[s], seq[s])
    assert same_model(before, model_snapshot(model))
    assert same_rng(rng, rng_state())
    model.state_dict()  # no batched tensor was left inside


def test_model_untouched_while_a_call_runs(one_thread):
    """The user's module never holds sampled tensors, even during a forward pass."""
    model = Net().eval()
    seen = []

    def look(module, args, out):  # runs inside every sampled forward (on the private view)
        seen.append(isinstance(model.a.weight, nn.Parameter) and model.a.weight.ndim == 2)

    model.a.register_forward_hook(look)
    llc.estimate_llc(model, _data(), **FAST)
    assert seen and all(seen)


def test_interrupt_mid_run_leaves_model_and_rng(one_thread):
    model = Net(0.3)
    calls = [0]

    class Stop(KeyboardInterrupt):
        pass

    def interrupt(module, args):
        calls[0] += 1
        if calls[0] == 30:
            raise Stop

    model.b.register_forward_pre_hook(interrupt)
    before, rng = model_snapshot(model), rng_state()
    with pytest.raises(Stop):
        llc.estimate_llc(model, _data(), **FAST)
    assert calls[0] == 30
    assert same_model(before, model_snapshot(model))
    assert same_rng(rng, rng_state())
    model.state_dict()
