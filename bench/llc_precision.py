"""The estimator's speed and λ̂ at each float32 matmul precision, side by side in one run.

For each model, ``llc.estimate_llc`` with a fixed step and fixed steps (8 chains, batch 512,
``--steps`` draws after 10 burn-in steps; no warm-up, so that every precision runs the same
number of steps) at ``matmul_precision="highest"``, ``"high"`` and ``"medium"`` (strict fp32,
TF32 where the hardware has it, bf16 products with fp32 accumulation where it has bf16 matrix
units). Each call is timed twice and the faster kept; the columns give seconds per 1,000 steps,
the speed-up over "highest", and λ̂ − λ̂(highest) in units of the combined Monte Carlo standard
error (same seed, so the chains are coupled and a difference is the precision's). The first
line reports the 1024² matmul rate at each level.

    python bench/llc_precision.py                  # the default models, 1 thread
    python bench/llc_precision.py --threads 2 --steps 500

Models (``llc.validate.build``, at the teacher, n = 10 000): RRR 128/256/512 of rank 1 and DLN
60x6 r10 (hand-written MLP path, ``bmm``), and DLN 20x6 behind a custom ``forward`` (the
generic ``vmap`` path).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import torch
from torch import nn

import llc
from llc.validate import SuiteModel, build

LEVELS = ("highest", "high", "medium")
MODELS = {
    "RRR 128": SuiteModel("RRR 128-128-128 r1", (128, 128, 128), 1),
    "RRR 256": SuiteModel("RRR 256-256-256 r1", (256, 256, 256), 1),
    "RRR 512": SuiteModel("RRR 512-512-512 r1", (512, 512, 512), 1),
    "DLN 60x6": SuiteModel("DLN 60x6 r10", (60,) * 6, 10),
    "DLN 20x6 generic": SuiteModel("DLN 20x6 r5", (20,) * 6, 5),
}


class Custom(nn.Module):
    """The same linear layers behind a custom forward: the generic (vmap) path."""

    def __init__(self, seq: nn.Sequential):
        super().__init__()
        self.layers = nn.ModuleList(m for m in seq if isinstance(m, nn.Linear))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def matmul_rates(size: int = 1024, reps: int = 10) -> dict:
    a = torch.randn(size, size, generator=torch.Generator().manual_seed(0))
    rates, before = {}, torch.get_float32_matmul_precision()
    try:
        for level in LEVELS:
            torch.set_float32_matmul_precision(level)
            a @ a
            t0 = time.perf_counter()
            for _ in range(reps):
                a @ a
            rates[level] = 2 * size**3 * reps / (time.perf_counter() - t0) / 1e9
    finally:
        torch.set_float32_matmul_precision(before)
    return rates


def run(model, data, level: str, steps: int, eps: float):
    kw = dict(step_size=eps, num_burnin=10, num_draws=steps, num_chains=8, batch_size=512,
              localization=1.0, precondition=False, compensate_noise=False, progress=False,
              seed=0, matmul_precision=level)  # fmt: skip
    best, res = math.inf, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", llc.LLCWarning)
        for _ in range(2):
            t0 = time.perf_counter()
            res = llc.estimate_llc(model, data, **kw)
            best = min(best, time.perf_counter() - t0)
    return best, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rates = matmul_rates()
    print(f"torch {torch.__version__}, {args.threads} thread(s); 1024² matmul GFLOP/s: "
          + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()))  # fmt: skip
    head = f"{'model':<18}{'d':>8}" + "".join(f"{lv + ' s':>12}" for lv in LEVELS)
    head += f"{'high ×':>8}{'medium ×':>9}{'Δλ̂ high/σ':>11}{'Δλ̂ medium/σ':>13}"
    print(head)
    print("-" * len(head))
    for name in args.models:
        model, data, _ = build(MODELS[name], 10_000)
        if name.endswith("generic"):
            model = Custom(model)
        eps = 1e-6 if name.startswith("DLN") else 1e-5
        out = {lv: run(model, data, lv, args.steps, eps) for lv in LEVELS}
        per_k = {lv: 1000 * out[lv][0] / (args.steps + 10) for lv in LEVELS}
        ref = out["highest"][1]
        z = {lv: (out[lv][1].mean - ref.mean) / math.hypot(out[lv][1].mcse, ref.mcse)
             for lv in LEVELS}  # fmt: skip
        speed = {lv: per_k["highest"] / per_k[lv] for lv in LEVELS}
        row = f"{name:<18}{ref.config['d']:>8,}" + "".join(f"{per_k[lv]:>12.2f}" for lv in LEVELS)
        row += f"{speed['high']:>7.2f}×{speed['medium']:>8.2f}×"
        row += f"{z['high']:>11.2f}{z['medium']:>13.2f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
