"""Sparse autoencoders in the interaction basis: a toy network and the comparison of bases.

A toy network with known structure: ``n_feat`` sparse non-negative input features (each active
with probability ``p``, value U(0, 1)) pass through ``Linear-ReLU-Linear-ReLU-Linear`` trained
to output them again (:func:`train_toy_autoencoder`). :func:`compare_sae_bases` trains SAEs
with an L1 penalty and the same budget on its first hidden layer's activations ``h`` in several
coordinate systems (the SAE trainer is passed in, normally :func:`priors.sae.train_sae`:
``theory`` does not import ``priors``):

* ``raw``: ``h`` itself;
* ``pca``: centered PCA coordinates ``(h − μ) U`` (all non-zero-variance directions);
* ``lib``: interaction-basis coordinates ``f̂ = (h, 1) C`` (:func:`theory.interaction_basis`,
  default threshold), and ``lib τ=1e-4``, the same with the threshold 1e-4.

Each basis is scaled by one scalar so that ``E‖v − v̄‖² = 1``, so one L1 coefficient means the
same in all of them. Measured on held-out inputs, per seed:

* ``out FVU``: the SAE reconstruction mapped back to activations and spliced into the network,
  ``E‖y(ĥ) − y(h)‖² / E‖y − ȳ‖²`` (0 is perfect; 1 is as bad as predicting the mean);
* ``act FVU``: the same for the hidden activations;
* ``L0``: mean number of active latents;
* ``aligned LIB / PCA / random / true``: the fraction of live SAE features whose decoder
  direction, mapped to activation space, has ``|cos| ≥ 0.9`` with one interaction direction (a
  row of ``C⁺``), one PCA direction, one direction of a random orthonormal basis (chance) or one
  ground-truth feature direction ``E[h | x_i > 0] − E[h | x_i = 0]``.

The interaction basis is not an orthogonal change of coordinates: ``h = f̂ C⁺`` and rows of
``C⁺`` that belong to directions with tiny Λ are long. An SAE error spread evenly over the
coordinates is therefore magnified in activation space, and ``act FVU`` (and, through the
off-distribution activations it creates, ``out FVU``) can exceed 1.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .interaction import interaction_basis
from .models import relu_autoencoder

__all__ = [
    "BASES",
    "METRICS",
    "SAEBasisComparison",
    "compare_sae_bases",
    "sparse_inputs",
    "train_toy_autoencoder",
]

BASES = ("raw", "pca", "lib", "lib τ=1e-4")
METRICS = ("out_fvu", "act_fvu", "l0", "lib", "pca", "random", "true")
_HEADERS = ("out FVU", "act FVU", "L0", "aligned LIB", "aligned PCA", "aligned random",
            "aligned true")  # fmt: skip


def sparse_inputs(n: int, n_feat: int, p: float, seed: int | torch.Generator) -> torch.Tensor:
    """``n`` rows of ``n_feat`` features, each active with probability ``p``, value U(0, 1).

    ``seed`` is an int or a ``torch.Generator``; torch's global RNG is not used."""
    g = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    return (torch.rand(n, n_feat, generator=g) < p) * torch.rand(n, n_feat, generator=g)


def train_toy_autoencoder(
    seed: int = 0, n_feat: int = 16, hidden: int = 32, p: float = 0.1, steps: int = 2000
) -> list[nn.Module]:
    """Train ``x → x`` through two ReLU layers of width ``hidden`` on :func:`sparse_inputs`.

    Parameters
    ----------
    seed : int
        Initialisation (:func:`theory.models.relu_autoencoder`) and data.
    n_feat, hidden : int
    p : float
        P(feature active).
    steps : int
        Adam steps (lr 3e-3) on fresh batches of 1024.

    Returns
    -------
    list of nn.Module
        The three layers, with ``requires_grad`` off, ready for :func:`interaction_basis`.
    """
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
class _Basis:
    fwd: Callable[[torch.Tensor], torch.Tensor]
    inv: Callable[[torch.Tensor], torch.Tensor]


