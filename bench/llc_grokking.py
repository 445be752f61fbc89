"""The LLC while a one-layer transformer groks modular addition, tracked with llc.LLCTracker.

A one-layer transformer (:class:`llc.demos.ModularAdditionTransformer`: d_model 32, 4 heads,
MLP 128, no LayerNorm, 15,584 parameters) learns ``a + b mod 47`` from 40 % of the 2,209 pairs
(884 training pairs) with full-batch AdamW (lr 1e-3, weight decay 2.0, betas 0.9/0.98) for
5,000 steps. It memorises the training pairs first (train accuracy 100 % from step ~450) and
generalises about 2,000 steps later (test accuracy ≥ 99 % from step ~2,300): grokking.

The LLC is estimated on the training set (cross-entropy) at step 0 and 25 log-spaced steps from
20 to 5,000 by ``llc.LLCTracker``: nβ = n / log n and γ = 0.3 (the tracker's defaults, fixed
for the run), and fixed short chains for speed (``llc.demos.TRACK``): RMSprop-SGLD, 4 chains,
minibatches of 256, 1,000 warm-up steps and 1,000 draws. They do not equilibrate fully on this
network (R-hat up to 1.4 from step 100 on, up to 1.9 on the untrained network; an LLCWarning for
most estimates): the values are those of this estimator, to be compared with each other, not
converged λ. With 400 + 400 steps the shape is the same, with a lower level after grokking
(peak 604, after grokking 118, against 598 and 199). The known picture (Nanda et al. 2023;
Hoogland et al. 2024; devinterp's grokking example) is that λ̂ rises while the network memorises
and falls when it generalises, weight decay replacing the memorising solution by a simpler one.

Prints training progress, the tracker's table and the key points (steps of memorisation and
grokking, λ̂ at initialisation, memorisation, peak, grokking and the end), and writes a figure:
λ̂ (with the training loss) above, train and test accuracy and loss below.

Run: ``python bench/llc_grokking.py [--out validate_out/llc_grokking.png] [--small]``

About 6 minutes on one loaded CPU core (training ~25 s, 26 estimates ~6 min). ``--small``: p = 23,
d_model 16, 600 steps and 6 estimates of 2 short chains, seconds (it memorises but does not
grok; ``tests/llc/test_grokking_demo.py`` runs the same settings).
"""

from __future__ import annotations

import argparse
import os
import re
import time
import warnings
from collections import Counter

import torch

import llc
from llc.demos import SMALL, grokking


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="validate_out/llc_grokking.png", help="figure path")
    ap.add_argument("--small", action="store_true", help="seconds-long version (no grokking)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)  # a small model on a shared machine: threads contend
    settings = dict(SMALL) if args.small else {}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", llc.LLCWarning)  # counted in the table, listed below
        run = grokking(**settings, log=lambda line: print(line, flush=True), log_every=500)
    total = time.perf_counter() - t0
    c = run.config
    print(
        f"\np = {c['p']}, {c['n_train']} training / {c['n_test']} test pairs, {c['params']:,} "
        f"parameters; {c['steps']} steps of AdamW (lr {c['lr']:g}, weight decay "
        f"{c['weight_decay']:g}); tracker: {c['sampler']}, {c['num_chains']} chains, batch "
        f"{c['batch_size']}, {c['num_burnin']} warm-up steps, {c['num_draws']} draws, nβ "
        f"{run.trajectory.records[0].settings['nbeta']:.1f}, γ "
        f"{run.trajectory.records[0].settings['localization']:g}\n"
    )
    print(run.summary())
    counts = Counter(  # numbers blanked, so that one kind of warning is counted once
        re.sub(r"\d+\.\d+|\d+", "…", w.split(". ")[0])
        for r in run.trajectory.records
        for w in r.warnings
    )
    for message, k in counts.most_common():
        print(f"warning in {k} of {len(run.trajectory.records)} estimates: {message}")
    print(f"total {total:.0f} s")
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        run.plot(args.out)
        print(f"figure: {args.out}")
    return run


if __name__ == "__main__":
    main()
