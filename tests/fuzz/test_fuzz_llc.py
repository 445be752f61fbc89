"""Fuzzing ``llc.estimate_llc``: every call returns a finite estimate or a clear refusal.

Each example builds a tiny model and data, then corrupts some arguments on purpose (recorded by
name). The contract (:mod:`tests.fuzz._contract`): a result whose estimate and healthy chains
are finite float64, or a ``ValueError``/``TypeError`` naming one of the corrupted arguments
(when nothing was corrupted, no error at all; "every chain diverged" is a documented
``RuntimeError`` for extreme nβ); no hang; the model and the global RNG unchanged.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st
from torch import nn

import llc

from ._contract import (
    check_error,
    is_finite,
    model_snapshot,
    no_hang,
    rng_state,
    same_model,
    same_rng,
)

FIXED = dict(num_burnin=5, num_draws=6, progress=False)  # tiny and fixed: CI time
SECONDS = 20


class Custom(nn.Module):
    """A custom forward (the generic functional_call path)."""

    def __init__(self, d_in: int, hidden: int, d_out: int):
        super().__init__()
        self.a, self.b = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


@dataclass
class Case:
    model: nn.Module
    data: object
    kwargs: dict
    bad: set = field(default_factory=set)  # argument names corrupted on purpose


# -- strategies -------------------------------------------------------------------------------
def _bad_count(name: str):
    values = [0, -1, 2.0, "2", True, float("nan")] + ([None] if name == "num_chains" else [])
    return st.sampled_from(values).map(lambda v: (name, v))  # None: the default elsewhere


NONPOSITIVE = [0.0, -1.0, float("nan"), float("inf"), "1", True]


@st.composite
def cases(draw) -> Case:
    torch.manual_seed(draw(st.integers(0, 3)))
    d_in, hidden = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    loss = draw(st.sampled_from(["mse", "cross_entropy", "behavioral"]))
    d_out = draw(st.integers(2, 3)) if loss == "cross_entropy" else draw(st.integers(1, 3))
    if draw(st.booleans()):
        model = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, d_out))
    else:
        model = Custom(d_in, hidden, d_out)
    model_dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    model.to(model_dtype).eval()
    n = draw(st.integers(1, 40))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.randn(n, d_in, generator=gen)
    case = Case(model, None, dict(FIXED, loss=loss))
    if loss == "cross_entropy":
        y = torch.randint(0, d_out, (n,), generator=gen)
    else:
        y = torch.randn(n, d_out, generator=gen)
    _corrupt_data(draw, case, x, y, d_out)
    _arguments(draw, case, n)
    return case


def _corrupt_data(draw, case: Case, x, y, d_out: int) -> None:
    what = draw(
        st.sampled_from(
            ["none"] * 6
            + ["x_int", "x_bool", "x_1d", "x_nan", "x_inf", "y_nan", "w_nan", "w_inf"]
            + ["y_float64", "x_float64", "y_classes", "y_ignore", "y_col", "y_uint8", "n_mismatch"]
            + ["data_str", "data_none", "data_triple", "data_empty"]
        )
    )
    loss = case.kwargs["loss"]
    if what == "x_int":
        x = (x * 3).long()
        case.bad |= {"data", "inputs"}
    elif what == "x_bool":
        x = x > 0
        case.bad |= {"data", "inputs"}
    elif what == "x_1d" and x.shape[1] > 1:
        x = x[:, 0]
        case.bad |= {"data", "inputs"}
    elif what in ("x_nan", "x_inf"):
        x[0, 0] = float("nan") if what == "x_nan" else float("inf")
        case.bad |= {"data", "inputs"}
    elif what == "y_nan" and loss == "mse":
        y[-1, 0] = float("nan")
        case.bad |= {"data", "targets"}
    elif what in ("w_nan", "w_inf"):
        with torch.no_grad():
            next(case.model.parameters()).view(-1)[0] = float("nan" if what == "w_nan" else "inf")
        case.bad |= {"model", "weights"}
    elif what == "x_float64":
        x = x.double()  # cast to the model's dtype: fine
    elif what == "y_float64" and loss == "mse":
        y = y.double()
    elif loss == "cross_entropy" and what == "y_classes":
        y = y + d_out
        case.bad |= {"targets"}
    elif loss == "cross_entropy" and what == "y_ignore":
        y[0] = -100
        case.bad |= {"targets"}
    elif loss == "cross_entropy" and what == "y_col":
        y = y[:, None]
        case.bad |= {"targets"}
    elif loss == "cross_entropy" and what == "y_uint8":
        y = y.to(torch.uint8)  # any integer dtype of class indices: fine
    elif what == "n_mismatch" and loss != "behavioral" and x.shape[0] > 1:
        y = y[:-1]
        case.bad |= {"data"}
    case.data = x if loss == "behavioral" and draw(st.booleans()) else (x, y)
    wrong = {"data_str": "x.csv", "data_none": None, "data_triple": (x, y, y)}
    if what in wrong:
        case.data = wrong[what]
        case.bad |= {"data"}
    elif what == "data_empty":
        case.data = (x[:0], y[:0])
        case.bad |= {"data"}


def _arguments(draw, case: Case, n: int) -> None:
    kw = case.kwargs
    kw["num_chains"] = draw(st.integers(1, 3))
    kw["seed"] = draw(st.one_of(st.integers(0, 2**70), st.just(torch.Generator().manual_seed(3))))
    if draw(st.booleans()):
        kw["batch_size"] = draw(st.integers(1, n + 5))
    if draw(st.booleans()):
        kw["localization"] = draw(st.floats(0.0, 100.0))
    if draw(st.booleans()):
        kw["nbeta"] = draw(st.floats(1e-3, 1e3))
    if draw(st.booleans()):
        kw["dtype"] = draw(st.sampled_from([torch.float32, torch.float64]))
    if draw(st.booleans()):
        kw["device"] = draw(st.sampled_from(["cpu", torch.device("cpu")]))
    names = [name for name, _ in case.model.named_parameters()]
    if draw(st.booleans()):
        kw["params"] = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
    if kw["loss"] == "behavioral" and draw(st.booleans()):
        kw["divergence"] = draw(st.sampled_from(["mse", "kl"]))
        if (
            kw["divergence"] == "kl"
            and case.model(torch.zeros(1, _d_in(case), dtype=model_dtype(case))).shape[-1] == 1
        ):
            case.bad |= {"divergence"}
    for _ in range(draw(st.integers(0, 1))):  # at most one argument corrupted on purpose
        name, value = draw(_corruptions(names))
        kw[name] = value
        case.bad |= {name}


def model_dtype(case: Case) -> torch.dtype:
    return next(case.model.parameters()).dtype


def _d_in(case: Case) -> int:
    return next(case.model.parameters()).shape[1]


def _corruptions(names):
    return st.one_of(
        _bad_count("num_chains"),
        _bad_count("num_draws"),
        _bad_count("batch_size"),
        _bad_count("chain_batch"),
        _bad_count("max_draws"),
        st.sampled_from([-1, 2.5, "5"]).map(lambda v: ("num_burnin", v)),
        st.sampled_from(NONPOSITIVE).map(lambda v: ("nbeta", v)),
        st.sampled_from(NONPOSITIVE).map(lambda v: ("step_size", v)),
        st.sampled_from([-1.0, float("nan"), float("inf"), "0.3"]).map(
            lambda v: ("localization", v)
        ),
        st.sampled_from([-1, -(2**40), 1.5, "0", True, None]).map(lambda v: ("seed", v)),
        st.sampled_from(["cuda:99", "meta", "gpu", "", 3, "tpu"]).map(lambda v: ("device", v)),
        st.sampled_from([torch.int64, torch.bool, "float32", torch.complex64]).map(
            lambda v: ("dtype", v)
        ),
        st.sampled_from(["bogus", "", None, 1]).map(lambda v: ("divergence", v)),
        st.sampled_from(["msee", "", 3, None]).map(lambda v: ("loss", v)),
        st.sampled_from(["nuts", ""]).map(lambda v: ("sampler", v)),
        st.sampled_from([[], ["nope"], [n + "x" for n in names[:1]], 3]).map(
            lambda v: ("params", v)
        ),
    )


# -- the contract -----------------------------------------------------------------------------
def _call(case: Case):
    if torch.cuda.is_available() and case.kwargs.get("device") == "cuda:99":
        case.kwargs["device"] = f"cuda:{torch.cuda.device_count()}"
    before, rng = model_snapshot(case.model), rng_state()
    try:
        with no_hang(SECONDS), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return llc.estimate_llc(case.model, case.data, **case.kwargs), None
    except (ValueError, TypeError, RuntimeError) as exc:
        return None, exc
    finally:
        assert same_model(before, model_snapshot(case.model)), "the call changed the model"
        assert same_rng(rng, rng_state()), "the call changed the global RNG"


def _check(case: Case, result, exc) -> None:
    if exc is not None:
        if isinstance(exc, RuntimeError) and not isinstance(exc, NotImplementedError):
            assert "every chain diverged" in str(exc), f"{type(exc).__name__}: {exc}"
            return
        if not case.bad:
            raise AssertionError(f"a valid call was refused: {type(exc).__name__}: {exc}")
        check_error(exc, sorted(case.bad))
        return
    assert not case.bad, f"corrupted {sorted(case.bad)} accepted: {case.kwargs}"
    assert isinstance(result.mean, float) and is_finite(result.mean)
    assert result.llc_trace.dtype == np.float64
    ok = ~result.diverged
    assert is_finite(result.llc_trace[ok]) and is_finite(result.per_chain[ok])
    if ok.sum() >= 2:
        assert is_finite([result.std, result.mcse])


# cheap examples (~0.1 s): more than the profile's default, within ~30 s in CI
@settings(max_examples=max(200, settings().max_examples))
@given(cases())
def test_estimate_llc_contract(one_thread, case):
    result, exc = _call(case)
    event("refused" if exc is not None else "estimate", f"{sorted(case.bad)}")
    _check(case, result, exc)


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), -1e30, 3e38],
    ids=["nan", "inf", "-1e30", "3e38"],
)
def test_weights_far_from_finite(one_thread, value):
    """One weight NaN, infinite or huge: refused naming the model, or a finite estimate."""
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    with torch.no_grad():
        model[0].weight[0, 0] = value
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    case = Case(model, (x, torch.zeros(16, 1)), dict(FIXED, num_chains=2))
    case.bad = {"model"} if not np.isfinite(value) else set()
    result, exc = _call(case)
    if exc is not None and np.isfinite(value) and "model" in str(exc):
        return  # a finite but absurd weight may also be refused by name
    _check(case, result, exc)


# -- defects 2, 3 and 6 of issue 18 stay fixed ------------------------------------------------
class _Pairs(torch.utils.data.Dataset):
    """A map-style dataset that is not a TensorDataset (its loader runs the general path)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


