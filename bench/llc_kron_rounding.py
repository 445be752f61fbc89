"""kron_sgld's transport on a deep network, by the precision of the positions and evaluations.

    python bench/llc_kron_rounding.py [--name "DLN 70x7"] [--steps 2000]

Three runs of ``llc.warmup.kron_warmup`` (seed 0, 8 chains, batch 512, n = 10⁴, the transport for
``--steps`` steps at ε_T, then the settling at ε_D), which differ only in precision:

- ``rounded``: float32 evaluations, and the positions rounded to float32 after every step (the
  kernel before it carried float64 positions; emulated by resetting its float64 copy);
- ``float64 positions``: float32 evaluations, float64 positions (the kernel as it is);
- ``float64``: the model and the positions in float64.

Printed: the energy ``nβ (L_B − L_B(w*))`` averaged over each 250 transport steps and over the
settling, and κ̂ (the largest curvature in the metric's units, by power iteration) at w* and
after the transport, in the evaluations' precision. λ_n for comparison: ``python -m llc validate
--large`` prints it. About 4 minutes per run on 70x7 (2 CPU cores).
"""

import argparse
import math
import time
from dataclasses import replace

import torch

from llc.estimator import _kernel_params
from llc.kernels import get_kernel, kron_sgld
from llc.potential import Potential
from llc.sampling import Chains
from llc.settings import LLCSettings
from llc.validate import SUITE_LARGE, build
from llc.warmup import _metric_curvature, kron_warmup

CHAINS, BATCH, N, SEED = 8, 512, 10_000, 0


def _rounding_step(state, grad, noise, params):
    """The step from the float32 position, as if the positions were rounded after every step."""
    return kron_sgld.step(state._replace(exact=state.position.double()), grad, noise, params)


def run(name: str, mode: str, steps: int) -> str:
    spec = next(s for s in SUITE_LARGE if s.name.startswith(name))
    model, data, _ = build(spec, N, seed=SEED)
    pot = Potential(model, data, dtype=torch.float64 if mode == "float64" else None)
    kernel = get_kernel("kron_sgld")
    if mode == "rounded":
        kernel = replace(kernel, step=_rounding_step)
    settings = LLCSettings(sampler="kron_sgld", progress=False)
    with Chains.from_seed(pot, CHAINS, seed=SEED, batch_size=BATCH) as chains:
        params = _kernel_params(kernel, settings, N / math.log(N), chains)
        start = pot.center.expand(CHAINS, -1).clone()
        state = kernel.init(start, chains.randomness.noise(), params)
        k0 = _metric_curvature(chains, params, state.position)
        t = time.perf_counter()
        warm = kron_warmup(chains, kernel, params, state, max_windows=20, num_steps=steps)
        seconds = time.perf_counter() - t
        k1 = _metric_curvature(chains, params, warm.state.position)
    trace = warm.earlier[0].llc_trace
    means = [f"{trace[:, i : i + 250].mean():.0f}" for i in range(0, trace.shape[1], 250)]
    return (
        f"{mode:<18} transport energy by 250 steps: {' '.join(means)}; settling "
        f"{warm.llc_trace.mean():.0f}; κ̂ {k0:.3g} -> {k1:.3g}; {seconds:.0f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="DLN 70x7")
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    for mode in ("rounded", "float64 positions", "float64"):
        print(run(args.name, mode, args.steps), flush=True)


if __name__ == "__main__":
    main()
