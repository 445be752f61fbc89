"""Cost and agreement of LLC tracking against cold default calls, side by side in one run.

    python bench/llc_tracking.py            # 50 checkpoints of a small MLP
    python bench/llc_tracking.py --quick    # 10 checkpoints, fewer draws (a smoke run)

A ReLU (or ``--activation tanh``) MLP 4-16-16-2 (386 parameters) is trained with Adam on
n = 2000 noisy teacher samples; 50 checkpoints are saved over the second half of
training. The table compares
:func:`llc.track_checkpoints` over all of them (defaults: warm start, one nβ and γ) with a cold
default :func:`llc.estimate_llc` at three of them: CPU seconds (one thread) and
``z = (λ̂_tracked − λ̂_cold) / √(MCSE_tracked² + MCSE_cold²)``. Target: tracking costs at most
5× one cold call, and |z| ≤ 2 at each of the three.
"""

from __future__ import annotations

import argparse
import functools
import math
import time

import torch
from torch import nn

import llc


def make_problem(n: int = 2000, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    teacher = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    with torch.no_grad():
        for p in teacher.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
        x = torch.randn(n, 4, generator=gen)
        y = teacher(x) + 0.3 * torch.randn(n, 2, generator=gen)
    return x, y


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def model_factory(activation: str = "relu") -> nn.Module:
    act = ACTIVATIONS[activation]
    return nn.Sequential(nn.Linear(4, 16), act(), nn.Linear(16, 16), act(), nn.Linear(16, 2))


def train(x, y, steps: int, num_checkpoints: int, seed: int = 0, activation: str = "relu"):
    """Adam on the full batch; checkpoints evenly over the second half of training."""
    torch.manual_seed(seed)
    model = model_factory(activation)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    keep = {
        round(steps / 2 + i * (steps / 2) / (num_checkpoints - 1)) for i in range(num_checkpoints)
    }
    checkpoints, losses = {}, {}
    for t in range(steps + 1):
        loss = 0.5 * ((model(x) - y) ** 2).sum(1).mean()
        if t in keep:
            checkpoints[t] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            losses[t] = loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return checkpoints, losses


def cpu_timed(fn):
    t0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - t0, time.perf_counter() - w0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
    args = parser.parse_args()
    factory = functools.partial(model_factory, args.activation)
    torch.set_num_threads(1)
    num = 10 if args.quick else 50
    extra = {"max_draws": 2000} if args.quick else {}
    x, y = make_problem()
    checkpoints, losses = train(x, y, 3000, num, seed=args.seed, activation=args.activation)
    steps = sorted(checkpoints)
    traj, cpu_track, wall_track = cpu_timed(
        lambda: llc.track_checkpoints(
            checkpoints, factory, (x, y), train_losses=losses, progress=False,
            seed=args.seed, **extra,
        )
    )  # fmt: skip
    print(traj.summary())
    rows, cold_cpu = [], []
    for i in (0, len(steps) // 2, len(steps) - 1):
        model = factory()
        model.load_state_dict(checkpoints[steps[i]])
        cold, cpu, wall = cpu_timed(
            lambda m=model: llc.estimate_llc(
                m, (x, y), progress=False, seed=args.seed + 100, **extra
            )
        )
        cold_cpu.append(cpu)
        rec = traj.records[i]
        z = (rec.llc - cold.mean) / math.hypot(rec.mcse, cold.mcse)
        rows.append((steps[i], rec.llc, rec.mcse, cold.mean, cold.mcse, z, rec.seconds, cpu))
    mean_cold = sum(cold_cpu) / len(cold_cpu)
    print(f"\nLLC tracking against cold default calls ({args.activation} MLP 4-16-16-2, d = 386, "
          f"n = 2000, "
          f"{num} checkpoints, one thread)")  # fmt: skip
    print(f"{'step':>6} {'tracked λ̂':>11} {'MCSE':>6} {'cold λ̂':>9} {'MCSE':>6} {'z':>6} "
          f"{'track s':>8} {'cold CPU s':>10}")  # fmt: skip
    for step, lt, mt, lc, mc, z, st, sc in rows:
        cells = f"{lc:>9.3f} {mc:>6.3f} {z:>+6.2f} {st:>8.1f} {sc:>10.1f}"
        print(f"{step:>6} {lt:>11.3f} {mt:>6.3f} {cells}")
    burn = [r.settings["num_burnin"] for r in traj.records]
    draws = [r.settings["num_draws"] for r in traj.records]
    print(f"\ntracking {num} checkpoints: {cpu_track:.1f} CPU s ({wall_track:.1f} s wall); one "
          f"cold default call: {mean_cold:.1f} CPU s (mean of 3)")  # fmt: skip
    print(f"cost ratio: {cpu_track / mean_cold:.2f} cold calls (target ≤ 5)")
    later = sorted(burn[1:])[len(burn[1:]) // 2]
    reused = sum(r.settings["reused"] for r in traj.records)
    print(f"warm-up steps: first {burn[0]}, later median {later}; "
          f"draws per estimate: median {sorted(draws)[len(draws) // 2]}; reused settings at "
          f"{reused} of {num - 1} warm starts")  # fmt: skip
    print(f"max |z| at the 3 checkpoints: {max(abs(r[5]) for r in rows):.2f} (target ≤ 2)")


if __name__ == "__main__":
    main()
