"""Which features of a small network are natural latents over two views of a planted cause?

Data: Z uniform on {0, 1}; two views, each 4 noisy copies of Z (a copy is Z with probability
0.8 + 0.2/2, else the other value).  A 1-hidden-layer ReLU MLP (width 8) reads both views and
predicts Z.  For each hidden unit, the top principal directions (PC) and the top
interaction-basis directions (IB, theory.interaction, Bushnaq et al. 2024) of the hidden layer
(all binned into 2 cells), the predicted class and two baselines, we print the exact
natural-latent errors
over (view 1, view 2) in bits, next to the planted Z, then estimates from held-out samples
with 90% bootstrap intervals and their empirical coverage.  Several training seeds are
summarised at the end.

Run:  python bench/natural_latents_network.py  [--seeds 0 1 2] [--bins 2]
      [--samples 5000 20000] [--reps 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from theory.natural_latents import (
    PlantedCause,
    candidate_labels,
    candidate_latent_table,
    natural_latent_errors,
    natural_latent_errors_from_samples,
    train_two_view_mlp,
)


def exact_report(cause, feature):
    """Exact errors (bits) of Z (feature=None) or of a label array over the two views."""
    p = cause.joint()
    if feature is None:
        return natural_latent_errors(p, [1, 2], 0, base=2)
    q = np.zeros(p.shape + (int(feature.max()) + 1,))
    a, b = np.indices(feature.shape)
    q[:, a, b, feature] = p
    return natural_latent_errors(q, [1, 2], 3, base=2)


def sample_section(model, cause, table, bins, sizes, reps, seed):
    labels = candidate_labels(model, cause, bins)
    units = [k for k in table.names if k.startswith("unit")]
    best = min(units, key=lambda k: table.get(k)["mediation"] + 2 * table.get(k)["redundancy"])
    names = ("Z", "PC1", "IB1", "argmax", best, "const")
    exact = {k: exact_report(cause, None if k == "Z" else labels[k]) for k in names}
    print(f"\nfrom held-out samples: Miller-Madow estimate of eps_med and eps_red (view 2) with "
          f"its 90% basic bootstrap interval (200 replicates), exact value in brackets, bits;\n"
          f"coverage = fraction of {reps} independent draws whose intervals contain the exact "
          f"(eps_med, eps_red view 1, eps_red view 2)")
    print(f"{'N':>6} {'latent':>7} {'eps_med':>29} {'eps_red,2':>29} {'coverage':>17}")
    for n in sizes:
        for name in names:
            ex = exact[name]
            truth = np.array([ex.mediation, *ex.redundancy])
            hits = np.zeros(3)
            for r in range(reps):
                z, x1, x2 = cause.sample(n, seed=10_000 * (seed + 1) + r)  # held out
                feat = z if name == "Z" else labels[name][x1, x2]
                s = natural_latent_errors_from_samples([x1, x2], feat, "miller_madow", base=2,
                                                       seed=r)
                ivs = np.array([s.mediation_interval, *s.redundancy_intervals])
                hits += (ivs[:, 0] <= truth) & (truth <= ivs[:, 1])
                if r == 0:
                    first = s
            (mlo, mhi), (rlo, rhi) = first.mediation_interval, first.redundancy_intervals[1]
            cov = "/".join(f"{h / reps:.2f}" for h in hits)
            print(f"{n:>6} {name:>7} {first.mediation:7.4f} [{mlo:6.3f},{mhi:6.3f}] "
                  f"({truth[0]:6.4f}) {first.redundancy[1]:7.4f} [{rlo:6.3f},{rhi:6.3f}] "
                  f"({truth[2]:6.4f}) {cov:>17}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bins", type=int, default=2)
    ap.add_argument("--samples", type=int, nargs="+", default=[5000, 20000])
    ap.add_argument("--reps", type=int, default=50, help="draws for the coverage column")
    args = ap.parse_args()
    torch.set_num_threads(1)  # tiny model: threads only add overhead on a shared machine
    cause = PlantedCause(n_values=2, n_copies=4, noise=0.2)
    summary = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        model, losses = train_two_view_mlp(cause, width=8, seed=seed)
        t_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        table = candidate_latent_table(model, cause, bins=args.bins)
        t_table = time.perf_counter() - t0
        if seed == args.seeds[0]:
            print(f"{cause}, width 8, bins {args.bins}, seed {seed}: final loss {losses[-1]:.4f},"
                  f" exact accuracy {table.accuracy:.4f}; train {t_train:.2f}s, table "
                  f"{t_table:.3f}s\n")
            print(table.to_text())
            sample_section(model, cause, table, args.bins, args.samples, args.reps, seed)
        units = [k for k in table.names if k.startswith("unit")]
        score = {k: table.get(k)["mediation"] + 2 * table.get(k)["redundancy"] for k in units}
        live = [k for k in units if table.get(k)["info_cause"] > 0.01]
        best = min(live, key=score.get) if live else units[0]
        summary.append((seed, table.accuracy, table.get("Z"), table.get("PC1"),
                        table.get("IB1"), table.get("argmax"), best, table.get(best),
                        len(units) - len(live)))
    print("\nsummary over training seeds (bits): eps = eps_med + 2 max eps_red")
    print(f"{'seed':>4} {'acc':>6} {'eps(Z)':>8} {'eps(PC1)':>9} {'eps(IB1)':>9} "
          f"{'eps(argmax)':>11} {'best unit':>9} {'eps(best)':>9} {'H(Z|best)':>9} "
          f"{'dead units':>10}")
    for seed, acc, z, pc, ib, am, best, b, dead in summary:
        def eps(r):
            return r["mediation"] + 2 * r["redundancy"]

        print(f"{seed:>4} {acc:6.4f} {eps(z):8.4f} {eps(pc):9.4f} {eps(ib):9.4f} "
              f"{eps(am):11.4f} {best:>9} {eps(b):9.4f} {b['cause_given']:9.4f} {dead:>10}")


if __name__ == "__main__":
    main()
