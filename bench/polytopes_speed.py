"""Exact region enumeration: time and region count against width and depth.

Usage::

    MPLBACKEND=Agg python bench/polytopes_speed.py          # full tables (~3-5 min)
    MPLBACKEND=Agg python bench/polytopes_speed.py --quick  # smaller grid

Prints three tables:
  1. 2-D inputs: polygon splitting vs DFS + HiGHS LP (side-by-side ratio);
  2. 3-D inputs: DFS + LP with bound propagation only vs LP bounding boxes, and
     the direct HiGHS object vs scipy.optimize.linprog;
  3. the target: a 2-D-input net with >= 10^4 regions, enumerated by both methods.
Networks: Linear/ReLU MLPs, weights N(0, 1/fan_in), biases N(0, 0.25), seed 0,
box [-3, 3]^d.  All times are wall-clock seconds on this machine's CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from theory.models import random_mlp  # noqa: E402
from theory.polytopes import enumerate_regions, region_bounds  # noqa: E402


def run(model, d, **kw):
    lo, hi = -3 * np.ones(d), 3 * np.ones(d)
    t0 = time.perf_counter()
    e = enumerate_regions(model, lo, hi, progress=False, **kw)
    return e, time.perf_counter() - t0


def table_2d(widths, depths, lp_cap):
    print("\n## 2-D input, box [-3, 3]^2")
    print("| width | depth | regions | Serra bound | polygon s | LP s | LP/polygon | LPs/region |")
    print("|---|---|---|---|---|---|---|---|")
    for depth in depths:
        for w in widths:
            arch = [2] + [w] * depth
            model = random_mlp(arch + [1])
            ep, tp = run(model, 2, method="polygon")
            if len(ep) <= lp_cap:
                el, tl = run(model, 2, method="lp")
                assert len(el) == len(ep), (len(el), len(ep))
                lp = f"{tl:.2f} | {tl / tp:.1f}x | {el.n_lp / len(el):.2f}"
            else:
                lp = "- | - | -"
            bound = region_bounds(arch).serra
            print(f"| {w} | {depth} | {len(ep)} | {bound:.3g} | {tp:.2f} | {lp} |")


def table_3d(widths, depths):
    print("\n## 3-D input, box [-3, 3]^3 (DFS + HiGHS LP)")
    print(
        "| width | depth | regions | propagation s | LPs | + LP boxes s | LPs "
        "| linprog s | highs speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for depth in depths:
        for w in widths:
            model = random_mlp([3] + [w] * depth + [1])
            e1, t1 = run(model, 3)
            e2, t2 = run(model, 3, bbox_lp=True)
            assert len(e1) == len(e2)
            if len(e1) <= 600:
                e3, t3 = run(model, 3, lp_backend="linprog")
                assert len(e3) == len(e1)
                lin = f"{t3:.2f} | {t3 / t1:.1f}x"
            else:
                lin = "- | -"
            print(
                f"| {w} | {depth} | {len(e1)} | {t1:.2f} | {e1.n_lp} | {t2:.2f} | {e2.n_lp} "
                f"| {lin} |"
            )


def target(arch):
    print(f"\n## Target: >= 10^4 regions of a 2-D input net, architecture {arch}")
    model = random_mlp(arch + [1])
    print("| method | regions | seconds | LPs | regions/s |")
    print("|---|---|---|---|---|")
    for method in ("polygon", "lp"):
        e, t = run(model, 2, method=method)
        print(f"| {method} | {len(e)} | {t:.2f} | {e.n_lp} | {len(e) / t:.0f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller grid")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, numpy {np.__version__}, threads 1")
    if args.quick:
        table_2d([8, 16, 32], [1, 2], lp_cap=2000)
        table_3d([6, 10], [1, 2])
    else:
        table_2d([16, 32, 64], [1, 2, 3], lp_cap=12000)
        table_3d([8, 12, 16], [1, 2, 3])
        target([2, 64, 64, 64])


if __name__ == "__main__":
    main()
