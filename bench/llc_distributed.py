"""Chains split across processes (torch.distributed, gloo) against one process, on this CPU.

    python bench/llc_distributed.py

Each row runs the same estimate (seed 7) three ways, one after another, in one run: one process
with 2 threads, one process with 1 thread, and 2 processes with 1 thread each (the chains split
between them). It prints seconds, the ratio to one process with 2 threads, and whether every
way gave bitwise the same draws.
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "llc"))
from distributed_worker import launch  # noqa: E402


def main() -> None:
    print(f"{'model':<14} {'way':<22} {'seconds':>8} {'vs 1×2':>7} {'same draws':>11} {'λ̂':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("mlp", "generic", "wide-mlp", "wide-generic"):
            base = None
            for label, world, threads in (("1 process, 2 threads", 1, 2),
                                          ("1 process, 1 thread", 1, 1),
                                          ("2 processes × 1 thread", 2, 1)):  # fmt: skip
                res = launch(kind, world, Path(tmp), threads)
                sec = max(float(r["seconds"]) for r in res)
                base = base or (sec, res[0]["llc_trace"])
                same = all(np.array_equal(r["llc_trace"], base[1]) for r in res)
                print(f"{kind:<14} {label:<22} {sec:8.2f} {base[0] / sec:6.2f}× {same!s:>11} "
                      f"{float(res[0]['mean']):9.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
