"""Across the deep linear networks' funnel: Langevin with a metric per layer from the others.

    python bench/llc_kron_metric.py [--quick] [--batch B] [--names "DLN 60x6" ...]

The default call stays 5–9 % low on the deep rows of ``python -m llc validate --large`` because
its chains reach a quarter of the posterior's spread (``bench/llc_posterior_start.py``): the
posterior is a funnel, stiff where it is wide, and one step set by the curvature cannot cross it.

Here each layer ``W_l`` of a deep linear network ``f(x) = W_L ⋯ W_1 x`` moves with its own metric

    M_l = nβ (AᵀA ⊗ BΣBᵀ) + γ I,    A = W_L ⋯ W_{l+1},  B = W_{l−1} ⋯ W_1,  Σ = XᵀX / n,

the precision of the layer's conditional given the others (exact for the squared error; the
Gibbs sampler of ``theory.dln_gibbs_llc`` draws from it). ``M_l`` depends on the other layers
only, so the Langevin diffusion ``dW_l = −M_l⁻¹ ∇_l U dt + √2 M_l^{−1/2} dB`` needs no
correction term (``Σ_j ∂_j (M⁻¹)_ij = 0`` within a block) and leaves the posterior invariant.
All layers move at once, by the Leimkuhler–Matthews scheme in the metric's units, with step h:
first 2,000 steps at ``h_T = 0.02/κ̂(w*)`` (the chains cross the funnel), then 8,000 draws at
``h_D = h_T/8`` (the scheme's bias is O(h) with this metric). Gradients are the full
batch's (closed form in Σ and ``C = YᵀX / n``), or minibatches of ``--batch`` per chain; λ̂ is
the mean of
``nβ (L_n(w) − L_n(w*))`` over the draws, exactly the target of ``theory.dln_gibbs_llc``.

``κ̂`` is the largest curvature in the metric's units (power iteration on ``M^{−1/2} H M^{−1/2}``
of the full-batch potential, the largest over chains), read at w* and after the transport.
"""

import math
import sys
import time

import numpy as np
import torch
from llc_posterior_start import CHAINS, SEED, N, gibbs, setup

from llc.diagnostics import rhat
from llc.validate import SUITE, SUITE_LARGE

ROWS = (  # name, Gibbs sweeps
    ("DLN 20x6 r5", 2000),
    ("DLN 50x5 r5", 2000),
    ("DLN 80-60-60-60-80 r15", 2000),
    ("DLN 60x6 r10", 2000),
    ("DLN 70x7 r7", 2000),
)
TRANSPORT, DRAWS = 2000, 8000  # steps
C_T, C_D = 0.02, 0.0025  # h = C/κ̂(w*) in the transport and the draws


def _chain_products(ws):
    """``B_l = W_{l−1} ⋯ W_1`` and ``A_l = W_L ⋯ W_{l+1}`` for every l, stacked over chains."""
    c = ws[0].shape[0]
    eye = lambda k: torch.eye(k, dtype=ws[0].dtype).expand(c, k, k)  # noqa: E731
    below, acc = [], eye(ws[0].shape[-1])
    for w in ws:
        below.append(acc)
        acc = w @ acc
    above, acc = [None] * len(ws), eye(ws[-1].shape[-2])
    for i in range(len(ws) - 1, -1, -1):
        above[i] = acc
        acc = acc @ ws[i]
    return below, above, acc  # acc: the full product P