def _bases(libs: dict, h: torch.Tensor) -> dict[str, _Basis]:
    """Raw, PCA and one interaction basis per entry of ``libs``, each scaled to unit spread."""
    lb = next(iter(libs.values())).layers[1]
    mu, u = lb.mean, lb.pca_basis[:-1, 1:]  # centered principal directions (constant excluded)
    maps = {"raw": (lambda a: a.double(), lambda v: v),
            "pca": (lambda a: (a.double() - mu) @ u, lambda v: v @ u.T + mu)}  # fmt: skip
    for name, lib in libs.items():
        maps[name] = (lambda a, lib=lib: lib.transform(1, a),
                      lambda v, lib=lib: lib.inverse_transform(1, v))  # fmt: skip
    out = {}
    for name, (f, i) in maps.items():
        v = f(h)
        s = float((v - v.mean(0)).pow(2).sum(1).mean().sqrt())
        out[name] = _Basis(lambda a, f=f, s=s: f(a) / s, lambda v, i=i, s=s: i(v * s))
    return out


def _aligned(d: torch.Tensor, dirs: torch.Tensor, tol: float = 0.9) -> float:
    """Fraction of rows of ``d`` with |cos| ≥ tol to some row of ``dirs``."""
    dn = d / d.norm(dim=1, keepdim=True).clamp_min(1e-300)
    rn = dirs / dirs.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return float(((dn @ rn.T).abs().max(1).values >= tol).double().mean())


def _fvu(pred: torch.Tensor, target: torch.Tensor) -> float:
    err = ((pred - target) ** 2).sum(1).mean()
    return float(err / ((target - target.mean(0)) ** 2).sum(1).mean())


@dataclass(frozen=True)
class SAEBasisComparison:
    """Per-seed results of :func:`compare_sae_bases`.

    Attributes
    ----------
    values : dict
        ``{basis: {metric: [value per seed]}}`` for the bases in :data:`BASES` and the metrics
        in :data:`METRICS`.
    kept : dict
        Kept dimensions of the hidden layer per seed: ``{"lib": [...], "lib τ=1e-4": [...]}``.
    width : int
        Width of the hidden layer.
    seeds : tuple of int
    """

    values: dict
    kept: dict
    width: int
    seeds: tuple = field(default_factory=tuple)

    def mean(self, basis: str, metric: str) -> float:
        """Mean over seeds."""
        return float(np.mean(self.values[basis][metric]))

    def table(self) -> str:
        """A text table, mean ± standard error over seeds (the mean alone for one seed)."""

        def cell(vals) -> str:
            a = np.asarray(vals, dtype=float)
            if len(a) < 2:
                return f"{a.mean():.3f}"
            return f"{a.mean():.3f}±{a.std(ddof=1) / np.sqrt(len(a)):.3f}"

        lines = [" | ".join(f"{h:>14}" for h in ("basis", *_HEADERS))]
        for b, r in self.values.items():
            lines.append(" | ".join([f"{b:>14}"] + [f"{cell(r[c]):>14}" for c in METRICS]))
        spread = "one seed: no standard error" if len(self.seeds) < 2 else (
            f"{len(self.seeds)} seeds: mean ± standard error")  # fmt: skip
        lines.append(
            f"kept dimensions of the hidden layer (width {self.width} + constant): "
            f"lib {self.kept['lib']}, lib τ=1e-4 {self.kept['lib τ=1e-4']}; {spread}"
        )
        return "\n".join(lines)