@given(
    n=st.integers(2, 30),
    batch=st.integers(1, 12),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
    plain=st.booleans(),
    dropout=st.sampled_from([0.0, 0.5]),
    norm=st.booleans(),
    dtype=st.sampled_from([None, torch.float32, torch.float64]),
    global_seed=st.integers(0, 2**31),
)
def test_loaders_dropout_and_buffers(
    one_thread, n, batch, shuffle, drop_last, plain, dropout, norm, dtype, global_seed
):
    """A DataLoader gives the tensors' result without touching the global RNG (defect 2);
    dropout masks follow ``seed``, not the global RNG (defect 3); float buffers follow
    ``dtype`` (defect 6)."""
    torch.manual_seed(0)
    layers = [nn.Linear(2, 4)] + ([nn.BatchNorm1d(4)] if norm else [])
    model = nn.Sequential(*layers, nn.Dropout(dropout), nn.Tanh(), nn.Linear(4, 1))
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.eval()  # running statistics (train mode is refused)
    gen = torch.Generator().manual_seed(n)
    x, y = torch.randn(n, 2, generator=gen), torch.randn(n, 1, generator=gen)
    ds = _Pairs(x, y) if plain else torch.utils.data.TensorDataset(x, y)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=shuffle, drop_last=drop_last)
    # the way pinned, so that the comparison does not depend on how the default is chosen
    kw = dict(FIXED, num_chains=2, dtype=dtype, vectorize=True)
    with no_hang(SECONDS), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = llc.estimate_llc(model, (x, y), **kw)
        torch.manual_seed(global_seed)
        before, rng = model_snapshot(model), rng_state()
        got = llc.estimate_llc(model, loader, **kw)
        assert same_rng(rng, rng_state()) and same_model(before, model_snapshot(model))
    np.testing.assert_array_equal(got.llc_trace, ref.llc_trace)
    assert got.config["n"] == n
    assert got.config["dtype"] == str(dtype or torch.float32)
    assert is_finite(got.mean)