class KronLangevin:
    """Leimkuhler–Matthews Langevin with the per-layer metric ``M_l`` (module docstring)."""

    def __init__(self, centers, x, y, nbeta, gamma, batch, gen):
        self.centers, self.nb, self.gamma, self.batch, self.gen = centers, nbeta, gamma, batch, gen
        self.x, self.y = x, y
        self.sigma, self.cross = x.T @ x / len(x), y.T @ x / len(x)
        self.half_yy = 0.5 * float((y * y).sum(1).mean())
        self.ws = [c.expand(CHAINS, *c.shape).clone() for c in centers]
        self.prev = [torch.randn(w.shape, generator=gen, dtype=w.dtype) for w in self.ws]
        self.base = float(self.energy(self.ws)[0])

    def loss(self, ws):
        p = _chain_products(ws)[2]
        return (
            0.5 * ((p @ self.sigma) * p).sum((1, 2)) - (p * self.cross).sum((1, 2)) + self.half_yy
        )

    def energy(self, ws=None):
        """``nβ L_n(w)`` per chain (less ``nβ L_n(w*)`` once ``base`` is set)."""
        return self.nb * self.loss(self.ws if ws is None else ws) - getattr(self, "base", 0.0)

    def _moments(self):
        if self.batch is None:
            return self.sigma, self.cross
        idx = torch.randint(len(self.x), (CHAINS, self.batch), generator=self.gen)
        xb, yb = self.x[idx], self.y[idx]
        return xb.transpose(1, 2) @ xb / self.batch, yb.transpose(1, 2) @ xb / self.batch

    def metric(self):
        """Per layer ``(U, V, D)``: ``M_l = (U ⊗ V) diag(D) (U ⊗ V)ᵀ``."""
        below, above, _ = _chain_products(self.ws)
        out = []
        for a_mat, b_mat in zip(above, below):
            a, u = torch.linalg.eigh(a_mat.transpose(1, 2) @ a_mat)
            b, v = torch.linalg.eigh(b_mat @ self.sigma @ b_mat.transpose(1, 2))
            d = self.nb * a.clamp_min(0)[:, :, None] * b.clamp_min(0)[:, None, :] + self.gamma
            out.append((u, v, d))
        return out, below, above

    def step(self, h):
        (mets, below, above), (sig, cross) = self.metric(), self._moments()
        p = above[0] @ self.ws[0]
        r = p @ sig - cross
        new = []
        for i, (w, (u, v, d)) in enumerate(zip(self.ws, mets)):
            g = self.nb * above[i].transpose(1, 2) @ r @ below[i].transpose(1, 2)
            g = g + self.gamma * (w - self.centers[i])
            xi = torch.randn(w.shape, generator=self.gen, dtype=w.dtype)
            white = u.transpose(1, 2) @ (xi + self.prev[i]) @ v
            self.prev[i] = xi
            move = -h * (u.transpose(1, 2) @ g @ v) / d + math.sqrt(h / 2) * white / d.sqrt()
            new.append(w + u @ move @ v.transpose(1, 2))
        self.ws = new

    def curvature(self, iters=30):
        """Largest eigenvalue of ``M^{−1/2} H M^{−1/2}`` over chains (power iteration)."""
        mets = self.metric()[0]
        vec = getattr(self, "vec", None)  # warm start: the last call's direction
        if vec is None:
            vec = [torch.randn(w.shape, generator=self.gen, dtype=w.dtype) for w in self.ws]
        ws = [w.clone().requires_grad_(True) for w in self.ws]
        grads = torch.autograd.grad(self.energy(ws).sum(), ws, create_graph=True)
        rate = torch.zeros(CHAINS, dtype=self.ws[0].dtype)
        for _ in range(iters):
            norm = torch.sqrt(sum((z * z).sum((1, 2)) for z in vec))
            vec = [z / norm[:, None, None] for z in vec]
            dirs = [u @ (z / d.sqrt()) @ v.transpose(1, 2) for z, (u, v, d) in zip(vec, mets)]
            hv = torch.autograd.grad(grads, ws, grad_outputs=dirs, retain_graph=True)
            vec = [(u.transpose(1, 2) @ z @ v) / d.sqrt() for z, (u, v, d) in zip(hv, mets)]
            rate = torch.sqrt(sum((z * z).sum((1, 2)) for z in vec))
        self.vec = vec
        return float(rate.max())

    def distance(self):
        sq = sum(((w - c) ** 2).sum((1, 2)) for w, c in zip(self.ws, self.centers))
        return sq.sqrt()


def run_row(name, sweeps, n_t, n_d, batch):
    spec = next(s for s in SUITE + SUITE_LARGE if s.name == name)
    model, data, nbeta, gamma = setup(spec)
    t = time.perf_counter()
    lam_n, spread, _ = gibbs(model, data, nbeta, gamma, sweeps)
    t_gibbs = time.perf_counter() - t
    x, y = (torch.as_tensor(np.asarray(v), dtype=torch.float64) for v in data)
    centers = [p.detach().double() for p in model.parameters()]
    gen = torch.Generator().manual_seed(SEED)
    t = time.perf_counter()
    sampler = KronLangevin(centers, x, y, nbeta, gamma, batch, gen)
    kappa0 = sampler.curvature()
    h_t, h_d = C_T / kappa0, C_D / kappa0
    for _ in range(n_t):
        sampler.step(h_t)
    kappa = sampler.curvature()
    trace = np.empty((CHAINS, n_d))
    for s in range(n_d):
        sampler.step(h_d)
        trace[:, s] = sampler.energy().numpy()
    reached = float(sampler.distance().mean())
    secs = time.perf_counter() - t
    mean, sd = trace.mean(), trace.mean(1).std(ddof=1) / math.sqrt(CHAINS)
    d = sum(c.numel() for c in centers)
    cells = [name, f"{d:,}", f"{lam_n:.1f}", f"{spread:.1f}", f"{reached:.1f}",
             f"{kappa0:.1f} → {kappa:.0f}", f"{h_t:.1e} / {h_d:.1e}",
             f"{100 * (mean - lam_n) / lam_n:+.1f} ± {100 * sd / lam_n:.1f} %",
             f"{rhat(trace):.2f}", f"{secs:.0f} ({t_gibbs:.0f})"]  # fmt: skip
    print("| " + " | ".join(cells) + " |", flush=True)


def main(argv):
    quick = "--quick" in argv
    batch = int(argv[argv.index("--batch") + 1]) if "--batch" in argv else None
    names = argv[argv.index("--names") + 1 :] if "--names" in argv else [r[0] for r in ROWS]
    torch.set_num_threads(1)
    print(f"seed {SEED}, {CHAINS} chains, n = {N}, gradients: "
          f"{'full batch' if batch is None else f'batch {batch}'}, float64")  # fmt: skip
    print(f"transport: {TRANSPORT} steps at h = {C_T}/κ̂(w*); draws: {DRAWS} at h = {C_D}/κ̂(w*)")
    print("| model | d | λ_n | E‖w − w*‖ posterior | reached | κ̂ (w* → after transport) | "
          "h_T / h_D | λ̂ − λ_n | R-hat | s (Gibbs s) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for name, sweeps in ROWS:
        if not any(name.startswith(n) for n in names):
            continue
        n_t, n_d = (500, 1000) if quick else (TRANSPORT, DRAWS)
        run_row(name, 500 if quick else sweeps, n_t, n_d, batch)


if __name__ == "__main__":
    main(sys.argv[1:])
