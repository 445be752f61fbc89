"""Is the interaction basis a better coordinate system for sparse autoencoders?

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
import copy
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from theory.interaction import interaction_basis  # noqa: E402
from theory.models import relu_autoencoder  # noqa: E402

BASES = ("raw", "pca", "lib", "lib τ=1e-4")


def sparse_inputs(n: int, n_feat: int, p: float, g: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, n_feat, generator=g) < p) * torch.rand(n, n_feat, generator=g)


def train_toy(seed: int = 0, n_feat: int = 16, hidden: int = 32, p: float = 0.1,
              steps: int = 2000) -> list[nn.Module]:
    """Train ``x -> x`` through two ReLU layers; return the three layers."""
    g = torch.Generator().manual_seed(seed)
    layers = relu_autoencoder(n_feat, hidden, seed)
    net = nn.Sequential(*layers)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        x = sparse_inputs(1024, n_feat, p, g)
        loss = ((net(x) - x) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for layer in layers:
        layer.requires_grad_(False)
    return layers


@dataclass(frozen=True)
class Basis:
    """Forward map ``h -> v`` (scaled) and its inverse, plus directions in activation space."""

    name: str
    fwd: Callable
    inv: Callable


def make_bases(libs: dict, h: torch.Tensor) -> dict[str, Basis]:
    """Raw, PCA and one interaction basis per entry of ``libs`` (name -> InteractionBasis)."""
    lb = next(iter(libs.values())).layers[1]
    mu = lb.mean
    u = lb.pca_basis[:-1, 1:]  # centered principal directions (constant excluded)
    maps = {"raw": (lambda a: a.double(), lambda v: v),
            "pca": (lambda a: (a.double() - mu) @ u, lambda v: v @ u.T + mu)}
    for name, lib in libs.items():
        maps[name] = (lambda a, lib=lib: lib.transform(1, a),
                      lambda v, lib=lib: lib.inverse_transform(1, v))
    out = {}
    for name, (f, i) in maps.items():
        v = f(h)
        s = float((v - v.mean(0)).pow(2).sum(1).mean().sqrt())  # centered: E‖v - v̄‖² = 1
        out[name] = Basis(name, lambda a, f=f, s=s: f(a) / s, lambda v, i=i, s=s: i(v * s))
    return out


class SAE(nn.Module):
    def __init__(self, d: int, m: int):
        super().__init__()
        self.enc = nn.Linear(d, m)
        self.dec = nn.Linear(m, d)
        with torch.no_grad():
            self.dec.weight.copy_(self.enc.weight.T)
            self.enc.bias.zero_()
            self.normalize()

    def normalize(self):
        with torch.no_grad():
            self.dec.weight /= self.dec.weight.norm(dim=0, keepdim=True).clamp_min(1e-12)

    def forward(self, v):
        z = torch.relu(self.enc(v - self.dec.bias))
        return self.dec(z), z


def train_sae(v: torch.Tensor, m: int, l1: float, steps: int, seed: int) -> SAE:
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        sae = SAE(v.shape[1], m).double()
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    for _ in range(steps):
        vb = v[torch.randint(0, len(v), (256,), generator=g)]
        rec, z = sae(vb)
        loss = ((rec - vb) ** 2).sum(1).mean() + l1 * z.abs().sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sae.normalize()
    return sae


def _aligned(d: torch.Tensor, dirs: torch.Tensor, tol: float = 0.9) -> float:
    """Fraction of rows of ``d`` with |cos| >= tol to some row of ``dirs``."""
    dn = d / d.norm(dim=1, keepdim=True).clamp_min(1e-300)
    rn = dirs / dirs.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return float(((dn @ rn.T).abs().max(1).values >= tol).double().mean())


def compare(seeds=(0, 1, 2), n_feat=16, hidden=32, p=0.1, toy_steps=1500, n_train=10000,
            n_test=5000, m=64, l1=0.1, sae_steps=2000, progress=False) -> dict:
    """Run the comparison; returns ``{basis: {metric: [value per seed]}}``."""
    res = {b: {k: [] for k in ("out_fvu", "act_fvu", "l0", "lib", "pca", "random", "true")}
           for b in BASES}
    res["kept"] = {"lib": [], "lib τ=1e-4": [], "width": []}
    for seed in seeds:
        layers = train_toy(seed, n_feat, hidden, p, toy_steps)
        g = torch.Generator().manual_seed(1000 + seed)
        x_tr, x_te = sparse_inputs(n_train, n_feat, p, g), sparse_inputs(n_test, n_feat, p, g)
        lib = interaction_basis(layers, x_tr, edges=False, progress=progress)
        lib_coarse = interaction_basis(layers, x_tr, edges=False, threshold=1e-4,
                                       progress=progress)
        h_tr, h_te = layers[0](x_tr).double(), layers[0](x_te).double()
        tail = copy.deepcopy(nn.Sequential(*layers[1:])).double()
        y_te = tail(h_te)
        bases = make_bases({"lib": lib, "lib τ=1e-4": lib_coarse}, h_tr)
        # activation-space directions (rows): interaction, PCA, random, ground truth
        lib_dirs = lib.layers[1].C_pinv[:, :-1]
        pca_dirs = lib.layers[1].pca_basis[:-1, 1:].T
        q, _ = torch.linalg.qr(torch.randn(hidden, hidden, generator=g).double())
        active = x_te > 0
        true_dirs = torch.stack([h_te[active[:, i]].mean(0) - h_te[~active[:, i]].mean(0)
                                 for i in range(n_feat)])
        res["kept"]["lib"].append(lib.layers[1].n_kept)
        res["kept"]["lib τ=1e-4"].append(lib_coarse.layers[1].n_kept)
        res["kept"]["width"].append(hidden)
        for name, basis in bases.items():
            sae = train_sae(basis.fwd(h_tr).detach(), m, l1, sae_steps, seed)
            with torch.no_grad():
                v = basis.fwd(h_te)
                rec, z = sae(v)
                h_hat = basis.inv(rec)
                y_hat = tail(h_hat)
                live = (z > 0).any(0)
                # decoder directions mapped to activation space: h(v + t e) - h(v) is linear
                zero = torch.zeros(1, v.shape[1], dtype=v.dtype)
                d_act = basis.inv(sae.dec.weight.T[live]) - basis.inv(zero)
            r = res.setdefault(name, {k: [] for k in res["raw"]})
            r["out_fvu"].append(float(((y_hat - y_te) ** 2).sum(1).mean()
                                      / ((y_te - y_te.mean(0)) ** 2).sum(1).mean()))
            r["act_fvu"].append(float(((h_hat - h_te) ** 2).sum(1).mean()
                                      / ((h_te - h_te.mean(0)) ** 2).sum(1).mean()))
            r["l0"].append(float((z > 0).sum(1).double().mean()))
            r["lib"].append(_aligned(d_act, lib_dirs))
            r["pca"].append(_aligned(d_act, pca_dirs))
            r["random"].append(_aligned(d_act, q.T))
            r["true"].append(_aligned(d_act, true_dirs))
    return res


def table(res: dict) -> str:
    def ms(vals):
        a = np.asarray(vals)
        se = a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 else float("nan")
        return f"{a.mean():.3f}±{se:.3f}"

    cols = ("out_fvu", "act_fvu", "l0", "lib", "pca", "random", "true")
    head = ["basis", "out FVU", "act FVU", "L0", "aligned LIB", "aligned PCA", "aligned random",
            "aligned true"]
    lines = [" | ".join(f"{h:>14}" for h in head)]
    for b, r in res.items():
        if b == "kept":
            continue
        lines.append(" | ".join([f"{b:>14}"] + [f"{ms(r[c]):>14}" for c in cols]))
    k = res["kept"]
    lines.append(f"kept dimensions of the hidden layer (width {k['width'][0]} + constant): "
                 f"lib {k['lib']}, lib τ=1e-4 {k['lib τ=1e-4']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description="SAEs in the raw, PCA and interaction bases")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2000, help="SAE training steps")
    ap.add_argument("--l1", type=float, default=0.1)
    ap.add_argument("--m", type=int, default=64, help="SAE dictionary size")
    args = ap.parse_args()
    torch.set_num_threads(2)
    res = compare(seeds=tuple(range(args.seeds)), sae_steps=args.steps, l1=args.l1, m=args.m)
    print(f"SAEs on hidden layer 1 of a trained sparse-feature toy model (16 features, width 32),"
          f" dictionary {args.m}, L1 {args.l1}, {args.steps} steps, {args.seeds} seeds "
          "(mean ± s.e.)")
    print(table(res))


if __name__ == "__main__":
    main()
