"""Sparse autoencoders trained with L1 vs. penalties derived from the activation prior.

Toy model of superposition (:mod:`priors.superposition`; SAEs from :mod:`priors.sae`):
``m`` ground-truth features (random unit directions in ``d < m``
dimensions) whose activations are drawn from a sparse prior, spike-and-slab
``(1 − π) δ₀ + π g`` with a heavy-tailed slab g (Lomax by default), observed as
``x = a W + σ ε``. Sparse autoencoders (ReLU encoder, unit-norm decoder rows, as many latents
as true features) are trained for the same number of steps with the MAP objective

    loss = ||x − x̂||² / (2σ²) + λ · Σ_i pen(f_i),

for three penalties, each at the same grid of multipliers λ:

* ``L1``: pen(f) = f / mean(a), the exponential (= one-sided Laplace) prior fitted to the
  true activations (λ = 1 is its MAP weight);
* ``true prior``: ``priors.penalty(spike_and_slab(g, π)).to_torch()``, derived symbolically;
* ``fitted prior``: ``priors.fit`` on the latents of the L1 SAE (λ = 1) of the same seed,
  then ``priors.penalty(report.best).to_torch()`` -- the pipeline available without the truth.

The L0 part of a spike-and-slab penalty has zero gradient, so gradient training only sees
the slab part (documented in the output); the penalties are used as ``to_torch()`` returns
them: 0 with gradient 0 at f = 0 (the spike), also for slabs with g(0⁺) = 0 such as a fitted
Gamma or log-normal. Reported on held-out data: feature recovery (mean
over true features of the max cosine similarity to a decoder row, MMCS, and the fraction
with cosine > 0.9), normalized reconstruction error ||x − x̂||² / ||x − x̄||² and L0 (active
latents per sample; the truth has π·m), mean ± sd over seeds.

Run: ``python bench/priors_sae.py`` (about 2-3 min on 2 cores), ``--quick`` (~30 s).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import priors  # noqa: E402
from priors.fit import fit as fit_prior  # noqa: E402
from priors.prior import Prior  # noqa: E402
from priors.sae import sae_metrics, train_sae  # noqa: E402
from priors.superposition import superposition_toy  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 seeds, 1000 steps, lambdas 10 100")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--m", type=int, default=64, help="true features (= SAE latents)")
    p.add_argument("--d", type=int, default=32, help="observed dimension")
    p.add_argument("--pi", type=float, default=0.05, help="P(feature active)")
    p.add_argument("--slab", default="lomax", choices=["lomax", "expon"])
    p.add_argument("--sigma", type=float, default=0.05, help="observation noise sd")
    p.add_argument(
        "--lams",
        type=float,
        nargs="+",
        default=[10.0, 30.0, 100.0, 300.0],
        help="penalty multipliers; the fitted prior fits the L1 SAE at the first",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.lams = 2, 1000, [10.0, 100.0]
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest and shares the machine
    slab_params = {"lomax": {"c": 3.0, "scale": 2.0}, "expon": {"scale": 1.0}}[args.slab]
    true_prior = priors.spike_and_slab(slab=Prior.from_scipy(args.slab, **slab_params), pi=args.pi)
    true_pen = priors.penalty(true_prior)
    print(
        f"truth: m = {args.m} features in d = {args.d}, spike-and-slab pi = {args.pi}, "
        f"slab {args.slab}{slab_params}, sigma = {args.sigma}"
    )
    print(f"SAE: {args.m} latents, {args.steps} Adam steps x batch 512, lr 3e-3, same for all")
    print(
        f"true-prior penalty on a != 0: {true_pen.meta['slab_penalty']} + "
        f"{float(true_pen.meta['l0_weight']):.3f} (the L0 part has zero gradient)"
    )
    rows: dict[tuple[str, float], list[dict]] = {}
    fitted_desc = []
    t0 = time.time()
    steps, lr, batch = args.steps, 3e-3, 512

    def run(name, pen, lam, prob, x_train, x_test, seed):
        sae = train_sae(x_train, pen, n_latents=args.m, coefficient=lam, steps=steps,
                        batch_size=batch, lr=lr, reconstruction_scale=1 / (2 * args.sigma**2),
                        seed=seed)  # fmt: skip
        rows.setdefault((name, lam), []).append(sae_metrics(sae, x_test, prob.w))
        return sae

    for seed in range(args.seeds):
        prob = superposition_toy(args.m, args.d, args.pi, args.slab, slab_params, args.sigma, seed)
        gen = torch.Generator().manual_seed(99_000 + seed)
        a_train, x_train = prob.sample(50_000, gen)
        _, x_test = prob.sample(4096, gen)
        rate = 1.0 / float(a_train.mean())  # exponential prior fitted to all activations
        l1_saes = [
            run("L1", lambda f, r=rate: r * f, lam, prob, x_train, x_test, seed)
            for lam in args.lams
        ]
        true_torch = true_pen.to_torch()  # 0 at f = 0 (the spike), finite gradient
        for lam in args.lams:
            run("true prior", true_torch, lam, prob, x_train, x_test, seed)
        # without the truth: fit the latents of the L1 SAE, derive its penalty, retrain
        with torch.no_grad():
            latents = l1_saes[0].encode(x_train[:4096])
        rep = fit_prior(latents, gof_top=0, seed=seed)
        fitted_desc.append(
            f"seed {seed}: {rep.best_fit.family} "
            f"{ {k: round(v, 3) for k, v in rep.best_fit.params.items()} }, "
            f"P(a != 0) = {rep.pi:.3f}"
        )
        fit_torch = priors.penalty(rep.best).to_torch()
        for lam in args.lams:
            run("fitted prior", fit_torch, lam, prob, x_train, x_test, seed)
        print(f"  seed {seed} done ({time.time() - t0:.0f} s)", file=sys.stderr)
    print(f"fitted (priors.fit, BIC) to the latents of the L1 SAE at lambda = {args.lams[0]:g}:")
    for s in fitted_desc:
        print("  " + s)
    print(f"true L0 = pi*m = {args.pi * args.m:.2f}\n")
    keys = ["mmcs", "rec>0.9", "nmse", "l0"]
    head = f"{'penalty':<14}{'lambda':>7}" + "".join(f"{k:>16}" for k in keys)
    print(head)
    print("-" * len(head))
    order = {"L1": 0, "true prior": 1, "fitted prior": 2}
    for (name, lam), res in sorted(rows.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        print(f"{name:<14}{lam:>7g}" + "".join(_cell(res, k) for k in keys))
    print("\nbest lambda of each penalty by mean MMCS (same grid, same steps):")
    for name in order:
        lam, res = max(
            ((lam, r) for (n, lam), r in rows.items() if n == name),
            key=lambda t: np.mean([r["mmcs"] for r in t[1]]),
        )
        print(f"{name:<14}{lam:>7g}" + "".join(_cell(res, k) for k in keys))
    print(f"\n{args.seeds} seeds, mean ± sd; total {time.time() - t0:.0f} s")


def _cell(res: list[dict], key: str) -> str:
    v = np.array([r[key] for r in res])
    sd = v.std(ddof=1) if len(v) > 1 else math.nan
    return f"{v.mean():>9.3f} ± {sd:<4.3f}"


if __name__ == "__main__":
    main()
