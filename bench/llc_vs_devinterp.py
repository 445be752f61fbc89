"""Speed and accuracy of llc.estimate_llc against devinterp's SGMCMC.sgld, in one run.

Speed: the same models, chains, steps, batch size, step size and localization through devinterp's
``SGMCMC.sgld`` optimizer (chains one after another, as devinterp runs them, minibatches from a
shuffled DataLoader as in devinterp's ``sample_single_chain``; also with directly indexed batches,
a leaner loop than devinterp ships) and through this package (all chains in one batched
computation, same Euler scheme), with wall times and ratios. The suite's networks are plain MLPs,
which take the hand-written batched path of ``llc._mlp``; the same networks behind a custom
``forward`` take the generic ``vmap`` path, timed too ("generic"). The achieved FLOP rate of the
batched sampler is compared with the machine's measured fp32 matmul rate, also on wide models
where arithmetic dominates.

Accuracy: devinterp with one globally tuned setting (ε = 1e-4, γ = 10, batch 500, 8 × 2000 steps)
against this package's default call, on the realizable suite of ``python -m llc validate``.

Run: ``python bench/llc_vs_devinterp.py [--quick] [--steps 1000] [--baseline DIR]``

``--baseline DIR`` also times the ``llc`` package found in DIR (an older checkout, e.g.
``git worktree add /tmp/old <commit>``) on the same calls, in the same run, and prints the ratio
(old time / new time) for both paths: the way to show that a change made nothing slower. With
``--repeat N`` our calls and the baseline's are interleaved N times and the best time counts.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import itertools
import math
import sys
import time
from pathlib import Path

import torch
from devinterp.optim import SGMCMC
from torch.utils.data import DataLoader, TensorDataset

import llc
from llc.validate import SUITE, SuiteModel, build


class Generic(torch.nn.Module):
    """The same network behind a custom forward: estimate_llc takes its generic vmap path."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def devinterp_llc(model, data, *, chains, steps, batch, eps, gamma, nbeta, seed=0, loader=True):
    """devinterp's SGLD optimizer, one chain after another.

    ``loader=True`` draws minibatches through a shuffled ``DataLoader`` as devinterp's own
    ``sample_single_chain`` does; ``loader=False`` indexes the tensors directly (a leaner loop than
    devinterp ships, shown for transparency).
    """
    x, y = data
    n = x.shape[0]
    with torch.no_grad():
        init_loss = (0.5 * ((model(x) - y) ** 2).sum(1).mean()).item()
    per_chain = []
    gen = torch.Generator().manual_seed(seed)
    for c in range(chains):
        m = copy.deepcopy(model)
        opt = SGMCMC.sgld(m.parameters(), lr=eps, nbeta=nbeta, localization=gamma)
        noise_gen = torch.Generator().manual_seed(seed * 1000 + c)
        if loader:
            dl = DataLoader(
                TensorDataset(x, y),
                batch_size=batch,
                shuffle=True,
                drop_last=True,
                generator=torch.Generator().manual_seed(seed * 1000 + c),
            )
            batches = itertools.chain.from_iterable(itertools.repeat(dl))
        losses = []
        for _ in range(steps):
            if loader:
                xb, yb = next(batches)
            else:
                idx = torch.randint(n, (batch,), generator=gen)
                xb, yb = x[idx], y[idx]
            loss = 0.5 * ((m(xb) - yb) ** 2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step(noise_generator=noise_gen)
            losses.append(loss.item())
        tail = losses[len(losses) // 2 :]
        per_chain.append(nbeta * (sum(tail) / len(tail) - init_loss))
    return sum(per_chain) / len(per_chain)


def load_baseline(folder: str):
    """The ``llc`` package of another checkout, imported as ``llc_baseline``."""
    init = Path(folder) / "llc" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        "llc_baseline", init, submodule_search_locations=[str(init.parent)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["llc_baseline"] = module
    spec.loader.exec_module(module)
    return module


def timed(fn, *args, **kwargs) -> float:
    """Wall seconds of one call."""
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def matmul_rate(size: int = 1024, reps: int = 20) -> float:
    """Measured fp32 matmul rate of this machine in GFLOP/s."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * size**3 * reps / (time.perf_counter() - t0) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--steps", type=int, default=1000, help="steps per chain for the speed table"
    )
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--baseline", help="folder of an older checkout to time side by side")
    parser.add_argument(
        "--repeat", type=int, default=1, help="our calls (and the baseline's) timed best of N"
    )
    args = parser.parse_args()
    base = load_baseline(args.baseline) if args.baseline else None
    models = [m for m in SUITE if m.widths and (m.quick or not args.quick)]

    rate = matmul_rate()
    print(f"machine: {torch.get_num_threads()} threads, fp32 matmul {rate:.1f} GFLOP/s\n")
    print("speed: same chains, steps, batch, ε, γ (Euler scheme in both)")
    head = (
        f"{'model':<24}{'d':>8}{'devinterp s':>12}{'(indexed) s':>12}{'ours s':>8}"
        f"{'speed-up':>10}{'(indexed)':>10}{'GFLOP/s':>9}{'% matmul':>9}"
        f"{'generic s':>10}{'speed-up':>10}"
        + (f"{'old s':>8}{'old/new':>8}{'old gen s':>10}{'old/new':>8}" if base else "")
    )
    print(head)
    print("-" * len(head))
    wide = [(w, 1) for w in (128, 256, 512)] if not args.quick else [(256, 1)]
    rows = [(spec.name, *build(spec, args.n)[:2], args.steps) for spec in models]
    for w, r in wide:  # wide two-layer nets, where arithmetic dominates
        spec = SuiteModel(f"RRR {w}-{w}-{w} r{r}", (w, w, w), r)
        rows.append((spec.name, *build(spec, args.n)[:2], max(20, args.steps // 5)))
    for name, model, data, steps in rows:
        nbeta = args.n / math.log(args.n)
        eps, gamma = 1e-4, 1.0
        kw = dict(
            chains=args.chains, steps=steps, batch=args.batch, eps=eps, gamma=gamma, nbeta=nbeta
        )
        t0 = time.perf_counter()
        devinterp_llc(model, data, **kw)
        t_dev = time.perf_counter() - t0
        t0 = time.perf_counter()
        devinterp_llc(model, data, loader=False, **kw)
        t_idx = time.perf_counter() - t0
        ours = dict(
            num_chains=args.chains,
            num_burnin=0,
            num_draws=steps,
            batch_size=args.batch,
            step_size=eps,
            localization=gamma,
            nbeta=nbeta,
            scheme="euler",
            progress=False,
        )
        mods = [llc] + ([base] if base else [])
        calls = [(mod, m) for mod in mods for m in (model, Generic(model))]
        best = [math.inf] * len(calls)
        for _ in range(args.repeat):  # interleaved, best of `repeat`: load on the machine varies
            for i, (mod, m) in enumerate(calls):
                best[i] = min(best[i], timed(mod.estimate_llc, m, data, **ours))
        t_ours, t_gen = best[:2]
        old = ""
        if base is not None:
            t_old, t_old_gen = best[2:]
            old = (
                f"{t_old:>8.2f}{t_old / t_ours:>7.2f}×{t_old_gen:>10.2f}{t_old_gen / t_gen:>7.2f}×"
            )
        d = sum(p.numel() for p in model.parameters())
        flops = 6.0 * args.chains * args.batch * d * steps  # forward 2·B·d, backward ≈ 4·B·d
        gf = flops / t_ours / 1e9
        print(
            f"{name:<24}{d:>8}{t_dev:>12.2f}{t_idx:>12.2f}{t_ours:>8.2f}{t_dev / t_ours:>9.1f}×"
            f"{t_idx / t_ours:>9.1f}×{gf:>9.1f}{100 * gf / rate:>8.0f}%"
            f"{t_gen:>10.2f}{t_dev / t_gen:>9.1f}×" + old,
            flush=True,
        )
    if args.speed_only:
        return

    print(
        "\naccuracy: devinterp ε=1e-4, γ=10, batch 500, 8×2000 steps vs llc defaults "
        "(realizable, at the teacher)"
    )
    head = (
        f"{'model':<24}{'exact λ':>9}{'devinterp':>11}{'rel':>8}{'ours':>9}{'rel':>8}{'ours s':>8}"
    )
    print(head)
    print("-" * len(head))
    err_dev, err_ours = [], []
    for spec in SUITE if not args.quick else [m for m in SUITE if m.quick]:
        model, data, exact = build(spec, args.n)
        lam = float(exact.value)
        nbeta = args.n / math.log(args.n)
        if spec.widths:
            dev = devinterp_llc(
                model, data, chains=8, steps=2000, batch=500, eps=1e-4, gamma=10.0, nbeta=nbeta
            )
        else:
            dev = float("nan")
        t0 = time.perf_counter()
        ours = llc.estimate_llc(model, data, progress=False).mean
        t = time.perf_counter() - t0
        if spec.widths:
            err_dev.append(abs(dev - lam) / lam)
        err_ours.append(abs(ours - lam) / lam)
        print(
            f"{spec.name:<24}{lam:>9.2f}{dev:>11.2f}{100 * (dev - lam) / lam:>7.1f}%{ours:>9.2f}"
            f"{100 * (ours - lam) / lam:>7.1f}%{t:>8.1f}",
            flush=True,
        )
    print(
        f"mean |rel err|: devinterp {100 * sum(err_dev) / max(len(err_dev), 1):.1f}% "
        "(DLN/RRR rows), "
        f"ours {100 * sum(err_ours) / len(err_ours):.1f}%"
    )


if __name__ == "__main__":
    main()
