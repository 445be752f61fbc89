"""After orbit moves: SGLD in the weights' frame against SGLD in each chain's own frame.

    python bench/llc_orbit_frame.py "DLN 12-10" 43.374 2000
    python bench/llc_orbit_frame.py "DLN 60x6" 1254.7 16000

(model prefix, its λ_n at seed 0, rounds). Warm-up as the default call's (no noise compensation),
then rounds of orbit moves (:mod:`llc.symmetry`) that keep each chain's accumulated group element
g, then 4,000 draws two ways: in the weights' frame with SGLD re-warmed there (one step for all
chains, as ``orbit_moves=True``), and in each chain's own frame ``v = g⁻¹·w``. With g fixed the
second is exact: it samples ``π(g·v)``, a linear pull-back of the posterior, whose loss landscape
is the one before the moves; its step is the pre-move step, capped per chain by the curvature of
the pulled-back localization term (power iteration, no model evaluation). An experiment for
issue 16 (``docs/design.md``), not part of the package: it wraps ``Chains.value_and_grad``.
"""

import math
import sys
import time
import warnings
from dataclasses import replace

import numpy as np
import torch

from llc.adaptation import orbit_scale
from llc.diagnostics import rhat
from llc.kernels import get_kernel
from llc.observables import LLCTrace
from llc.potential import Potential
from llc.sampling import Chains, run, values
from llc.symmetry import TARGET_ACCEPTANCE, cayley, move, propose
from llc.validate import SUITE, SUITE_LARGE, build
from llc.warmup import spread, warmup

warnings.simplefilter("ignore")  # R-hat and warm-up warnings: the table reports both

name, lam_n, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
spec = next(s for s in (*SUITE, *SUITE_LARGE) if s.name.startswith(name))
model, data, _ = build(spec, 10_000, seed=0)
n = 10_000
nbeta = n / math.log(n)
gamma = 0.3
C = 8
pot = Potential(model, data)
kernel = get_kernel("sgld")
chains = Chains.from_seed(pot, C, seed=0, batch_size=512)
params = kernel.params(step_size=1e-4, localization=gamma, nbeta=nbeta, center=pot.center)
shapes = [tuple(p.shape) for p in model.parameters()]
offs = np.cumsum([0] + [a * b for a, b in shapes])
links = pot.links
t = time.perf_counter()
with chains:
    state = kernel.init(pot.center.expand(C, -1).clone(), chains.randomness.noise(), params)
    first = warmup(chains, kernel, params, state, adapt_step=True, max_windows=10, compensate=False)
    moved = spread(chains, first, max_windows=20, compensate=False)
    st = kernel.init(moved.state.position, chains.randomness.noise(), first.params)
    last = warmup(
        chains,
        kernel,
        first.params,
        st,
        adapt_step=True,
        max_windows=20,
        probe_start=False,
        compensate=False,
    )
    print(f"warm-up {time.perf_counter() - t:.0f}s eps {last.params.step_size:.2e}", flush=True)
    # transport, keeping each chain's accumulated B_l and B_l^{-1}
    w = last.state.position.clone()
    B = [torch.eye(l.width, dtype=torch.float64).expand(C, -1, -1).clone() for l in links]
    Bi = [b.clone() for b in B]
    sc = orbit_scale.init(len(links))
    gen = chains.randomness.aux
    for _ in range(rounds):
        rates = []
        for j, (link, ls) in enumerate(zip(links, sc.log_scales)):
            x, lu = propose(gen, C, link, math.exp(ls), w.device)
            w, acc = move(w, link, x, lu, pot.center, gamma)
            a, inv, _ = cayley(x)
            m = acc.view(C, 1, 1)
            B[j] = torch.where(m, a @ B[j], B[j])
            Bi[j] = torch.where(m, Bi[j] @ inv, Bi[j])
            rates.append(float(acc.double().mean()))
        sc = orbit_scale.update(sc, rates, TARGET_ACCEPTANCE)
    print(
        f"transport {rounds} rounds {time.perf_counter() - t:.0f}s "
        f"dist {float(((w - pot.center) ** 2).sum(1).sqrt().mean()):.1f}",
        flush=True,
    )
    L = len(shapes)

    def left(j):  # B_j acting on layer j's rows (None for the last layer)
        return B[j] if j < L - 1 else None

    def blocks(flat):
        return [flat[:, offs[j] : offs[j + 1]].reshape(C, *shapes[j]).double() for j in range(L)]

    def unblock(bl, dtype):
        return torch.cat([b.reshape(C, -1) for b in bl], 1).to(dtype)

    def apply(flat, lefts, rights):  # layer j: lefts[j] @ W_j @ rights[j - 1]
        out = []
        for j, m in enumerate(blocks(flat)):
            if j < L - 1:
                m = lefts[j] @ m
            if j > 0:
                m = m @ rights[j - 1]
            out.append(m)
        return unblock(out, flat.dtype)

    def to_w(v):  # W_j(w) = B_j W_j(v) B_{j-1}^{-1}
        return apply(v, B, Bi)

    def to_v(wf):  # W_j(v) = B_j^{-1} W_j(w) B_{j-1}
        return apply(wf, Bi, B)

    def pull(gw):  # G_v = B_j^T G_j B_{j-1}^{-T}
        return apply(gw, [b.transpose(1, 2) for b in B], [b.transpose(1, 2) for b in Bi])

    orig = chains.value_and_grad

    def vg(position, idx):
        wpos = to_w(position)
        loss, grad = orig(wpos, idx)
        return loss, pull(grad) + (gamma / nbeta) * pull(wpos - pot.center)

    v0 = to_v(w)
    print("round trip error", float((to_w(v0) - w).abs().max()), flush=True)
    for label in ("w frame, shared eps (carried warm-up)", "own frame"):
        if label.startswith("w"):
            st = kernel.init(w, chains.randomness.noise(), last.params)
            warm = warmup(
                chains,
                kernel,
                last.params,
                st,
                adapt_step=True,
                max_windows=20,
                carried=True,
                min_windows=4,
                compensate=False,
            )
            p, s0 = warm.params, warm.state
        else:
            chains.value_and_grad = vg
            gdiag = (
                last.params.metric.double()
                if last.params.metric is not None
                else torch.ones(w.shape[1], dtype=torch.float64)
            )
            gs = gdiag.sqrt()
            u = torch.randn(
                C, w.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(0)
            )
            for _ in range(50):
                u = u / u.norm(dim=1, keepdim=True)
                hu = gamma * gs * pull(to_w(gs * u).double()).double()
                kl = (hu * u).sum(1)
                u = hu
            eps_c = torch.minimum(
                torch.full((C,), last.params.step_size, dtype=torch.float64), 0.5 / kl
            )
            print(
                "localization curvature per chain",
                kl.numpy().round(1),
                "eps",
                eps_c.numpy(),
                flush=True,
            )
            p = replace(last.params, localization=0.0, step_size=eps_c.reshape(-1, 1))
            s0 = kernel.init(v0, chains.randomness.noise(), p)
            # relax a little in the new frame first
            s0, _ = run(chains, kernel, p, s0, 1000, [])
        fs = chains.steps_done
        _, accs = run(chains, kernel, p, s0, 4000, [LLCTrace()])
        trace = values(chains, [LLCTrace()], accs, fs)["llc"]
        per = np.nanmean(trace, axis=1)
        print(
            f"{label}: λ̂ {per.mean():.2f} ({100 * (per.mean() - lam_n) / lam_n:+.1f} %) "
            f"R-hat {rhat(trace):.2f}, per chain {per.round(1)}, {time.perf_counter() - t:.0f} s",
            flush=True,
        )
