"""Memory: the peak a sampling run reaches, and the chain batch that keeps it under a budget.

Both read the device's memory in use (CUDA: torch's allocator; CPU: the C allocator's bytes in
use, or the resident set where that is not available). :class:`PeakMemory` reads it every
``POLL_SECONDS`` while the chains run and reports the peak growth; :func:`peak_of` reads it as
often as it can around one evaluation, and :func:`plan_chain_batch` plans ``chain_batch`` from
evaluations at one and at two chains.
"""

from __future__ import annotations

import ctypes
import math
import numbers
import os
import re
import threading
import time
from dataclasses import dataclass

import torch

from ._randomness import forked_global_rng

__all__ = [
    "MemoryPlan", "PeakMemory", "check_max_memory", "evaluation_peak", "format_bytes", "peak_of",
    "plan_chain_batch",
]  # fmt: skip

POLL_SECONDS = 0.025  # between readings: every 2 ms slowed runs 8-12 %; the peak recurs each step
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def check_max_memory(value: object) -> int | None:
    """``max_memory`` in bytes: a number, or a string such as ``"2GiB"``, ``"512 MB"``,
    ``"1e9"``."""
    if value is None:
        return None
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*", value)
        if m is None or m.group(2).lower() not in _UNITS:
            raise ValueError(
                f"max_memory must be bytes or a size such as '2GiB' or '512MB', got {value!r}"
            )
        value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"max_memory must be bytes or a string, got {type(value).__name__}")
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"max_memory must be at least 1 byte and finite, got {value}")
    return int(value)


def format_bytes(n: float | None) -> str:
    if n is None:
        return "not measured"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        .split()
    ]  # fmt: skip


