"""Speed of the derived SAE activation (`priors.sae.ProxActivation`), a ReLU and the exact prox.

For each prior, one training step's worth of work on a ``(batch, d_sae)`` block of
pre-activations, float32, one torch thread, side by side in one run:

* ``relu``: ``torch.relu`` forward and backward (the floor);
* ``activation``: ``ProxActivation`` forward and backward (table start, Newton, exact fallback;
  implicit gradients and the threshold's pseudo-derivative);
* ``exact``: ``priors.prox(pen).to_torch()`` forward only (what the activation would cost if it
  called the exact prox on every element).

Also the one-off construction time (tables of the dead zone and of the prox), and the largest
relative difference between the activation and the exact prox on the block.

Run: ``python bench/priors_sae_activation.py`` (about 1 min), ``--quick`` (smaller block).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import priors  # noqa: E402
from priors.sae import ProxActivation, l0_penalty  # noqa: E402

PRIORS = {
    "L1 (laplace)": lambda: priors.get("laplace", b=1),
    "L0": l0_penalty,
    "student-t ν=3": lambda: priors.get("student_t", nu=3, s=1),
    "gen. gaussian ½": lambda: priors.get("generalized_gaussian", p=0.5, s=1),
    "spike-slab gauss": lambda: priors.spike_and_slab("gaussian", pi=0.1, sigma=1),
    "spike-slab gamma": lambda: priors.spike_and_slab("gamma", pi=0.2, k=2, theta=1),
}


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    batch, d_sae = (256, 256) if args.quick else (1024, 512)
    repeats = 3 if args.quick else 5
    g = torch.Generator().manual_seed(0)
    v = torch.randn(batch, d_sae, generator=g)
    print(f"block {batch} x {d_sae} float32, one thread, best of {repeats}")
    head = f"{'prior':<18}{'build s':>9}{'relu ms':>9}{'act ms':>9}{'exact ms':>10}"
    print(head + f"{'act/relu':>10}{'exact/act':>11}{'max rel diff':>14}")
    for name, make in PRIORS.items():
        start = time.perf_counter()
        act = ProxActivation(make(), d_sae, t=0.1)
        build = time.perf_counter() - start
        vv = v.clone().requires_grad_()
        exact = priors.prox(act.penalty).to_torch()
        t_full = act.t.expand(batch, d_sae)
        steps = (
            lambda vv=vv: torch.relu(vv).sum().backward(),
            lambda vv=vv, act=act: act(vv).sum().backward(),
            lambda exact=exact, t_full=t_full: exact(torch.relu(v), t_full),
        )
        r, a, e = (best_of(f, repeats) for f in steps)
        with torch.no_grad():
            ref = exact(torch.relu(v).double(), t_full)
            diff = float(((act(v).double() - ref).abs() / ref.abs().clamp_min(1e-12)).max())
        print(f"{name:<18}{build:>9.2f}{r * 1e3:>9.2f}{a * 1e3:>9.1f}{e * 1e3:>10.1f}"
              f"{a / r:>10.0f}{e / a:>11.1f}{diff:>14.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
