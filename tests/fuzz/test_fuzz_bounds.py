"""Fuzz `llc.bounds`: `bounds`, `hessian_bounds` and `symmetry_bound` keep the contract.

A call returns an interval ``0 ≤ lower ≤ upper ≤ d/2`` with finite ends (and a rank in [0, d]),
or raises ValueError/TypeError naming the argument; it never hangs and never changes the model
or the global RNG.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st
from torch import nn

from llc.bounds import Bounds, bounds, hessian_bounds, symmetry_bound

from ._contract import check_error, model_snapshot, no_hang, rng_state, same_model, same_rng
from ._models import mlp

# The fuzz puts NaN in weights, and torch.equal(nan, nan) is False: compare NaN-aware here.


pytestmark = pytest.mark.usefixtures("one_thread")

# What an error may name: an argument, or the part of the model / data that is not finite.
NAMES = (
    "model",
    "data",
    "inputs",
    "targets",
    "loss",
    "dtype",
    "seed",
    "rtol",
    "method",
    "max_dense",
    "curvature",
)
ODD = (float("nan"), float("inf"), -float("inf"), 1e30, 0.0, -1e-300)


@st.composite
def cases(draw):
    widths = draw(st.lists(st.integers(1, 4), min_size=2, max_size=4))
    act = draw(st.sampled_from([nn.ReLU, nn.Tanh]))
    model = mlp(widths, draw(st.integers(0, 2**16)), act=act, dtype=draw(st.sampled_from(DTYPES)))
    if draw(st.integers(0, 3)) == 0:  # one odd parameter entry
        params = list(model.parameters())
        p = params[draw(st.integers(0, len(params) - 1))]
        with torch.no_grad():
            p.view(-1)[draw(st.integers(0, p.numel() - 1))] = draw(st.sampled_from(ODD))
    n = draw(st.integers(1, 12))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    d_in = widths[0] + (draw(st.integers(0, 7)) == 0)  # sometimes the wrong width
    x = torch.randn(n, d_in, generator=g) * draw(st.sampled_from([1.0, 1.0, 1.0, 1e-20, 1e20]))
    y = torch.randn(n, widths[-1], generator=g)
    if draw(st.integers(0, 7)) == 0:
        x[0, 0] = draw(st.sampled_from(ODD[:3]))
    data = (x, y)
    if draw(st.integers(0, 5)) == 0:
        data = draw(st.sampled_from([(x, y[:, :0]), (x.long(), y), x, "data", (x, y, y)]))
    kw = {}
    for name, values in KWARGS.items():
        if draw(st.integers(0, 7)) == 0:
            kw[name] = draw(st.sampled_from(values))
    fn = draw(st.sampled_from(["bounds", "hessian_bounds", "symmetry_bound"]))
    return model, data, fn, kw


DTYPES = [torch.float32, torch.float64]
KWARGS = {
    "dtype": [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, "f8"],
    "seed": [0, 7, -1, 1.5, None, True, np.int64(3)],
    "rtol": [None, 0.1, 1e-12, 0.0, 1.0, float("nan"), -1.0, "0.1"],
    "method": ["gauss_newton", "hessian", "bogus"],
    "max_dense": [1, 2, 3000, 0, True, 2.5],
    "loss": ["mse", "cross_entropy", "bogus"],
}


def _call(model, data, fn, kw):
    if fn == "symmetry_bound":
        return symmetry_bound(model, data)
    return {"bounds": bounds, "hessian_bounds": hessian_bounds}[fn](model, data, **kw)


def _check_result(b: Bounds, model, fn):
    d = sum(p.numel() for p in model.parameters())
    assert isinstance(b, Bounds)
    assert math.isfinite(b.lower) and math.isfinite(b.upper), b
    assert 0.0 <= b.lower <= b.upper <= d / 2 + 1e-12, b
    if fn == "hessian_bounds":
        assert 0 <= b.rank <= d and np.isfinite(b.spectrum).all()
        assert b.upper <= d / 2 + 1e-12


@given(cases())
def test_fuzz_bounds_contract(case):
    model, data, fn, kw = case
    before, rng = model_snapshot(model), rng_state()
    try:
        with no_hang(20):
            result = _call(model, data, fn, kw)
    except Exception as exc:  # noqa: BLE001 (the contract decides)
        event(f"{fn}: refused ({type(exc).__name__}: {str(exc)[:60]})")
        check_error(exc, NAMES)
    else:
        event(f"{fn}: result")
        _check_result(result, model, fn)
    assert same_model(before, model_snapshot(model)), "the call changed the model"
    assert same_rng(rng, rng_state()), "the call changed the global RNG"


@given(
    widths=st.lists(st.integers(1, 3), min_size=3, max_size=4),
    lanczos=st.booleans(),
    method=st.sampled_from(["gauss_newton", "hessian"]),
)
def test_fuzz_zero_model_rank_zero_on_both_paths(widths, lanczos, method):
    """A deep (≥ 2 layers) linear network at zero, zero targets: both matrices are 0, rank 0."""
    layers = (nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:]))
    model = nn.Sequential(*layers).double()
    for p in model.parameters():
        nn.init.zeros_(p)
    x = torch.ones(5, widths[0], dtype=torch.float64)
    y = torch.zeros(5, widths[-1], dtype=torch.float64)
    d = sum(p.numel() for p in model.parameters())
    with no_hang(20):
        b = hessian_bounds(model, (x, y), method=method, max_dense=1 if lanczos and d > 1 else 3000)
    assert b.rank == 0 and (b.lower, b.upper) == (0.0, d / 4)