def compare_sae_bases(
    train_sae: Callable,
    seeds: Sequence[int] = (0, 1, 2),
    n_feat: int = 16,
    hidden: int = 32,
    p: float = 0.1,
    toy_steps: int = 1500,
    n_train: int = 10000,
    n_test: int = 5000,
    m: int = 64,
    l1: float = 0.1,
    sae_steps: int = 2000,
    progress: bool = False,
) -> SAEBasisComparison:
    """Train the toy network and SAEs in every basis of :data:`BASES`, once per seed.

    Parameters
    ----------
    train_sae : callable
        The SAE trainer, :func:`priors.sae.train_sae` or one with its signature: called as
        ``train_sae(v, torch.abs, n_latents=m, coefficient=l1, steps=sae_steps,
        batch_size=256, lr=1e-3, seed=seed)``, it returns a module whose call gives
        ``(latents, reconstruction)`` and whose ``W_dec`` holds the decoder rows.
    seeds : sequence of int
    n_feat, hidden, p, toy_steps
        The toy network (:func:`train_toy_autoencoder`).
    n_train, n_test : int
        Inputs for the bases and SAE training, and held-out inputs for the metrics.
    m : int
        SAE dictionary size.
    l1 : float
        L1 coefficient (same in every basis).
    sae_steps : int
        Adam steps (lr 1e-3, batch 256) per SAE.
    progress : bool
        Progress bars of the interaction-basis computation.

    Returns
    -------
    SAEBasisComparison
    """
    if not callable(train_sae):
        raise TypeError(f"train_sae must be callable, got {type(train_sae).__name__}")
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    values = {b: {k: [] for k in METRICS} for b in BASES}
    kept: dict[str, list[int]] = {"lib": [], "lib τ=1e-4": []}
    for seed in seeds:
        layers = train_toy_autoencoder(seed, n_feat, hidden, p, toy_steps)
        g = torch.Generator().manual_seed(1000 + seed)
        x_tr, x_te = sparse_inputs(n_train, n_feat, p, g), sparse_inputs(n_test, n_feat, p, g)
        lib = interaction_basis(layers, x_tr, edges=False, progress=progress)
        coarse = interaction_basis(layers, x_tr, edges=False, threshold=1e-4, progress=progress)
        with torch.no_grad():
            h_tr, h_te = layers[0](x_tr).double(), layers[0](x_te).double()
        tail = copy.deepcopy(nn.Sequential(*layers[1:])).double()
        with torch.no_grad():
            y_te = tail(h_te)
        bases = _bases({"lib": lib, "lib τ=1e-4": coarse}, h_tr)
        dirs = {
            "lib": lib.layers[1].C_pinv[:, :-1],
            "pca": lib.layers[1].pca_basis[:-1, 1:].T,
            "random": torch.linalg.qr(torch.randn(hidden, hidden, generator=g).double())[0].T,
        }
        active = x_te > 0
        dirs["true"] = torch.stack(
            [h_te[active[:, i]].mean(0) - h_te[~active[:, i]].mean(0) for i in range(n_feat)]
        )
        kept["lib"].append(lib.layers[1].n_kept)
        kept["lib τ=1e-4"].append(coarse.layers[1].n_kept)
        for name, basis in bases.items():
            with torch.no_grad():
                v_tr = basis.fwd(h_tr)
            sae = train_sae(v_tr, torch.abs, n_latents=m, coefficient=l1, steps=sae_steps,
                            batch_size=256, lr=1e-3, seed=seed)  # fmt: skip
            with torch.no_grad():
                v = basis.fwd(h_te)
                z, rec = sae(v)
                h_hat = basis.inv(rec)
                live = (z > 0).any(0)
                # decoder directions in activation space: h(v + t e) − h(v) is linear in t
                zero = torch.zeros(1, v.shape[1], dtype=v.dtype)
                d_act = basis.inv(sae.W_dec[live]) - basis.inv(zero)
                r = values[name]
                r["out_fvu"].append(_fvu(tail(h_hat), y_te))
                r["act_fvu"].append(_fvu(h_hat, h_te))
                r["l0"].append(float((z > 0).sum(1).double().mean()))
                for key, rows in dirs.items():
                    r[key].append(_aligned(d_act, rows))
    return SAEBasisComparison(values, kept, hidden, seeds)
