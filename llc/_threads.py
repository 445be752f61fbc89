"""Torch's intra-op threads during sampling, set from the cores other processes leave free.

Torch splits an operation over its intra-op threads and waits for all of them at its end. On a
machine shared with other busy processes one of those threads is often descheduled, and every
parallel operation then waits a scheduler time slice for it: beside four busy processes on two
cores, a 288-parameter DLN ran at 14.3 ms per step with two threads and 3.1 ms with one (0.73
and 1.10 ms idle). :class:`ThreadControl` measures, every ``period`` seconds, how many cores the
other processes kept busy (all CPUs' busy time from ``/proc/stat`` less this process's own CPU
time) and runs the next steps on the free ones, at most the caller's count; at entry it counts
the other processes' running threads.

:func:`torch.set_num_threads` sets the calling thread's OpenMP and MKL counts; other Python
threads keep theirs, and the caller's count is restored on exit. The batched path gives the same
bits whatever the count (checked on MLPs, CNNs, a ResNet block and a transformer); one chain at a
time, CPU convolutions may round differently, so ``num_threads`` pins the count for bitwise
reproducible runs.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

import torch

__all__ = ["PERIOD", "ThreadControl", "busy_cores_of_others"]

PERIOD = 0.5  # seconds between two readings of the machine's load


def _cpu_times() -> tuple[float, float] | None:
    """(seconds all CPUs were busy, seconds this process ran) since boot, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guest time is already in user
    own = os.times()
    return busy, own.user + own.system


def busy_cores_of_others(
    before: tuple[float, float], after: tuple[float, float], seconds: float
) -> float:
    """Cores other processes kept busy between two :func:`_cpu_times` readings."""
    if seconds <= 0:
        return 0.0
    return max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / seconds)


def _running_others() -> int | None:
    """Threads of other processes running or runnable now (``/proc/loadavg``), or None."""
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
        ours = 0
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/stat") as f:
                ours += f.read().rsplit(")", 1)[1].split()[0] == "R"
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - ours)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ThreadControl:
    """Sets this thread's intra-op count while sampling: given, or the free cores.

    Parameters
    ----------
    requested : int, optional
        A fixed count (``num_threads``). Default: the free cores, ``⌊cores − busy + 0.3⌋``
        clipped to [1, the caller's count], where ``busy`` is first the number of other
        processes' threads running at entry (``/proc/loadavg`` less this process's running
        threads), then, every ``period`` seconds, the cores they kept busy since the last
        reading.
    device : torch.device
        Off the CPU the count is left alone.
    follow_load : bool
        False: without ``requested``, hold the caller's count (chains evaluated one after
        another, whose convolutions round differently with the count).

    Attributes
    ----------
    history : list of int
        The counts used, one entry per change (the first is the starting count).
    """

    def __init__(
        self,
        requested: int | None,
        device: torch.device,
        *,
        period: float = PERIOD,
        clock: Callable[[], float] = time.monotonic,
        readings: Callable[[], tuple[float, float] | None] = _cpu_times,
        running: Callable[[], int | None] = _running_others,
        follow_load: bool = True,
    ):
        self.requested, self.period = requested, period
        self._clock, self._readings, self._running = clock, readings, running
        self._adaptive = requested is None and device.type == "cpu" and follow_load
        self._held = requested is None and not follow_load and device.type == "cpu"
        self._caller = torch.get_num_threads()
        self.history: list[int] = []
        self._last: tuple[float, tuple[float, float]] | None = None

    def __enter__(self) -> ThreadControl:
        start = self.requested or self._caller
        if self._adaptive:  # until the first reading: the threads other processes run now
            others = self._running()
            if others is not None:
                start = self._free(others)
        self._set(start)
        if self._adaptive:
            self._mark()
        return self

    def _free(self, busy: float) -> int:
        return max(1, min(self._caller, math.floor(_cores() - busy + 0.3)))

    def __exit__(self, *exc) -> None:
        if torch.get_num_threads() != self._caller:
            torch.set_num_threads(self._caller)

    def _mark(self) -> None:
        reading = self._readings()
        self._last = None if reading is None else (self._clock(), reading)

    def _set(self, n: int) -> None:
        if not self.history or self.history[-1] != n:
            self.history.append(n)
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)

    def tick(self) -> None:
        """Called once per step: every ``period`` seconds, re-read the load and re-set."""
        if not self._adaptive or self._last is None:
            return
        now = self._clock()
        if now - self._last[0] < self.period:
            return
        reading = self._readings()
        if reading is None:
            return
        busy = busy_cores_of_others(self._last[1], reading, now - self._last[0])
        self._last = (now, reading)
        self._set(self._free(busy))

    def describe(self) -> str:
        """For ``config["num_threads"]``."""
        if self.requested is not None:
            return f"{self.requested}: given"
        if self._held:
            return f"{self._caller}: the caller's (one chain after another: no load following)"
        if not self._adaptive:
            return f"{self._caller}: the caller's (the step runs on the device)"
        if self._last is None:
            return f"{self._caller}: the caller's (no load reading on this system)"
        used = " → ".join(str(n) for n in self.history[:8])
        used += " …" if len(self.history) > 8 else ""
        return f"the free cores, at most the caller's {self._caller}: {used}"
