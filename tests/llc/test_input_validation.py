"""Bad inputs to estimate_llc give a clear error naming the argument (issue 18, items 5 and the
unclear errors; issue 19's params message), and the earlier fixes of defects 2, 3 and 6 hold."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

import llc
from tests.fuzz._contract import check_error, model_snapshot, rng_state, same_model, same_rng

FAST = dict(num_chains=2, num_draws=20, num_burnin=20, progress=False)


def _mlp(out=2):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, out))


def _x(n=64):
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(1))


def _refused(names, *args, **kwargs):
    model = args[0]
    before, rng = model_snapshot(model), rng_state()
    with pytest.raises((ValueError, TypeError)) as info:
        llc.estimate_llc(*args, **{**FAST, **kwargs})
    check_error(info.value, names)
    assert same_model(before, model_snapshot(model)) and same_rng(rng, rng_state())
    return str(info.value)


# -- defect 5: bad inputs accepted silently ---------------------------------------------------
def test_misspelled_param_name_lists_names_and_closest(one_thread):
    x = _x()
    msg = _refused("params", _mlp(), (x, torch.zeros(64, 2)), params=["0.weight", "2.wieght"])
    assert "'2.weight'" in msg and "0.bias" in msg  # the closest match, and what exists
    msg = _refused("params", _mlp(), (x, torch.zeros(64, 2)), params=["3.weight"])
    assert "did you mean" in msg and "2.bias" in msg  # issue 19


def test_kl_divergence_on_one_output_is_refused(one_thread):
    msg = _refused("divergence", _mlp(1), _x(), loss="behavioral", divergence="kl")
    assert "one output" in msg


def test_unknown_divergence_is_refused_whatever_the_loss(one_thread):
    _refused("divergence", _mlp(), (_x(), torch.zeros(64, 2)), divergence="bogus")


@pytest.mark.parametrize("how", ["some", "all"])
def test_cross_entropy_ignore_index_is_refused(one_thread, how):
    y = torch.randint(0, 5, (64,), generator=torch.Generator().manual_seed(2))
    y[: 64 if how == "all" else 10] = -100
    msg = _refused("targets", _mlp(5), (_x(), y), loss="cross_entropy")
    assert "-100" in msg


# -- unclear errors made clear ----------------------------------------------------------------
@pytest.mark.parametrize(
    "targets",
    [
        lambda y: y.float(),
        lambda y: y + 5,
        lambda y: y - 1 - y,  # all -1
        lambda y: y[:, None],
        lambda y: y > 2,
    ],
    ids=["float", "out_of_range", "minus_one", "n_by_1", "bool"],
)
def test_bad_cross_entropy_targets(one_thread, targets):
    y = torch.randint(0, 5, (64,), generator=torch.Generator().manual_seed(2))
    _refused("targets", _mlp(5), (_x(), targets(y)), loss="cross_entropy")


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int16])
def test_cross_entropy_targets_of_any_integer_dtype(one_thread, dtype):
    y = torch.randint(0, 5, (64,), generator=torch.Generator().manual_seed(2))
    ref = llc.estimate_llc(_mlp(5), (_x(), y), loss="cross_entropy", **FAST).llc_trace
    got = llc.estimate_llc(_mlp(5), (_x(), y.to(dtype)), loss="cross_entropy", **FAST)
    np.testing.assert_array_equal(got.llc_trace, ref)


@pytest.mark.parametrize(
    "inputs", [lambda x: x.long(), lambda x: x > 0, lambda x: x[:, 0]], ids=["int", "bool", "1d"]
)
def test_inputs_the_model_cannot_take(one_thread, inputs):
    msg = _refused("data", _mlp(), (inputs(_x()), torch.zeros(64, 2)))
    assert "inputs" in msg


def test_batchnorm_in_train_mode_is_refused(one_thread):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    msg = _refused("model", model, (_x(), torch.zeros(64, 2)))
    assert "eval()" in msg
    llc.estimate_llc(model.eval(), (_x(), torch.zeros(64, 2)), **FAST)  # eval mode works


@pytest.mark.parametrize("device", ["meta", "gpu", 3, "cuda:99"])
def test_unavailable_devices(one_thread, device):
    _refused("device", _mlp(), (_x(), torch.zeros(64, 2)), device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda(one_thread):
    msg = _refused("device", _mlp(), (_x(), torch.zeros(64, 2)), device="cuda")
    assert "not available" in msg


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True, None])
def test_bad_seed(one_thread, seed):
    _refused("seed", _mlp(), (_x(), torch.zeros(64, 2)), seed=seed)


@pytest.mark.parametrize(
    "flag, value, reason",
    [
        ("--seed", "-1", "expected an integer >= 0"),
        ("--seed", "1.5", "expected an integer"),
        ("--device", "nosuch", "must name a torch device"),
        ("--device", "cuda:99", "'cuda:99', but"),  # no CUDA, or too few devices
    ],
)
def test_cli_bad_value_is_an_argparse_error(flag, value, reason):
    run = subprocess.run(
        [sys.executable, "-m", "llc", "validate", "--quick", flag, value],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    error = run.stderr.strip().splitlines()[-1]  # argparse's line, after the usage
    assert f"argument {flag}: " in error and reason in error, error


class _Stream(IterableDataset):
    def __iter__(self):
        x = _x()
        return iter(zip(x, torch.zeros(64, 2)))


def test_iterable_dataset(one_thread):
    msg = _refused("data", _mlp(), _Stream())
    assert "DataLoader" in msg
    llc.estimate_llc(_mlp(), DataLoader(_Stream(), batch_size=8), **FAST)  # batched: fine


# -- item 5 of the brief: frozen parameters ---------------------------------------------------
def test_frozen_parameters_are_sampled_with_a_warning(one_thread):
    model = _mlp()
    model[0].weight.requires_grad_(False)
    data = (_x(), torch.zeros(64, 2))
    with pytest.warns(UserWarning, match="requires_grad=False"):
        res = llc.estimate_llc(model, data, **FAST)
    assert "0.weight" in res.config["params"]
    only = llc.estimate_llc(model, data, params=lambda n, p: p.requires_grad, **FAST)
    assert "0.weight" not in only.config["params"]
    model.requires_grad_(False)  # all frozen (inference habit): sampled, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert llc.estimate_llc(model, data, **FAST).config["params"] == res.config["params"]


# -- defects 2, 3, 6 (fixed earlier): still hold ----------------------------------------------
class _Pairs(Dataset):
    def __init__(self):
        self.x, self.y = _x(), torch.randn(64, 2, generator=torch.Generator().manual_seed(3))

    def __len__(self):
        return 64

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_dataloader_over_a_plain_dataset(one_thread):
    """Defect 2: no global RNG use, same result with shuffle, no sample dropped."""
    ds = _Pairs()
    ref = llc.estimate_llc(_mlp(), (ds.x, ds.y), **FAST)
    rng = rng_state()
    for loader in (DataLoader(ds, batch_size=5, shuffle=True), DataLoader(ds, 6, drop_last=True)):
        res = llc.estimate_llc(_mlp(), loader, **FAST)
        np.testing.assert_array_equal(res.llc_trace, ref.llc_trace)
        assert res.config["n"] == 64
    assert same_rng(rng, rng_state())


def test_dropout_follows_the_seed_not_the_global_rng(one_thread):
    """Defect 3."""
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.3), nn.Tanh(), nn.Linear(8, 2))
    data = (_x(), torch.zeros(64, 2))
    torch.manual_seed(5)
    a = llc.estimate_llc(model, data, **FAST).llc_trace
    torch.manual_seed(6)
    b = llc.estimate_llc(model, data, **FAST).llc_trace
    np.testing.assert_array_equal(a, b)


def test_float_buffers_follow_dtype(one_thread):
    """Defect 6: a float32 model with BatchNorm estimated in float64."""
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).eval()
    res = llc.estimate_llc(model, (_x(), torch.zeros(64, 2)), dtype=torch.float64, **FAST)
    assert np.isfinite(res.mean) and res.config["dtype"] == "torch.float64"


# -- LLCTracker and calibrate share the validation (they build the same potential) ------------
def _tracker(model, data, **kw):
    return llc.LLCTracker(data, every=1, progress=False, **kw).step(model, 0)


@pytest.mark.parametrize("entry", [llc.calibrate, _tracker], ids=["calibrate", "tracker"])
def test_calibrate_and_tracker_refuse_alike(one_thread, entry):
    y = torch.randint(0, 5, (64,), generator=torch.Generator().manual_seed(2))
    y[0] = -100
    with pytest.raises(ValueError) as info:
        entry(_mlp(5), (_x(), y), loss="cross_entropy")
    check_error(info.value, "targets")
    with pytest.raises(ValueError) as info:
        entry(_mlp(), (_x(), torch.zeros(64, 2)), device="gpu")
    check_error(info.value, "device")
