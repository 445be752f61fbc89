"""How the chains are evaluated: batched or one at a time (chosen from the model, or timed), and
on how many threads (chosen from the free cores)."""

from __future__ import annotations

import threading
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import llc
from llc._attention import ATTENTION
from llc._execution import (
    ATTENTION_CALL_SIZE,
    CONVOLUTIONS,
    FasterOf,
    mean_call_size,
    probe_calls,
)
from llc._threads import ThreadControl, busy_cores_of_others
from llc.zoo import TinyTransformer, markov_tokens

CPU = torch.device("cpu")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def ways(clock, batched_cost, loop_cost):
    def batched(x):
        clock.now += batched_cost
        return ("batched", x)

    def sequential(x):
        clock.now += loop_cost
        return ("sequential", x)

    return batched, sequential


@pytest.mark.parametrize(
    ("batched_cost", "loop_cost", "chosen"),
    [(3.0, 1.0, "sequential"), (1.0, 3.0, "batched"), (1.1, 1.0, "batched")],  # margin 1.2
)
def test_faster_of_keeps_the_faster_way(batched_cost, loop_cost, chosen):
    clock = FakeClock()
    pick = FasterOf(*ways(clock, batched_cost, loop_cost), device=CPU, trials=3, clock=clock)
    seen = [pick(i) for i in range(12)]
    assert [s[1] for s in seen] == list(range(12))  # every call returns its own result
    assert [s[0] for s in seen[:8]] == ["batched", "sequential"] * 4  # untimed pair, 3 timed
    assert pick.choice == chosen and {s[0] for s in seen[8:]} == {chosen}
    assert len(pick.seconds["batched"]) == len(pick.seconds["sequential"]) == 3
    assert chosen in pick.describe()


def test_faster_of_undecided_says_so():
    clock = FakeClock()
    pick = FasterOf(*ways(clock, 1.0, 1.0), device=CPU, clock=clock)
    pick(0)
    assert pick.choice is None and "undecided" in pick.describe()


def test_faster_of_uses_the_fastest_call_not_the_mean():
    """A load spike during one timed call must not decide."""
    clock, costs = FakeClock(), iter([1, 9, 2, 2])  # batched: untimed 1, then timed 9, 2, 2

    def batched(x):
        clock.now += next(costs)
        return x

    def sequential(x):
        clock.now += 1.8
        return x

    pick = FasterOf(batched, sequential, device=CPU, trials=3, clock=clock)
    for i in range(8):
        pick(i)
    assert pick.seconds["batched"] == [9, 2, 2]
    assert (
        pick.choice == "batched"
    )  # 1.8 · 1.2 > 2: not faster by the margin (the mean, 4.3, would say it is)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.head(h.flatten(1)) + self.conv.bias.sum()  # a parameter used twice


def cnn_problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN()
        with torch.no_grad():
            model(torch.randn(64, 1, 8, 8, generator=gen))  # running statistics
        model.eval()
    x = torch.randn(256, 1, 8, 8, generator=gen)
    return model, (x, torch.randint(0, 3, (256,), generator=gen))


def test_sequential_gradients_equal_batched_on_cnn_and_transformer():
    model, (x, y) = cnn_problem()
    pot = llc.Potential(model, (x, y), loss="cross_entropy")
    gen = torch.Generator().manual_seed(1)
    w = pot.center + 0.05 * torch.randn(3, pot.dim, generator=gen)
    idx = torch.randint(0, 256, (3, 32), generator=gen)
    batch = pot.minibatch(idx)
    assert pot.generic
    lb, gb = pot.value_and_grad(w, batch)
    ls, gs = pot.sequential_value_and_grad(w, batch)
    torch.testing.assert_close(ls, lb, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gs, gb, rtol=1e-4, atol=1e-5)
    # attention: the loop runs torch's fused kernel, the batched pass its matmul form
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tr = TinyTransformer(16, 8, d_model=16, n_heads=2, n_layers=1, d_mlp=32)
    tokens = markov_tokens(64, 8, 16, seed=0)[0]
    pot = llc.Potential(tr, tokens, loss="next_token")
    w = pot.center + 0.02 * torch.randn(2, pot.dim, generator=gen)
    batch = pot.minibatch(torch.randint(0, 64, (2, 16), generator=gen))
    lb, gb = pot.value_and_grad(w, batch)
    ls, gs = pot.sequential_value_and_grad(w, batch)
    torch.testing.assert_close(ls, lb, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gs, gb, rtol=1e-4, atol=1e-5)


def estimate(model, data, **kw):
    kw = dict(loss="cross_entropy", step_size=1e-4, num_burnin=0, num_draws=60, batch_size=32,
              progress=False, seed=3) | kw  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", llc.LLCWarning)
        return llc.estimate_llc(model, data, **kw)


