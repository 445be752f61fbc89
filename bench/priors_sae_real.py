"""SAEs on real activations: L1, TopK, JumpReLU (SAELens) vs. penalties derived from fitted priors.

Data (no download): a causal character-level transformer (:mod:`priors.sae.charlm`, d_model 64,
2 blocks) trained in code on the installed Python's standard-library source files
(``stdlib_corpus()``: 2 M characters of ``.py`` files under ``sysconfig.get_paths()["stdlib"]``,
test directories excluded; the file list, character counts and SHA-256 are printed). The SAEs
read its residual stream after block 0 (``resid_post.0``, 64 dimensions), scaled so that
E‖x‖² = d_in: 65 536 positions of the training text to train on, 16 384 of the held-out 10 % to
evaluate on.

SAEs (``d_sae`` latents, same steps, batch, Adam learning rate and seeds for all), each at a
sweep of its sparsity knob:

* ``L1``: SAELens ``StandardTrainingSAE`` (ReLU, ``l1_coefficient · Σ f_i‖W_dec,i‖``);
* ``TopK``: SAELens ``TopKTrainingSAE`` (k largest, auxiliary loss for dead latents);
* ``JumpReLU``: SAELens ``JumpReLUTrainingSAE`` (L0 through a straight-through estimator);
* ``derived ReLU 1``: ``priors.fit`` (hurdle model, positive families but genpareto, BIC) to
  the latents ``f_i‖W_dec,i‖`` of the L1 SAE at ``--fit-l1`` of the same seed; the fitted
  prior's penalty (:class:`priors.sae.SparsityPenalty`, decoder-norm weighted, coefficient λ) in
  SAELens through the adapter (:class:`priors.sae.saelens.PriorTrainingSAE`), ReLU encoder;
* ``derived ReLU 2``: the same, refitted to the latents of the ``derived ReLU 1`` SAE whose L0
  is closest to that of the L1 source (fit → derive → train → refit → derive → train);
* ``derived prox 1``: the first fitted prior's penalty with its proximal operator as the
  encoder (:class:`priors.sae.ProxActivation`, per-latent learned threshold, initial weight
  ``t = λ/2``, decoder rows of norm 1 at the start); about 6 times slower per step than a ReLU.

All SAEs are built by ``priors.sae.saelens.build_training_sae`` and trained by
``train_saelens`` (SAELens' own ``SAETrainer``, constant learning rate, sparsity coefficients
warmed up over the first 5 % of steps) on the same minibatch order per seed.

Reported on the held-out positions: L0 (active latents per position), NMSE
``‖x − x̂‖² / ‖x − x̄‖²``, the language model's next-character loss with the SAE spliced in
(ΔCE = spliced − clean, nats, and the fraction of the zero-ablation loss recovered), dead latents
(never active) and dense latents (active on more than 10 % of positions); mean ± sd over seeds.

Run: ``python bench/priors_sae_real.py`` (2 min for the language model, skipped with
``--cache DIR`` on later runs, then 75 SAEs, the 3 seeds in 3 processes: 7.5 CPU minutes
per seed, 11 min measured on 2 shared cores), ``--quick`` (about 1 min, a check, not a result).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from priors.fit import fit as fit_prior  # noqa: E402
from priors.sae.charlm import CharLMActivations, charlm_activations  # noqa: E402

FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "priors_sae_real.png"
METRICS = ("l0", "nmse", "dce", "recovered", "dead", "dense")


@dataclass(frozen=True)
class Data:
    """Scaled activations and the run they come from (for the spliced loss)."""

    run: CharLMActivations
    train: torch.Tensor
    held: torch.Tensor
    scale: float


def load(args) -> Data:
    lm = dict(steps=600, n_train=16_384, n_held=4096) if args.quick else {}
    run = charlm_activations(args.cache, site=args.site, progress=False, **lm)
    scale = float((run.train.shape[1] / run.train.pow(2).sum(1).mean()).sqrt())
    return Data(run, run.train * scale, run.held * scale, scale)


def evaluate(sae, data: Data) -> dict[str, float]:
    x = data.held
    with torch.no_grad():
        f = sae.encode(x)
        x_hat = sae.decode(f)
        spliced = data.run.spliced_loss(lambda a: sae(a * data.scale) / data.scale)
    freq = (f != 0).double().mean(0)
    return {
        "l0": float((f != 0).double().sum(1).mean()),
        "nmse": float((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()),
        "dce": spliced.spliced - spliced.clean,
        "recovered": spliced.fraction_recovered,
        "dead": float((freq == 0).sum()),
        "dense": float((freq > 0.1).sum()),
    }


def latents_for_fit(sae, x: torch.Tensor) -> np.ndarray:
    """Non-zero and zero values of ``f_i‖W_dec,i‖`` (the scale the decoder-norm penalty sees)."""
    with torch.no_grad():
        f = sae.encode(x) * sae.W_dec.norm(dim=1)
    return f.double().numpy().ravel()


# The positive families of priors.fit but genpareto: its c < 0 branch has bounded support (an
# infinite penalty above −scale/c), and its c > 0 branch is lomax, which stays in.
FAMILIES = ("halfgennorm", "halfcauchy", "lognorm", "gamma", "expon", "lomax", "invgamma")


def fit_latents(sae, x: torch.Tensor, seed: int):
    return fit_prior(latents_for_fit(sae, x), FAMILIES, zero_inflated=True, gof_top=0, seed=seed)


def builders(d_in: int, d_sae: int, warm: int) -> dict[str, Callable]:
    """Knob -> SAELens TrainingSAE config, per method; the derived ones also take the prior."""
    from sae_lens import JumpReLUTrainingSAEConfig, StandardTrainingSAEConfig, TopKTrainingSAEConfig

    from priors.sae.saelens import PriorTrainingSAEConfig

    size = dict(d_in=d_in, d_sae=d_sae)
    return {
        "L1": lambda c: StandardTrainingSAEConfig(**size, l1_coefficient=c, l1_warm_up_steps=warm),
        "TopK": lambda k: TopKTrainingSAEConfig(**size, k=int(k)),
        "JumpReLU": lambda c: JumpReLUTrainingSAEConfig(
            **size, l0_coefficient=c, l0_warm_up_steps=warm
        ),  # fmt: skip
        "ReLU": lambda c, prior: PriorTrainingSAEConfig(
            **size, prior=prior, coefficient=c, coefficient_warm_up_steps=warm, activation="relu"
        ),
        # Loss ‖x − x̂‖² + λ·pen is twice the MAP objective ½‖x − x̂‖² + (λ/2)·pen, so the prox
        # weight starts at t = λ/2. The prox acts on f and the penalty on f‖W_dec‖: unit decoder
        # rows at the start make them agree (SAELens' 0.1 leaves every latent in the dead zone).
        "prox": lambda c, prior: PriorTrainingSAEConfig(
            **size,
            prior=prior,
            coefficient=c,
            coefficient_warm_up_steps=warm,
            activation="prox",
            t=c / 2,
            decoder_init_norm=1.0,
        ),  # fmt: skip
    }


def _cell(values: list[float], key: str) -> str:
    m, s = float(np.mean(values)), float(np.std(values))
    if key in ("dead", "dense"):
        return f"{m:>7.1f} ± {s:<5.1f}"
    if key == "l0":
        return f"{m:>7.2f} ± {s:<5.2f}"
    return f"{m:>7.4f} ± {s:<6.4f}"


def table(rows: dict[tuple[str, float], list[dict]], order: list[str]) -> str:
    head = f"{'SAE':<16}{'knob':>7}" + "".join(f"{k:>17}" for k in METRICS)
    lines = [head, "-" * len(head)]
    for (name, knob), res in sorted(rows.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        cells = "".join(f"{_cell([r[k] for r in res], k):>17}" for k in METRICS)
        lines.append(f"{name:<16}{knob:>7g}{cells}")
    return "\n".join(lines)


def figure(rows, order: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for name in order:
        pts = sorted((k, r) for (n, k), r in rows.items() if n == name)
        if not pts:
            continue
        for ax, key in zip(axes, ("nmse", "dce")):
            l0 = [np.mean([r["l0"] for r in res]) for _, res in pts]
            y = [np.mean([r[key] for r in res]) for _, res in pts]
            yerr = [np.std([r[key] for r in res]) for _, res in pts]
            ax.errorbar(l0, y, yerr=yerr, marker="o", capsize=3, label=name)
    axes[0].set_ylabel("NMSE (held-out)")
    axes[1].set_ylabel("ΔCE with the SAE spliced in (nats)")
    for ax in axes:
        ax.set_xlabel("L0 (active latents per position)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([2, 5, 10, 20, 50, 100])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which="both")
    axes[0].legend()
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")


def at_l0(rows, name: str, key: str, target: float, seeds: int) -> list[float]:
    """``key`` of method ``name`` at L0 = ``target``, per seed: log-log interpolation along its
    sweep (NaN where the sweep does not reach ``target``)."""
    out = []
    for s in range(seeds):
        pts = sorted((r[s]["l0"], r[s][key]) for (n, _), r in rows.items() if n == name)
        l0, y = np.log([p[0] for p in pts]), np.log([max(p[1], 1e-12) for p in pts])
        inside = l0[0] <= np.log(target) <= l0[-1]
        out.append(float(np.exp(np.interp(np.log(target), l0, y))) if inside else np.nan)
    return out


def comparison(rows, order: list[str], seeds: int, targets=(5.0, 10.0, 20.0)) -> str:
    lines = [f"{'at L0 =':<16}" + "".join(f"{t:>14g}{'':>14}" for t in targets),
             f"{'':<16}" + "".join(f"{'NMSE':>14}{'ΔCE':>14}" for _ in targets)]  # fmt: skip
    for name in order:
        cells = ""
        for t in targets:
            for key in ("nmse", "dce"):
                v = at_l0(rows, name, key, t, seeds)
                cells += (
                    f"{np.nanmean(v):>7.3f} ± {np.nanstd(v):<4.3f}"
                    if np.isfinite(v).all()
                    else f"{'-':>14}"
                )
        lines.append(f"{name:<16}{cells}")
    return "\n".join(lines)


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a 1-2 min check: small LM, 2 seeds")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2000, help="SAE training steps")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--d-sae", type=int, default=256)
    p.add_argument("--site", default="resid_post.0")
    p.add_argument("--cache", default=None, help="directory for the trained language model")
    p.add_argument("--l1", type=float, nargs="+", default=[0.3, 1.0, 3.0, 10.0])
    p.add_argument("--fit-l1", type=float, default=1.0, help="the L1 SAE the prior is fitted to")
    p.add_argument("--topk", type=float, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--jumprelu", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3, 1.0])
    p.add_argument("--relu", type=float, nargs="+", default=[0.03, 0.1, 0.3, 1.0],
                   help="coefficients of the derived penalty with a ReLU encoder")  # fmt: skip
    p.add_argument("--relu-iterations", type=int, default=2, help="fit -> derive -> train rounds")
    p.add_argument("--prox", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3],
                   help="coefficients of the derived penalty, its prox the encoder")  # fmt: skip
    p.add_argument("--prox-iterations", type=int, default=1, help="(~6x slower per step)")
    p.add_argument("--workers", type=int, default=3, help="seeds trained in parallel processes")
    p.add_argument("--figure", type=Path, default=FIGURE)
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.batch = 2, 300, 256
        args.l1, args.topk, args.jumprelu = [1.0, 3.0], [8, 16], [0.03, 0.3]
        args.relu, args.prox, args.relu_iterations, args.fit_l1 = [0.1, 1.0], [0.1], 1, 1.0
    if args.fit_l1 not in args.l1:
        args.l1 = sorted({*args.l1, args.fit_l1})
    return args


def describe(data: Data) -> None:
    run, corpus = data.run, data.run.corpus
    print(f"data: {corpus.n_chars} characters from {len(corpus.files)} files of the standard "
          f"library at {corpus.stdlib} (Python {corpus.python_version.split()[0]}, "
          f"sha256 {corpus.sha256[:16]}); first files: "
          f"{', '.join(f for f, _ in corpus.files[:4])}, ...")  # fmt: skip
    print(f"language model: {run.model.config}; held-out loss {run.held_loss:.3f} nats/char "
          f"(unigram {run.unigram_loss:.3f}); trained in {run.train_seconds:.0f} s"
          f"{' (loaded from cache)' if run.from_cache else ''}")  # fmt: skip
    print(f"activations: site {run.site}, {tuple(data.train.shape)} train, "
          f"{tuple(data.held.shape)} held-out, scaled by {data.scale:.4f}")  # fmt: skip


def methods(args) -> list[str]:
    return (["L1", "TopK", "JumpReLU"]
            + [f"derived ReLU {i + 1}" for i in range(args.relu_iterations)]
            + [f"derived prox {i + 1}" for i in range(args.prox_iterations)])  # fmt: skip


def run_seed(args, data: Data, seed: int) -> tuple[dict, list[str]]:
    """Every SAE of one seed (the derived ones from priors fitted to this seed's SAEs): the
    metrics per (method, knob), and a line per fitted prior."""
    from priors.sae.saelens import build_training_sae, train_saelens

    torch.set_num_threads(1)  # small matrices: one thread is fastest and shares the machine
    build = builders(data.train.shape[1], args.d_sae, args.steps // 20)
    trained, fitted = {}, []

    def one(name, cfg, knob):
        sae = build_training_sae(cfg, seed=seed)
        train_saelens(sae, data.train, steps=args.steps, batch_size=args.batch, lr=args.lr,
                      seed=seed, progress=False)  # fmt: skip
        trained[name, knob] = sae, evaluate(sae, data)

    for name in ("L1", "TopK", "JumpReLU"):
        for knob in getattr(args, name.lower()):
            one(name, build[name](knob), knob)
    first = ("L1", args.fit_l1)
    for kind in ("ReLU", "prox"):
        source = first
        for it in range(getattr(args, f"{kind.lower()}_iterations")):
            sae, metrics = trained[source]
            report = fit_latents(sae, data.train[:16_384], seed)
            best, delta = report.best_fit, report.delta()
            fitted.append(f"seed {seed}, {kind} fit {it + 1} to {source[0]} {source[1]:g} "
                          f"(L0 {metrics['l0']:.1f}): {best.family} "
                          f"{ {k: round(v, 3) for k, v in best.params.items()} }, "
                          f"P(f != 0) = {best.pi:.3f}; ΔBIC of expon (L1's prior) "
                          f"{delta.get('expon', np.nan):.0f}")  # fmt: skip
            name, knobs = f"derived {kind} {it + 1}", getattr(args, kind.lower())
            for knob in knobs:
                one(name, build[kind](knob, best.prior()), knob)
            # refit to the derived SAE whose L0 is closest to that of the first source
            target = trained[first][1]["l0"]
            knob = min(knobs, key=lambda k: abs(np.log(trained[name, k][1]["l0"] / target)))
            source = (name, knob)
    print(f"  seed {seed} done ({time.process_time():.0f} s of CPU in this process)",
          file=sys.stderr, flush=True)  # fmt: skip
    return {key: metrics for key, (_, metrics) in trained.items()}, fitted


def main(argv=None) -> None:
    args = parse(argv)
    torch.set_num_threads(1)  # small matrices: one thread is fastest and shares the machine
    t0 = time.time()
    data = load(args)
    describe(data)
    jobs = [(args, data, seed) for seed in range(args.seeds)]
    if args.workers > 1:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(args.workers, args.seeds)) as pool:
            results = pool.starmap(run_seed, jobs)
    else:
        results = [run_seed(*job) for job in jobs]
    rows: dict[tuple[str, float], list[dict]] = {}
    for metrics, _ in results:  # in seed order
        for key, m in metrics.items():
            rows.setdefault(key, []).append(m)
    fitted = [line for _, lines in results for line in lines]
    order = methods(args)
    print("\nfitted priors (priors.fit, hurdle, BIC) to f_i·‖W_dec,i‖ of the source SAE:")
    for line in fitted:
        print("  " + line)
    print(f"\nSAEs: d_sae {args.d_sae}, {args.steps} Adam steps x batch {args.batch}, "
          f"lr {args.lr:g} (SAELens SAETrainer); {args.seeds} seeds, mean ± sd; knob = "
          f"l1_coefficient, k, l0_coefficient, derived coefficient λ\n")  # fmt: skip
    print(table(rows, order))
    print("\ninterpolated along each sweep (log-log), per seed, mean ± sd:")
    print(comparison(rows, order, args.seeds))
    figure(rows, order, args.figure,
           f"SAEs on {data.run.site} of a char-level transformer (stdlib source), "
           f"d_sae {args.d_sae}, {args.seeds} seeds")  # fmt: skip
    print(f"\ntotal {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