def _cpu_reader():
    """``(read, name)``: bytes in use now. glibc's ``mallinfo2`` counts what torch's CPU
    allocator holds whether or not freed pages stay resident; else the resident set size."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
        fn.restype = _MallInfo2

        def in_use() -> int:
            info = fn()
            return info.uordblks + info.hblkhd

        in_use()
        return in_use, "C allocator bytes in use (mallinfo2)"
    except (AttributeError, OSError, TypeError):  # not glibc (TypeError: Windows)
        pass
    if os.path.exists("/proc/self/statm"):
        page = os.sysconf("SC_PAGE_SIZE")

        def resident() -> int:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * page

        return resident, "resident set size"
    return None, "not available on this platform"


class PeakMemory:
    """Context: the peak growth of memory in use on ``device`` while it is entered.

    A thread reads the memory in use every ``interval`` seconds (0: as often as it can); on
    CUDA the allocator's own peak counter makes it exact whenever the block's peak exceeds the
    device's earlier peak (the counter is never reset: it is the caller's). The measure is
    process-wide: allocations of other threads in the meantime count too.

    Attributes
    ----------
    peak : int or None
        Bytes above the level at entry (None where nothing can be read).
    measure : str
        What was read.
    """

    def __init__(self, device: torch.device, interval: float = POLL_SECONDS):
        self.device, self.interval = torch.device(device), interval
        self._read, self.measure = _reader(self.device)
        self.peak: int | None = None

    def _poll(self) -> None:
        self._started.set()
        while not self._stop.is_set():
            self._high = max(self._high, self._read())
            if self.interval:
                self._stop.wait(self.interval)
            else:
                time.sleep(0)  # as often as it can, letting the measured thread take the GIL

    def __enter__(self) -> PeakMemory:
        if self._read is None:
            return self
        self._stop, self._started = threading.Event(), threading.Event()
        if self.device.type == "cuda":
            self._counter = torch.cuda.max_memory_allocated(self.device)
        self._base = self._high = self._read()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="llc-memory")
        self._thread.start()
        self._started.wait()
        return self

    def __exit__(self, *exc) -> None:
        if self._read is None:
            return
        self._stop.set()
        self._thread.join()
        high = max(self._high, self._read())
        if self.device.type == "cuda":
            counter = torch.cuda.max_memory_allocated(self.device)
            if counter > self._counter:  # this block set a new peak: the counter has it exactly
                high = max(high, counter)
        self.peak = max(0, high - self._base)


def _reader(device: torch.device):
    """``(read, name)``: bytes in use on ``device`` now."""
    if device.type == "cuda":
        return (lambda: torch.cuda.memory_allocated(device)), "torch's CUDA allocator"
    return _cpu_reader()


def peak_of(fn, device: torch.device, min_seconds: float = 0.2, min_calls: int = 5) -> int:
    """Peak growth of the memory in use on ``device`` while ``fn()`` runs, read by a thread as
    often as it can, after a first call. ``fn`` is called again until ``min_calls`` calls and
    ``min_seconds`` have passed: a reading waits for the GIL (up to 5 ms while the caller runs
    Python), so a peak briefer than that is caught only over many calls."""
    device = torch.device(device)
    if _reader(device)[0] is None:
        raise ValueError("max_memory needs memory readings, which this platform does not give")
    fn()  # buffers that libraries allocate at a first call and keep are not the evaluation's
    with PeakMemory(device, interval=0.0) as meter:
        calls, until = 0, time.perf_counter() + min_seconds
        while calls < min_calls or time.perf_counter() < until:
            fn()
            calls += 1
    return meter.peak


@dataclass(frozen=True)
class MemoryPlan:
    """How ``chain_batch`` was chosen under ``max_memory``.

    An evaluation of ``k`` chains at once (the gradient, or a Hessian-vector product, whichever
    needs more) creates about ``fixed + per_chain · k`` bytes (:func:`peak_of` at one and two
    chains); ``planned`` is what it created at ``chain_batch``.
    """

    max_memory: int
    chain_batch: int
    fixed: int
    per_chain: int
    planned: int  # measured at chain_batch

    def describe(self) -> dict:
        return {
            "max_memory": format_bytes(self.max_memory),
            "evaluation": f"{format_bytes(self.planned)} for {self.chain_batch} chains at once "
            f"(about {format_bytes(self.fixed)} + {format_bytes(self.per_chain)} per chain)",
        }


def evaluation_peak(chains, k: int) -> int:
    """Peak bytes created by one gradient, and by one Hessian-vector product, of ``k`` chains
    at w* on one minibatch, evaluated the way the run evaluates them (the larger of the two)."""
    pot, rand = chains.potential, chains.randomness
    w = pot.center.expand(k, -1).clone()
    idx = (torch.arange(rand.batch_size, device=pot.device) % pot.n).expand(k, -1)
    batch = pot.minibatch(idx)
    return max(
        peak_of(lambda: chains.evaluate(w, batch, k), pot.device),
        peak_of(lambda: pot.hvp(w, torch.ones_like(w), batch, chain_batch=k), pot.device),
    )


def plan_chain_batch(chains, max_memory: int) -> MemoryPlan:
    """The most chains evaluated at once (``chain_batch``) whose evaluation creates at most
    ``max_memory`` bytes: the count extrapolated from one and two chains, read there, lowered
    until the reading fits and raised while the next one fits (small evaluations are not quite
    linear)."""
    c, pot = chains.num_chains, chains.potential
    cuda = [pot.device] if pot.device.type == "cuda" else []
    # a model with dropout draws masks from the global RNG: the run's stream stays as it was
    with forked_global_rng(cuda):
        one = evaluation_peak(chains, 1)
        if one > max_memory:
            raise ValueError(
                f"max_memory={format_bytes(max_memory)} is below what one chain's evaluation "
                f"needs ({format_bytes(one)}); raise max_memory, or lower batch_size"
            )
        two = evaluation_peak(chains, 2) if c > 1 else one
        per_chain = max(1, two - one if two > one else one)  # a zero reading must not divide
        fixed = max(0, one - per_chain)
        k, peak = min(c, max(1, (max_memory - fixed) // per_chain)), one
        while k > 1:
            peak = evaluation_peak(chains, k)
            if peak <= max_memory:
                break
            k = max(1, min(k - 1, k * max_memory // peak))
        if k == 1:
            peak = one
        while k < c:  # the extrapolation may fall short: read one more while it fits
            more = evaluation_peak(chains, k + 1)
            if more > max_memory:
                break
            k, peak = k + 1, more
    return MemoryPlan(max_memory, int(k), fixed, per_chain, peak)
