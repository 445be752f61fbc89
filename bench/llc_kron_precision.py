"""kron_sgld's energy on a deep network against the exact λ_n, by step size and by the dtype
of the evaluations.

    python bench/llc_kron_precision.py [--name "DLN 70x7"] [--dtypes float32,float64]
                                       [--factors 2,1] [--steps 2000] [--transport 2000]

For each dtype: the model and its data from ``llc.validate.build`` (seed 0, n = 10⁴), 8 chains,
batch 512; ``llc.warmup.kron_warmup`` with a ``--transport``-step transport and the 200-step
settling at the draws' step ε_D; then, from where the chains are, ``--steps`` steps at each
``factor · ε_D`` in turn (largest first). Printed per step size: the mean energy
``nβ (L_B − L_B(w*))`` over the last four fifths of the steps against λ_n
(``theory.dln_gibbs_llc``, 2,000 sweeps), its Monte Carlo error from batch means (4 blocks per
chain), and the means of the four quarters (a trend: the chains are still cooling). About 5
minutes per dtype at the defaults on 70x7 (2 CPU cores; float64 a third slower), 2 for λ_n.
"""

import argparse
import math
import time
from dataclasses import replace

import numpy as np
import torch

from llc.estimator import _kernel_params
from llc.kernels import get_kernel
from llc.potential import Potential
from llc.sampling import Chains
from llc.settings import LLCSettings
from llc.validate import SUITE_LARGE, build
from llc.warmup import kron_warmup, warmup
from theory import dln_gibbs_llc

CHAINS, BATCH, N, SEED = 8, 512, 10_000, 0


def summary(trace: np.ndarray, lam_n: float) -> str:
    keep = trace[:, trace.shape[1] // 5 :]
    blocks = np.stack(np.array_split(keep, 4, axis=1), 1).mean(2)  # (chain, 4)
    mean, mcse = keep.mean(), blocks.std(ddof=1) / math.sqrt(blocks.size)
    quarters = " ".join(f"{q:.0f}" for q in blocks.mean(0))
    return f"{mean:8.1f} ± {mcse:4.1f} {100 * (mean - lam_n) / lam_n:+6.1f} %   {quarters}"


def run(model, data, dtype: torch.dtype, factors, steps: int, transport: int, lam_n: float):
    pot = Potential(model, data, dtype=dtype)
    kernel = get_kernel("kron_sgld")
    settings = LLCSettings(sampler="kron_sgld", progress=False)
    with Chains.from_seed(pot, CHAINS, seed=SEED, batch_size=BATCH) as chains:
        params = _kernel_params(kernel, settings, N / math.log(N), chains)
        start = pot.center.expand(CHAINS, -1).clone()
        state = kernel.init(start, chains.randomness.noise(), params)
        t = time.perf_counter()
        warm = kron_warmup(chains, kernel, params, state, max_windows=20, num_steps=transport)
        eps_d, state = warm.step_sizes[1], warm.state
        told = summary(np.asarray(warm.llc_trace), lam_n)
        seconds = time.perf_counter() - t
        print(f"{str(dtype):<14}{'settling':>10}{'':>11}  {told}   ({seconds:.0f} s)", flush=True)
        for f in factors:
            t = time.perf_counter()
            run_f = warmup(chains, kernel, replace(params, step_size=f * eps_d), state,
                           adapt_step=False, num_steps=steps)  # fmt: skip
            state = run_f.state
            told = summary(np.asarray(run_f.llc_trace), lam_n)
            seconds = time.perf_counter() - t
            print(f"{str(dtype):<14}{f:>8g}ε_D {f * eps_d:>10.3g}  {told}   ({seconds:.0f} s)",
                  flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="DLN 70x7")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--factors", default="2,1")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--transport", type=int, default=2000)
    args = ap.parse_args()
    spec = next(s for s in SUITE_LARGE if s.name.startswith(args.name))
    model, data, _ = build(spec, N, seed=SEED)
    nbeta = N / math.log(N)
    lam_n = dln_gibbs_llc(model, data, nbeta=nbeta, num_sweeps=2000, seed=SEED, progress=False)
    print(f"{spec.name}: λ_n = {lam_n.mean:.1f} ± {lam_n.mcse:.1f} (Gibbs, 2,000 sweeps)")
    head = f"{'evaluations':<14}{'step':>10}{'ε':>11}  {'energy ± MCSE':>15} {'vs λ_n':>8}"
    print(head + "   quarters")
    factors = [float(f) for f in args.factors.split(",")]
    for name in args.dtypes.split(","):
        run(model, data, getattr(torch, name), factors, args.steps, args.transport, lam_n.mean)


if __name__ == "__main__":
    main()
