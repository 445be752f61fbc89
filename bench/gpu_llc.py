"""The default call on large deep linear networks against their exact finite-n target.

For each size, a DLN at a normal-form teacher with realizable data (n = 10⁴) is estimated by
``llc.estimate_llc`` at its defaults (or with ``--budget`` seconds), and its exact target λ_n
comes from the Gibbs sampler ``theory.dln_gibbs_llc`` on the same device. Prints one row per
size: λ, λ_n ± MCSE, λ̂ ± MCSE, the error against λ_n, R-hat, how far the chains got from w*
against the posterior's spread (E‖w − w*‖; `bench/llc_posterior_start.py` says why that matters),
the steps run and the seconds of each. Target (issue 16): within 5 % of λ_n, at most 5 minutes
per call.

    python bench/gpu_llc.py --device cuda                 # 10⁵, 10⁶, 4·10⁶ parameters
    python bench/gpu_llc.py --device cuda --budget 240    # a time budget instead of the cap
    python bench/gpu_llc.py --quick                       # small sizes, to check it on a CPU
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from llc import estimate_llc
from llc.observables import Distance
from theory.gibbs import dln_gibbs_llc
from theory.models import normal_form_teacher, teacher_student_data

# (name, widths, rank): 4 layers each; ranks a tenth of the width
SIZES = {
    "1e5": ("DLN 160x5 r16", (160,) * 5, 16),
    "1e6": ("DLN 500x5 r50", (500,) * 5, 50),
    "4e6": ("DLN 1000x5 r100", (1000,) * 5, 100),
}
QUICK = {
    "2e3": ("DLN 20x6 r5", (20,) * 6, 5),
    "1e4": ("DLN 50x5 r5", (50,) * 5, 5),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(name, widths, rank, *, n, device, seed, budget, sweeps):
    gen = torch.Generator().manual_seed(seed)
    model = normal_form_teacher(widths, rank, seed=gen)
    x, y = teacher_student_data(model, n, widths[0], seed=gen)
    exact = float(model.learning_coefficient(rank).value)
    model = model.to(device)
    data = (x.to(device), y.to(device))
    _sync(device)
    t0 = time.perf_counter()
    res = estimate_llc(
        model, data, seed=seed, progress=False, budget=budget, observables=[Distance()]
    )
    _sync(device)
    t_est = time.perf_counter() - t0
    reached = float(np.sqrt(res.observables["distance"]).mean())
    w0 = [p.detach().double().cpu().numpy() for p in model.parameters()]

    def spread(ws):  # ‖w − w*‖ per chain
        return np.sqrt(sum(((w - c[None]) ** 2).sum((1, 2)) for w, c in zip(ws, w0)))[:, None]

    t0 = time.perf_counter()
    ref = dln_gibbs_llc(
        model, data, nbeta=res.nbeta, localization=res.localization, num_chains=4,
        num_sweeps=sweeps, seed=seed, progress=False, device=device, observe=spread,
    )  # fmt: skip
    t_gibbs = time.perf_counter() - t0
    d = sum(p.numel() for p in model.parameters())
    rel = (res.mean - ref.mean) / ref.mean
    steps = f"{res.num_burnin} ({res.config['spreading_steps']}) + {res.num_draws}"
    return (
        f"| {name} | {d:,} | {exact:.1f} | {ref.mean:.1f} ± {ref.mcse:.1f} | "
        f"{res.mean:.1f} ± {res.mcse:.1f} | {100 * rel:+.1f} % | {res.r_hat:.3f} | "
        f"{reached:.1f} of {ref.observed.mean[0]:.1f} | {steps} | "
        f"{t_est:.0f} | {t_gibbs:.0f} |"
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", default=None, help="comma-separated keys of SIZES (default all)")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=None, help="seconds per call (budget=)")
    ap.add_argument("--sweeps", type=int, default=300, help="Gibbs sweeps per chain")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a CPU")
    args = ap.parse_args(argv)
    table = QUICK if args.quick else SIZES
    keys = args.sizes.split(",") if args.sizes else list(table)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {where}; n = {args.n}; seed {args.seed}; budget {args.budget or 'work cap'}")
    print(
        "| model | d | λ | λ_n (Gibbs) | λ̂ ± MCSE | λ̂ − λ_n | R-hat | ‖w − w*‖ reached of"
        " posterior | warm-up (spreading) + draws | s (λ̂) | s (λ_n) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for key in keys:
        name, widths, rank = table[key]
        row = run(
            name, widths, rank, n=args.n, device=device, seed=args.seed, budget=args.budget,
            sweeps=args.sweeps,
        )  # fmt: skip
        print(row, flush=True)


if __name__ == "__main__":
    main()
