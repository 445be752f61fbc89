"""Time and peak memory of the interaction basis against width.

A 3-layer MLP ``d -> d -> d -> d`` (ReLU, biases), ``N`` Gaussian inputs, float64, basis only
(``edges=False``; edges cost ``O(N d³)`` and are timed separately with ``--edges``).

Each width runs in a fresh subprocess so that the peak resident memory (``ru_maxrss``, a
high-water mark) belongs to that width alone.  ``peak extra`` is ``ru_maxrss`` after the call
minus ``ru_maxrss`` just before it (inputs and model already built), i.e. the memory the
algorithm itself added; the last column divides it by one ``d × d`` float64 matrix, so a constant
column means ``O(d²)`` memory (the inputs, ``N × d``, are never copied).  ``cpu s`` is the process
CPU time (both threads), ``wall s`` the elapsed time; on a shared machine the wall time grows
with the load, the CPU time does not.

Usage::

    python bench/lib_speed.py                      # widths 256 512 1024 2048, N = 10^4
    python bench/lib_speed.py --widths 256 512 --n 2000 --edges
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(width: int, n: int, edges: bool, threads: int) -> dict:
    import torch
    from torch import nn

    sys.path.insert(0, str(ROOT))
    from theory.interaction import interaction_basis

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        layers = [nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(2)]
        layers.append(nn.Linear(width, width))
    x = torch.randn(n, width, generator=g)
    interaction_basis(layers, x[:64], edges=False, progress=False)  # warm-up (lazy init)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0, wall0 = time.process_time(), time.perf_counter()
    lib = interaction_basis(layers, x, edges=edges, progress=False)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"width": width, "n": n, "wall": wall, "cpu": cpu,
            "extra_mib": (after - before) / 1024, "kept": [lb.n_kept for lb in lib.layers]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--edges", action="store_true", help="also compute the edges")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.edges, args.threads)))
        return
    print(f"interaction basis of a 3-layer ReLU MLP, N = {args.n}, float64, "
          f"edges={args.edges}, {args.threads} threads")
    print(f"{'width':>6} {'wall s':>8} {'cpu s':>8} {'peak extra MiB':>15} "
          f"{'/ (8 d² B)':>11}  kept dims")
    for w in args.widths:
        cmd = [sys.executable, __file__, "--worker", str(w), "--n", str(args.n),
               "--threads", str(args.threads)] + (["--edges"] if args.edges else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        ratio = r["extra_mib"] * 2**20 / (8 * w * w)
        print(f"{w:>6} {r['wall']:>8.1f} {r['cpu']:>8.1f} {r['extra_mib']:>15.0f} "
              f"{ratio:>11.1f}  {r['kept']}", flush=True)


if __name__ == "__main__":
    main()
