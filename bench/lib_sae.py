"""Is the interaction basis a better coordinate system for sparse autoencoders?

The experiment lives in :mod:`theory.interaction_sae`; this script runs it at full size.

A toy network with known structure is trained here: ``n_feat`` sparse non-negative input features
(each active with probability ``p``, value U(0, 1)) pass through ``Linear-ReLU-Linear-ReLU-Linear``
and the network is trained to output them again.  Sparse autoencoders (SAEs) with the same budget
(dictionary size, L1 coefficient, steps, learning rate, batch) are trained on the first hidden
layer's activations in three coordinate systems:

* ``raw``: the activations ``h``;
* ``pca``: centered PCA coordinates ``(h - μ) U`` (all non-zero-variance directions);
* ``lib``: interaction-basis features ``f̂ = (h, 1) C``.

Each basis's coordinates are scaled by one scalar so that ``E‖v - v̄‖² = 1`` (so one L1
coefficient means the same in all of them).  Reported, as mean ± standard error over seeds:

* ``out FVU``: the SAE reconstruction is mapped back to activations and spliced into the
  network; ``E‖y(ĥ) - y(h)‖² / E‖y - ȳ‖²`` on held-out inputs (0 = perfect);
* ``act FVU``: the same for the hidden activations themselves;
* ``L0``: mean number of active SAE latents per input;
* ``aligned LIB / PCA / random / true``: fraction of live SAE features whose decoder direction,
  mapped to activation space, has ``|cos| ≥ 0.9`` with a single interaction direction (a row of
  ``C⁺``), a single PCA direction, a single direction of a random orthonormal basis (chance
  level) or a ground-truth feature direction ``E[h | x_i > 0] - E[h | x_i = 0]``.

Usage::

    python bench/lib_sae.py                 # 3 seeds, full size (~1-2 min on 2 cores)
    python bench/lib_sae.py --seeds 5 --steps 3000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from priors.sae import train_sae  # noqa: E402
from theory.interaction_sae import compare_sae_bases  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description="SAEs in the raw, PCA and interaction bases")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2000, help="SAE training steps")
    ap.add_argument("--l1", type=float, default=0.1)
    ap.add_argument("--m", type=int, default=64, help="SAE dictionary size")
    args = ap.parse_args()
    torch.set_num_threads(2)
    res = compare_sae_bases(
        train_sae, seeds=tuple(range(args.seeds)), sae_steps=args.steps, l1=args.l1, m=args.m
    )
    print(
        f"SAEs on hidden layer 1 of a trained sparse-feature toy model (16 features, width 32),"
        f" dictionary {args.m}, L1 {args.l1}, {args.steps} steps, {args.seeds} seeds "
        "(mean ± s.e.)"
    )
    print(res.table())


if __name__ == "__main__":
    main()