def test_both_ways_sample_the_same_chains(one_thread):
    """Same seed, same minibatches and noise: the traces differ by float rounding only."""
    model, data = cnn_problem()
    a = estimate(model, data, vectorize=True)
    b = estimate(model, data, vectorize=False)
    assert a.config["execution"] == "batched: given (vectorize=True)"
    assert b.config["execution"] == "sequential: given (vectorize=False)"
    torch.testing.assert_close(
        torch.as_tensor(b.llc_trace), torch.as_tensor(a.llc_trace), rtol=1e-3, atol=1e-3
    )
    timed = estimate(model, data, vectorize="timed")  # its first 8 steps alternate the ways
    assert "chosen by timing" in timed.config["execution"]
    torch.testing.assert_close(
        torch.as_tensor(timed.llc_trace), torch.as_tensor(a.llc_trace), rtol=1e-3, atol=1e-3
    )
    assert (estimate(model, data, vectorize=False).llc_trace == b.llc_trace).all()


def test_the_default_way_comes_from_the_model_and_its_bits_not_from_the_load(monkeypatch):
    """A CNN runs one chain after another on the caller's threads, whatever the load: the
    default call gives the bits of vectorize=False at that count, even when the load readings
    say every core is busy."""
    model, data = cnn_problem()
    pinned = estimate(model, data, vectorize=False, num_threads=torch.get_num_threads())
    monkeypatch.setattr("llc._threads._running_others", lambda: 64)
    monkeypatch.setattr("llc._threads._cpu_times", readings([64.0]))
    default = estimate(model, data)
    assert default.config["execution"].startswith("sequential: the model calls a convolution")
    assert "no load following" in default.config["num_threads"]
    assert (default.llc_trace == pinned.llc_trace).all()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        functional = Functional()  # F.conv2d in a custom forward is seen too
    assert estimate(functional, data).config["execution"].startswith("sequential")
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.LayerNorm(16), nn.Linear(16, 10))
    assert estimate(mlp, data).config["execution"] == "batched: the generic path"


def test_mean_call_size_counts_the_returned_tensors():
    x = torch.ones(4, 3)
    # x.sum(1): 4 elements; torch.outer: 16; .shape is no tensor
    assert (
        mean_call_size(lambda t: torch.outer(t.sum(1), t.sum(1)[:4]).shape, x)
        == (4 + 4 + 4 + 16) / 4
    )


def test_one_probe_sees_attention_and_convolutions():
    x = torch.ones(1, 2, 4, 4)
    conv = probe_calls(lambda t: F.conv2d(t, torch.ones(3, 2, 1, 1)), x)
    q = torch.ones(1, 2, 5, 4)
    attn = probe_calls(lambda t: F.scaled_dot_product_attention(t, t, t), q)
    mha = nn.MultiheadAttention(4, 2, batch_first=True)
    module = probe_calls(lambda t: mha(t, t, t, need_weights=False)[0], torch.ones(1, 5, 4))
    assert conv.called(CONVOLUTIONS) and not conv.called(ATTENTION)
    assert attn.called(ATTENTION) and not attn.called(CONVOLUTIONS)
    assert module.called(ATTENTION)
    # attention returns (1, 2, 5, 4); torch.ones (6 elements) and the convolution (48) are calls
    assert attn.mean_size == 40 and conv.mean_size == (6 + 48) / 2


def test_attention_on_the_cpu_runs_one_chain_at_a_time_above_the_call_size(monkeypatch):
    """A transformer whose calls return more than ATTENTION_CALL_SIZE elements runs one chain
    at a time on the CPU by default, bit for bit the sequential way; below it, batched; with
    dropout active it stays batched (the masks keep their order)."""
    tokens, _ = markov_tokens(64, 8, 11, seed=0)
    kw = dict(loss="next_token", batch_size=8, num_chains=3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = TinyTransformer(11, 8, d_model=16, n_heads=2, n_layers=1)
        dropout = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True).train()
    small = estimate(model, tokens, **kw)
    assert small.config["execution"].startswith("batched: the generic path (attention on")
    size = llc.Potential(model, tokens, loss="next_token").call_size(8)
    assert 100 < size < ATTENTION_CALL_SIZE  # 8 sequences of 8 tokens, width 16
    monkeypatch.setattr("llc._execution.ATTENTION_CALL_SIZE", int(size) - 1)
    default = estimate(model, tokens, **kw)
    assert default.config["execution"].startswith("sequential: the model calls attention")
    assert (default.llc_trace == estimate(model, tokens, vectorize=False, **kw).llc_trace).all()
    batched = estimate(model, tokens, vectorize=True, **kw)
    assert batched.config["execution"] == "batched: given (vectorize=True)"
    torch.testing.assert_close(batched.llc_trace, default.llc_trace, rtol=1e-3, atol=1e-3)
    x = torch.randn(64, 8, 16, generator=torch.Generator().manual_seed(1))
    r = estimate(dropout, (x, x), loss="mse", num_draws=8, step_size=1e-5, num_chains=2,
                 batch_size=8)  # fmt: skip
    assert r.config["execution"] == "batched: the model draws random numbers"


