"""The estimator beside other busy processes: cost per step against the load factor, one run.

For each model of the validation suite (``llc.validate.SUITE``), the SGLD step of
``llc.estimate_llc`` (8 chains, batch 512, n = 10,000, fixed step, Euler, no preconditioning) is
timed idle and beside K = 1, 2 and 4 busy-loop processes (``while True: pass``), with three
thread settings:

- ``auto``: the default (``num_threads=None``: the free cores, re-read every half second);
- ``pinned``: ``num_threads=torch.get_num_threads()`` (all cores; before issue 20 this was the
  only behaviour);
- ``one``: ``num_threads=1``.

A step is timed as the difference of two calls (10 and 10 + S draws) divided by S, the median
of three such differences. The table
gives milliseconds per step and, for ``auto``, the slowdown against the fastest idle setting
divided by the load factor ``max(1, (K + 1) / cores)``, the slowdown a single-threaded program
would see. Target (issue 20): at most 2 on every model.

Run: ``python bench/llc_load.py [--loads 0,1,2,4] [--draws 200] [--models "DLN 10,RRR 50"]``
(about 15 minutes on 2 cores for the whole suite).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager

import torch

import llc
from llc.validate import SUITE, build

SETTINGS = ("auto", "pinned", "one")
REPEATS = 3  # the median of three differences: steps beside busy processes vary a lot


@contextmanager
def busy_load(k: int):
    """``k`` busy-loop processes for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(k)]
    try:
        time.sleep(0.5 if k else 0.0)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def per_step_ms(model, data, setting: str, draws: int) -> float:
    threads = {"auto": None, "pinned": torch.get_num_threads(), "one": 1}[setting]

    def call(k: int) -> float:
        t0 = time.perf_counter()
        llc.estimate_llc(
            model, data, step_size=1e-4, num_burnin=0, num_draws=k, scheme="euler",
            precondition=False, compensate_noise=False, progress=False, seed=0,
            num_threads=threads,
        )  # fmt: skip
        return time.perf_counter() - t0

    call(10)
    diffs = sorted(call(10 + draws) - call(10) for _ in range(REPEATS))
    return diffs[REPEATS // 2] / draws * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loads", default="0,1,2,4")
    ap.add_argument("--draws", type=int, default=600)
    ap.add_argument("--models", default="", help="comma list of name prefixes (default: all)")
    args = ap.parse_args()
    warnings.simplefilter("ignore", llc.LLCWarning)
    loads = [int(k) for k in args.loads.split(",")]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    prefixes = [p for p in args.models.split(",") if p]
    specs = [s for s in SUITE if not prefixes or any(s.name.startswith(p) for p in prefixes)]
    print(f"torch {torch.__version__}, {cores} cores, caller's threads {torch.get_num_threads()}")
    print("ms per step (8 chains, batch 512); ratio = slowdown of auto / load factor")
    head = f"{'model':<26}{'d':>6}{'K':>3}" + "".join(f"{s:>9}" for s in SETTINGS) + f"{'ratio':>8}"
    print(head + "\n" + "-" * len(head), flush=True)
    for spec in specs:
        model, data, _ = build(spec, 10_000)
        d = sum(p.numel() for p in model.parameters())
        idle = None
        for k in loads:
            with busy_load(k):
                ms = {s: per_step_ms(model, data, s, args.draws) for s in SETTINGS}
            if idle is None:
                idle = min(ms.values())
            factor = max(1.0, (k + 1) / cores)
            ratio = ms["auto"] / idle / factor
            cells = "".join(f"{ms[s]:>9.2f}" for s in SETTINGS)
            print(f"{spec.name:<26}{d:>6}{k:>3}{cells}{ratio:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
