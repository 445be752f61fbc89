"""Where the deep networks' low bias comes from: chains from w* against chains from the posterior.

    python bench/llc_posterior_start.py [--quick | --disperse | --orbit | --rounds N]

For deep linear networks of the validation suites (realizable data at a normal-form teacher,
n = 10⁴, seed 0) the exact Gibbs sampler (`theory.dln_gibbs_llc`) gives the finite-n target λ_n,
the posterior's spread E‖w − w*‖, and its last sweep: one exact posterior draw per chain. Then:

1. the default call from w* (`llc.estimate_llc`), with the chains' mean distance from w* over
   the draws (`llc.observables.Distance`);
2. SGLD started at the exact posterior draws, composed from the engine's parts as the default
   call composes them for chains carried over from an earlier estimate (a short warm-up that
   adapts metric, step and noise scale, then 4,000 draws), in float32 and in float64.

If (2) lands on λ_n and (1) does not, the kernel and its adaptation are right where the
posterior lives and the error of (1) is the time to get there. The step columns give ε at the
end of warm-up (in the metric's units): how stiff the region the chains sit in is.

``--orbit`` runs (2) on DLN 20x6 from w*, with Metropolis–Hastings moves along the network's
symmetry orbits after every kernel step: ``W_l → A W_l, W_{l+1} → W_{l+1} A⁻¹`` leaves the
loss unchanged, so a move is accepted by the localization term and the Jacobian
``det(A)^(in_l − out_{l+1})`` alone (no model evaluation). ``A = exp(sX)``, X Gaussian (GL) or
antisymmetric (rotations), s adapted to an acceptance of 0.3. Then, from the spreading phase's
end, rounds of moves alone followed by SGLD's carried warm-up and draws (``--rounds N``: on DLN
60x6 and 70x7 with N rounds).

``--disperse`` instead starts the chains of DLN 20x6 at ``w* + s·N(0, I)`` and runs (2) from
there, for s from 0 to 1 (the localization scale is 1/√γ ≈ 1.8): whether a start dispersed
around w* reaches further than w*.

3. Where float32 fails in (2), which part of float32: plain full-batch Langevin (no metric, no
   minibatch, ε = ½/κ̂ with κ̂ the largest curvature by power iteration) from the same draws,
   300 steps, with positions and evaluations in float64, both in float32, and positions in
   float64 with evaluations in float32.
"""

import dataclasses
import math
import sys
import time

import numpy as np
import torch

import llc
from llc.diagnostics import rhat
from llc.kernels import get_kernel
from llc.observables import Distance, LLCTrace
from llc.potential import Potential
from llc.sampling import Chains, run, values
from llc.settings import DEFAULT_LOCALIZATION
from llc.validate import SUITE, SUITE_LARGE, build
from llc.warmup import spread, warmup
from theory import dln_gibbs_llc

N, SEED, CHAINS, BATCH, DRAWS = 10_000, 0, 8, 512, 4_000


def gibbs(model, data, nbeta, gamma, sweeps):
    """λ_n, E‖w − w*‖ and the last sweep's weights, flat, shape (chain, D)."""
    w0 = [p.detach().double().numpy() for p in model.parameters()]
    last = {}

    def observe(ws):
        last["ws"] = [w.copy() for w in ws]
        sq = sum(((w - c[None]) ** 2).sum((1, 2)) for w, c in zip(ws, w0))
        return np.sqrt(sq)[:, None]

    ref = dln_gibbs_llc(
        model, data, nbeta=nbeta, localization=gamma, num_chains=CHAINS, num_sweeps=sweeps,
        seed=SEED, progress=False, observe=observe,
    )  # fmt: skip
    flat = np.concatenate([w.reshape(CHAINS, -1) for w in last["ws"]], axis=1)
    return ref.mean, float(ref.observed.mean[0]), torch.from_numpy(flat)


