"""matmul_precision: set around every evaluation of the call, the caller's level restored."""

from __future__ import annotations

import sys
import threading
import time
import warnings

import pytest
import torch
from torch import nn

import llc
from llc._precision import matmul_precision


@pytest.fixture
def caller_level():
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")  # a caller's own choice, not the default
    yield "high"
    torch.set_float32_matmul_precision(before)


def recording_loss(seen: list):
    def loss(outputs, targets):
        seen.append(torch.get_float32_matmul_precision())
        return 0.5 * ((outputs - targets) ** 2).sum(-1)

    return loss


def small_problem():
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(64, 3, generator=gen)
    return model, (x, torch.randn(64, 2, generator=gen))


FAST = {"num_chains": 2, "num_burnin": 20, "num_draws": 20, "step_size": 1e-3,
        "progress": False}  # fmt: skip


@pytest.mark.parametrize("level", ["highest", "medium"])
def test_the_level_holds_in_every_evaluation_and_the_callers_comes_back(caller_level, level):
    model, data = small_problem()
    seen: list = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", llc.LLCWarning)
        res = llc.estimate_llc(model, data, loss=recording_loss(seen), matmul_precision=level,
                               **FAST)  # fmt: skip
    assert seen and set(seen) == {level}
    assert torch.get_float32_matmul_precision() == caller_level
    assert res.config["matmul_precision"] == f"{level}: given"


def test_default_leaves_the_callers_level(caller_level):
    model, data = small_problem()
    seen: list = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", llc.LLCWarning)
        res = llc.estimate_llc(model, data, loss=recording_loss(seen), **FAST)
    assert set(seen) == {caller_level}
    assert res.config["matmul_precision"] == "high: the caller's"


def test_tracker_and_calibrate_pass_it_to_the_potential(caller_level):
    model, data = small_problem()
    seen: list = []
    kw = {k: v for k, v in FAST.items() if k != "progress"}
    tracker = llc.LLCTracker(
        data, every=1, loss=recording_loss(seen), matmul_precision="medium", progress=False, **kw
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", llc.LLCWarning)
        tracker.step(model, 0)
        llc.calibrate(model, data, loss=recording_loss(seen), step_sizes=(1e-3,), num_chains=2,
                      num_burnin=10, num_draws=10, start="center", matmul_precision="medium",
                      progress=False)  # fmt: skip
    assert seen and set(seen) == {"medium"}
    assert torch.get_float32_matmul_precision() == caller_level


def test_two_threads_with_levels_never_run_at_each_others():
    """The lock: a thread's evaluation sees its own level while another thread sets one. The
    threads switch every microsecond and yield inside the context, so that without the lock
    they would interleave."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    seen = {"medium": set(), "highest": set()}
    start = threading.Barrier(2)

    def work(level):
        start.wait()
        for _ in range(200):
            with matmul_precision(level):
                time.sleep(0)
                seen[level].add(torch.get_float32_matmul_precision())

    try:
        threads = [threading.Thread(target=work, args=(lv,)) for lv in seen]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(before)
    assert seen == {"medium": {"medium"}, "highest": {"highest"}}


def test_every_setting_comes_back_also_for_a_caller_of_the_per_backend_api():
    """torch's setter also writes the per-backend settings (torch >= 2.9), and its getter
    refuses once a caller has used them: both are handled, and everything is restored."""
    backends = [getattr(torch.backends, n).matmul for n in ("cuda", "mkldnn")]
    if not all(hasattr(b, "fp32_precision") for b in backends):
        pytest.skip("torch < 2.9 has no per-backend precision settings")
    saved = [b.fp32_precision for b in backends]
    try:
        for caller in ("none", "tf32"):
            backends[0].fp32_precision = caller  # a caller who asked for TF32 on CUDA
            state = [b.fp32_precision for b in backends]
            model, data = small_problem()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", llc.LLCWarning)
                res = llc.estimate_llc(model, data, **FAST)  # reads the caller's level
                llc.estimate_llc(model, data, matmul_precision="medium", **FAST)
            assert [b.fp32_precision for b in backends] == state
            assert "the caller's" in res.config["matmul_precision"]
        backends[0].fp32_precision = "none"
        assert torch.get_float32_matmul_precision() == "highest"  # the legacy level untouched
    finally:
        for b, value in zip(backends, saved):
            b.fp32_precision = value


@pytest.mark.parametrize("bad", ["low", "HIGH", 1, True])
def test_bad_level_names_the_argument(bad):
    model, data = small_problem()
    with pytest.raises(ValueError, match="matmul_precision"):
        llc.estimate_llc(model, data, matmul_precision=bad, **FAST)
    with pytest.raises(ValueError, match="matmul_precision"):
        llc.Potential(model, data, matmul_precision=bad)


def _bf16_matmuls() -> bool:
    """Whether this CPU runs float32 matmuls in bf16 at "medium" (bf16 matrix units)."""
    a = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    exact = a @ a
    with matmul_precision("medium"):
        return not torch.equal(a @ a, exact)


@pytest.mark.skipif(not _bf16_matmuls(), reason="this CPU computes 'medium' matmuls in fp32")
def test_the_level_reaches_the_samplers_matmuls():
    """On a CPU with bf16 matrix units, "medium" changes the draws of an MLP-path and a
    generic-path model (the level is in force where the gradients are computed), while the
    given "highest" reproduces a default call at the caller's "highest" bit for bit."""
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # matmuls large enough for oneDNN's bf16 kernels
        model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 8))
    data = (torch.randn(128, 64, generator=gen), torch.randn(128, 8, generator=gen))
    custom = Custom(model)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", llc.LLCWarning)
            for m in (model, custom):
                kw = {**FAST, "batch_size": 64, "step_size": 1e-4}
                default = llc.estimate_llc(m, data, **kw)
                given = llc.estimate_llc(m, data, matmul_precision="highest", **kw)
                bf16 = llc.estimate_llc(m, data, matmul_precision="medium", **kw)
                assert (given.llc_trace == default.llc_trace).all()
                assert not (bf16.llc_trace == default.llc_trace).all()
    finally:
        torch.set_float32_matmul_precision(before)


class Custom(nn.Module):
    """The same layers behind a custom forward: the generic (vmap) path."""

    def __init__(self, seq: nn.Sequential):
        super().__init__()
        self.seq = seq

    def forward(self, x):
        return self.seq[2](torch.tanh(self.seq[0](x)))