class Functional(nn.Module):
    """A CNN whose forward calls F.conv2d on its own parameters."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(0.3 * torch.randn(4, 1, 3, 3))
        self.head = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.head(F.relu(F.conv2d(x, self.weight, padding=1)).flatten(1))


def test_mlp_path_and_dropout_stay_batched():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(128, 3, generator=gen)
    mlp = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    r = estimate(mlp, (x, torch.randint(0, 2, (128,), generator=gen)))
    assert r.config["execution"] == "batched: the MLP path"
    drop = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.2), nn.Linear(4, 2)).train()
    r = estimate(drop, (x, torch.randint(0, 2, (128,), generator=gen)))
    assert r.config["execution"] == "batched: the model draws random numbers"


@pytest.mark.parametrize(
    ("kwargs", "error", "word"),
    [
        ({"vectorize": "yes"}, TypeError, "vectorize"),
        ({"vectorize": "Timed"}, TypeError, "vectorize"),
        ({"vectorize": 1}, TypeError, "vectorize"),
        ({"num_threads": 0}, ValueError, "num_threads"),
        ({"num_threads": 1.5}, TypeError, "num_threads"),
    ],
)
def test_bad_execution_arguments(kwargs, error, word):
    model, data = cnn_problem()
    with pytest.raises(error, match=word):
        estimate(model, data, **kwargs)


def readings(busy_others):
    """Fake (/proc/stat busy seconds, own CPU seconds): others keep `busy_others` cores busy."""
    state = {"t": 0.0, "busy": 0.0}

    def read():
        state["busy"] += busy_others[0] * 0.5
        return state["busy"], 0.0

    return read


def test_thread_control_follows_the_free_cores():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        clock, busy = FakeClock(), [0.0]
        busy_now = ThreadControl(None, CPU, clock=clock, readings=readings(busy), running=lambda: 3)
        with busy_now:  # three other threads running at entry: start on one
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        control = ThreadControl(None, CPU, clock=clock, readings=readings(busy), running=lambda: 0)
        with control:
            assert torch.get_num_threads() == 2
            for load, expected in ((1.0, 1), (1.0, 1), (0.1, 2), (1.6, 1), (0.0, 2)):
                busy[0] = load
                clock.now += 0.5
                control.tick()
                assert torch.get_num_threads() == expected, (load, expected)
            control.tick()  # within the period: nothing re-read
        assert torch.get_num_threads() == 2  # the caller's count is back
        assert control.history == [2, 1, 2, 1, 2]
        assert "1 → 2" in control.describe()
    finally:
        torch.set_num_threads(before)


def test_thread_control_given_count_and_other_threads():
    before = torch.get_num_threads()
    seen = []

    def worker():
        with ThreadControl(1, CPU):
            seen.append(torch.get_num_threads())
            seen.append(main_count)

    main_count = torch.get_num_threads()
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [1, main_count] and torch.get_num_threads() == before
    with ThreadControl(None, torch.device("cuda")) as control:  # off the CPU: left alone
        control.tick()
        assert torch.get_num_threads() == before
    assert "device" in control.describe()


def test_busy_cores_of_others():
    assert busy_cores_of_others((10.0, 1.0), (12.0, 2.0), 1.0) == pytest.approx(1.0)
    assert busy_cores_of_others((10.0, 1.0), (11.0, 2.0), 1.0) == 0.0  # never negative
    assert busy_cores_of_others((0.0, 0.0), (1.0, 0.0), 0.0) == 0.0


def test_estimate_restores_threads_and_batched_bits_do_not_depend_on_them():
    before = torch.get_num_threads()
    model, data = cnn_problem()
    one = estimate(model, data, vectorize=True, num_threads=1)
    assert torch.get_num_threads() == before
    assert one.config["num_threads"] == "1: given"
    two = estimate(model, data, vectorize=True, num_threads=2)
    assert (one.llc_trace == two.llc_trace).all()
    auto = estimate(model, data, vectorize=True)
    assert "free cores" in auto.config["num_threads"] or "no load" in auto.config["num_threads"]
    assert torch.get_num_threads() == before