def from_points(model, data, nbeta, gamma, start, dtype):
    """Mean λ̂, the spread of the chain means, and the final ε, from chains at ``start``."""
    pot = Potential(model, data, dtype=dtype)
    chains = Chains.from_seed(pot, CHAINS, seed=SEED, batch_size=BATCH)
    kernel = get_kernel("sgld")
    params = kernel.params(step_size=1e-4, localization=gamma, nbeta=nbeta, center=pot.center)
    with chains:
        state = kernel.init(start.to(dtype), chains.randomness.noise(), params)
        warm = warmup(chains, kernel, params, state, adapt_step=True, carried=True,
                      min_windows=4)  # fmt: skip
        first = chains.steps_done
        _, accs = run(chains, kernel, warm.params, warm.state, DRAWS, [LLCTrace()])
        trace = values(chains, [LLCTrace()], accs, first)["llc"]
    per_chain = np.nanmean(trace, axis=1)
    return per_chain.mean(), per_chain.std(ddof=1), warm.params.step_size


def storage(model, data, nbeta, gamma, start, lam_n, steps=300):
    """Section 3: mean ``nβ (L_n − L_n*)`` over the last half of ``steps`` plain full-batch
    Langevin steps, per (position dtype, evaluation dtype)."""
    gen = torch.Generator().manual_seed(SEED)
    out = []
    for pos_dtype, eval_dtype in ((torch.float64,) * 2, (torch.float32,) * 2,
                                  (torch.float64, torch.float32)):  # fmt: skip
        pot = Potential(model, data, dtype=eval_dtype)
        batch = tuple(t.expand(CHAINS, *t.shape) for t in (pot.inputs, pot.targets))
        center = pot.center.to(pos_dtype)
        base = float(pot.losses(pot.center).double().mean())
        w = start.to(pos_dtype)
        v = torch.randn(w.shape, generator=gen, dtype=torch.float64).to(eval_dtype)
        for _ in range(20):  # power iteration for the largest curvature of U
            v = v / v.norm(dim=1, keepdim=True)
            hv = nbeta * pot.hvp(w.to(eval_dtype), v, batch) + gamma * v
            kappa, v = (hv * v).sum(1), hv
        eps = 0.5 / float(kappa.max())
        noise = torch.randn(w.shape, generator=gen, dtype=torch.float64).to(pos_dtype)
        energies = []
        for _ in range(steps):
            loss, grad = pot.value_and_grad(w.to(eval_dtype), batch)
            energies.append(nbeta * (loss.double().mean().item() - base))
            drift = nbeta * grad.to(pos_dtype) + gamma * (w - center)
            fresh = torch.randn(w.shape, generator=gen, dtype=torch.float64).to(pos_dtype)
            w = w - 0.5 * eps * drift + math.sqrt(eps) * 0.5 * (noise + fresh)
            noise = fresh
        mean = float(np.mean(energies[steps // 2 :]))
        out.append(f"{_name(pos_dtype)} positions, {_name(eval_dtype)} evaluations: "
                   f"{100 * (mean - lam_n) / lam_n:+.1f} % (ε {eps:.2e})")  # fmt: skip
    return out


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def setup(spec):
    """The model at w*, its data, and the default nβ and γ."""
    model, data, _ = build(spec, N, seed=SEED)
    return model, data, N / math.log(N), DEFAULT_LOCALIZATION


def row(spec, sweeps):
    model, data, nbeta, gamma = setup(spec)
    t = time.perf_counter()
    lam_n, spread, start = gibbs(model, data, nbeta, gamma, sweeps)
    t_gibbs = time.perf_counter() - t
    t = time.perf_counter()
    res = llc.estimate_llc(model, data, seed=SEED, progress=False, observables=[Distance()])
    t_default = time.perf_counter() - t
    reached = float(np.sqrt(res.observables["distance"]).mean())
    cells = [f"{spec.name:<24}", f"{res.config['d']:>7,}", f"{lam_n:8.1f}", f"{spread:7.1f}",
             f"{reached:7.1f}", f"{100 * (res.mean - lam_n) / lam_n:+7.1f} %",
             f"{res.step_size:9.2e}"]  # fmt: skip
    for dtype in (torch.float32, torch.float64):
        mean, sd, eps = from_points(model, data, nbeta, gamma, start, dtype)
        cells += [f"{100 * (mean - lam_n) / lam_n:+7.1f} % ± {100 * sd / lam_n / 8**0.5:.1f}",
                  f"{eps:9.2e}"]  # fmt: skip
    print(" | ".join(cells) + f" | {t_gibbs:.0f} / {t_default:.0f}", flush=True)
    return model, data, nbeta, gamma, start, lam_n


def dispersed(scales=(0.0, 0.05, 0.2, 0.5, 1.0)) -> None:
    """``--disperse``: (2) from ``w* + s·N(0, I)`` on DLN 20x6, in float32."""
    spec = next(s for s in SUITE if s.name.startswith("DLN 20x6"))
    model, data, nbeta, gamma = setup(spec)
    center = Potential(model, data).center
    gen = torch.Generator().manual_seed(1)
    print(f"{spec.name}, seed {SEED}: carried warm-up and {DRAWS} draws from w* + s·N(0, I)")
    for s in scales:
        start = center + s * torch.randn(CHAINS, center.numel(), generator=gen)
        mean, sd, eps = from_points(model, data, nbeta, gamma, start, torch.float32)
        print(f"  s = {s}: λ̂ {mean:.1f} ± {sd / CHAINS**0.5:.1f}, ε {eps:.2e}", flush=True)


class OrbitMoves:
    """MH moves along ``A ∈ GL(k)`` (or rotations) between consecutive layers of a DLN."""

    def __init__(self, model, center, gamma, rotations: bool, seed: int = 1):
        self.shapes = [tuple(p.shape) for p in model.parameters()]
        self.offsets = np.cumsum([0] + [a * b for a, b in self.shapes])
        self.center, self.gamma, self.rotations = center, gamma, rotations
        self.gen = torch.Generator().manual_seed(seed)
        self.log_scale = [math.log(0.05)] * (len(self.shapes) - 1)
        self.accepted, self.moves = 0.0, 0

    def __call__(self, w):
        w = w.clone()
        for layer in range(len(self.shapes) - 1):
            self._move(w, layer)
        return w

    def _move(self, w, layer):
        (out_l, in_l), (out_n, in_n) = self.shapes[layer], self.shapes[layer + 1]
        a, b, c = self.offsets[layer : layer + 3]
        view = lambda t, lo, hi, shape: t[..., lo:hi].reshape(*t.shape[:-1], *shape)  # noqa: E731
        wl, wn = view(w, a, b, (out_l, in_l)), view(w, b, c, (out_n, in_n))
        cl, cn = view(self.center, a, b, (out_l, in_l)), view(self.center, b, c, (out_n, in_n))
        x = torch.randn(w.shape[0], out_l, out_l, generator=self.gen, dtype=torch.float64)
        x = x * math.exp(self.log_scale[layer]) / math.sqrt(out_l)
        x = (x - x.transpose(1, 2)) / 2 if self.rotations else x
        a_mat = torch.linalg.matrix_exp(x)
        inv = a_mat.transpose(1, 2) if self.rotations else torch.linalg.matrix_exp(-x)
        wl2, wn2 = a_mat.to(w.dtype) @ wl, wn @ inv.to(w.dtype)
        sq = lambda m, ref: ((m - ref) ** 2).sum((1, 2)).double()  # noqa: E731
        d_energy = 0.5 * self.gamma * (sq(wl2, cl) + sq(wn2, cn) - sq(wl, cl) - sq(wn, cn))
        log_jac = (in_l - out_n) * x.diagonal(dim1=1, dim2=2).sum(1)
        u = torch.rand(w.shape[0], generator=self.gen, dtype=torch.float64)
        ok = (torch.log(u) < log_jac - d_energy).to(w.dtype)[:, None, None]
        w[:, a:b] = (ok * wl2 + (1 - ok) * wl).flatten(1)
        w[:, b:c] = (ok * wn2 + (1 - ok) * wn).flatten(1)
        rate = float(ok.mean())
        self.log_scale[layer] = min(self.log_scale[layer] + 0.05 * (rate - 0.3), 1.0)
        self.accepted, self.moves = self.accepted + rate, self.moves + 1


def orbit() -> None:
    """``--orbit``: SGLD from w* on DLN 20x6 with and without moves along the symmetry orbits."""
    spec = next(s for s in SUITE if s.name.startswith("DLN 20x6"))
    model, data, nbeta, gamma = setup(spec)
    lam_n = 149.8  # the Gibbs sampler's λ_n at seed 0 (the bench's first row)
    print(f"{spec.name}, seed {SEED}, λ_n {lam_n}: SGLD (Euler) warm-up from w* and "
          f"{DRAWS} draws")  # fmt: skip
    print("moves | metric and noise compensation | λ̂ − λ_n | ‖w − w*‖ (posterior 52.4) | "
          "ε | R-hat | acceptance")  # fmt: skip
    for moves in (None, "GL", "rotations"):
        for adapted in (True, False):
            orbit_row(model, data, nbeta, gamma, lam_n, moves, adapted)


def orbit_row(model, data, nbeta, gamma, lam_n, moves, adapted) -> None:
    """One row of ``--orbit``: warm-up and draws from w*, with or without the moves."""
    pot = Potential(model, data)
    sgld = get_kernel("sgld")
    mover = moves and OrbitMoves(model, pot.center, gamma, moves == "rotations")
    kernel = sgld if mover is None else dataclasses.replace(sgld, step=_moving(sgld, mover))
    chains = Chains.from_seed(pot, CHAINS, seed=SEED, batch_size=BATCH)
    # Euler: the Leimkuhler–Matthews scheme's noise memory belongs to the frame before a move
    params = kernel.params(step_size=1e-4, localization=gamma, nbeta=nbeta, center=pot.center,
                           scheme="euler")  # fmt: skip
    observables = [LLCTrace(), Distance()]
    with chains:
        start = pot.center.expand(CHAINS, -1).clone()
        state = kernel.init(start, chains.randomness.noise(), params)
        warm = warmup(chains, kernel, params, state, adapt_step=True,
                      adapt_metric=adapted, compensate=adapted)  # fmt: skip
        first = chains.steps_done
        _, accs = run(chains, kernel, warm.params, warm.state, DRAWS, observables)
        out = values(chains, observables, accs, first)
    trace = out["llc"]
    mean = float(np.nanmean(trace))
    rate = mover.accepted / max(mover.moves, 1) if mover else float("nan")
    reached = np.sqrt(out["distance"]).mean()
    print(f"{moves or 'none'} | {'yes' if adapted else 'no'} | "
          f"{100 * (mean - lam_n) / lam_n:+.1f} % | {reached:.1f} | "
          f"{warm.params.step_size:.2e} | {rhat(trace):.3f} | {rate:.2f}")  # fmt: skip


def spread_end(model, data, nbeta, gamma):
    """Where the default call's warm-up leaves the chains before its last SGLD phase: SGLD
    windows for metric, step and noise scale, then the spreading phase (2,000 steps)."""
    pot = Potential(model, data)
    kernel = get_kernel("sgld")
    chains = Chains.from_seed(pot, CHAINS, seed=SEED, batch_size=BATCH)
    params = kernel.params(step_size=1e-4, localization=gamma, nbeta=nbeta, center=pot.center)
    with chains:
        state = kernel.init(
            pot.center.expand(CHAINS, -1).clone(), chains.randomness.noise(), params
        )
        first = warmup(chains, kernel, params, state, adapt_step=True, max_windows=10)
        return spread(chains, first, max_windows=20).state.position


def transport(rounds: int = 2000, targets: dict | None = None) -> None:
    """``--orbit``, second part: hot chains from the spreading phase, then orbit moves alone,
    then SGLD's carried warm-up and draws in float64, against the same without the moves."""
    # λ_n at seed 0: the first table, and the README's validate --large table
    targets = targets or {"DLN 20x6": 149.8, "DLN 60x6": 1254.7}
    print(f"\nthe spreading phase's end, {rounds} rounds of orbit moves, then the carried warm-up "
          f"and {DRAWS} draws in float64")  # fmt: skip
    print("model | λ_n | ‖w − w*‖ before / after the moves | λ̂ − λ_n with the moves | without")
    for spec in (*SUITE, *SUITE_LARGE):
        lam_n = next((v for k, v in targets.items() if spec.name.startswith(k)), None)
        if lam_n is None:
            continue
        model, data, nbeta, gamma = setup(spec)
        center = Potential(model, data).center.double()
        start = spread_end(model, data, nbeta, gamma).double()
        mover, moved = OrbitMoves(model, center, gamma, rotations=False), start
        for _ in range(rounds):
            moved = mover(moved)
        cells = [spec.name, f"{lam_n}", f"{_distance(start, center):.1f} / "
                 f"{_distance(moved, center):.1f}"]  # fmt: skip
        for w in (moved, start):
            mean, sd, _ = from_points(model, data, nbeta, gamma, w, torch.float64)
            cells.append(f"{100 * (mean - lam_n) / lam_n:+.1f} % ± {100 * sd / lam_n / 8**0.5:.1f}")
        print(" | ".join(cells), flush=True)


def _distance(w, center) -> float:
    return float(((w - center) ** 2).sum(1).sqrt().mean())


def _moving(kernel, mover):
    def step(state, grad, noise, params):
        new, info = kernel.step(state, grad, noise, params)
        return new._replace(position=mover(new.position)), info

    return step


def main(quick: bool) -> None:
    specs = [s for s in SUITE if s.name.startswith("DLN 6-5-4-6")] if quick else [
        *(s for s in SUITE if s.name.startswith("DLN 20x6")),
        *(s for s in SUITE_LARGE if s.name.startswith(("DLN 50x5", "DLN 60x6"))),
    ]  # fmt: skip
    print(f"{DRAWS} draws, {CHAINS} chains, batch {BATCH}, γ = {DEFAULT_LOCALIZATION}, n = {N}, "
          f"seed {SEED}; errors against λ_n; ± the spread of chain means / √chains")  # fmt: skip
    print(" | ".join(["model", "d", "λ_n", "E‖w−w*‖ posterior", "from w*: ‖w−w*‖",
                      "from w*: λ̂ − λ_n", "ε", "from posterior f32: λ̂ − λ_n", "ε",
                      "from posterior f64: λ̂ − λ_n", "ε", "s Gibbs / default"]))  # fmt: skip
    rows = [row(spec, sweeps=300 if quick else 2000) for spec in specs]
    print(
        f"\nplain full-batch Langevin from the posterior draws of {specs[-1].name}, "
        "300 steps, against λ_n:"
    )
    for line in storage(*rows[-1], steps=40 if quick else 300):
        print("  " + line)


if __name__ == "__main__":
    if "--disperse" in sys.argv:
        dispersed()
    elif "--rounds" in sys.argv:  # the transport table at more rounds, on the larger nets
        rounds = int(sys.argv[sys.argv.index("--rounds") + 1])
        transport(rounds, {"DLN 60x6": 1254.7, "DLN 70x7": 1572.4})
    elif "--orbit" in sys.argv:
        orbit()
        transport()
    else:
        main("--quick" in sys.argv)
