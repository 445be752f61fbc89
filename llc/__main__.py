"""Command line of the llc package.

  python -m llc validate       estimate the LLC of models with known λ and compare
  python -m llc estimate       the LLC of a saved model on a saved data set
  python -m llc demo-training  the LLC of a deep linear network learning, saddle to saddle

Run python -m llc COMMAND -h for a command's options.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import _cli_estimate


def _validate_lm(args: argparse.Namespace) -> int:
    from .validate_lm import devinterp_agreement, heads_check, stability_check, unembedding_check

    def table(title, rows):
        print(f"\n{title}")
        keys = list(rows[0])
        print("  ".join(f"{k:>10}" for k in keys))
        for r in rows:
            print(
                "  ".join(
                    f"{v:>10.4g}" if isinstance(v, float) else f"{v!s:>10}" for v in r.values()
                )
            )

    ok = True
    rows = [unembedding_check(kind, progress=args.progress) for kind in ("tiny", "gpt2")]
    table(
        "unembedding-refined LLC at the defaults against (V - 1)·r/2 (target: within 5 %), the "
        "quadratic value ½ Σ nβh/(nβh + γ), and the exact posterior value (full-batch MALA)",
        rows,
    )
    ok &= all(abs(r["rel_error"]) <= 0.05 for r in rows)
    rows = devinterp_agreement()
    table("same SGLD, this package against devinterp's SGMCMC.sgld (target: |z| within 3)", rows)
    ok &= all(abs(r["z"]) <= 3 for r in rows)
    rows = stability_check(progress=args.progress)
    table("tiny GPT-2, default call, two seeds (targets: λ̂ > 0, R-hat <= 1.05, |z| <= 4)", rows)
    z = (rows[0]["llc"] - rows[1]["llc"]) / (rows[0]["mcse"] ** 2 + rows[1]["mcse"] ** 2) ** 0.5
    print(f"two seeds: z = {z:.2f}")
    ok &= abs(z) <= 4 and all(r["llc"] > 0 and r["r_hat"] <= 1.05 for r in rows)
    rows = heads_check(progress=args.progress)
    table("attention-only model, layer-1 head 3 trained with its output zeroed", rows)
    active = [r["llc"] for r in rows if not r["dead"]]
    dead = [r["llc"] for r in rows if r["dead"]][0]
    print(f"unused head / smallest active head: {dead / min(active):.3f}")
    print(f"targets: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


def _validate(args: argparse.Namespace) -> int:
    if args.transformers:
        return _validate_lm(args)
    import matplotlib

    matplotlib.use("Agg")
    from .validate import (
        HEADER,
        SUITE,
        SUITE_LARGE,
        check_targets,
        format_table,
        plot_suite,
        run_suite,
    )

    models = [m for m in SUITE if m.quick] if args.quick else list(SUITE)
    if args.large:
        models = list(SUITE_LARGE)
    if args.sampler == "kron_sgld":  # plain MLPs only: the normal crossing is not one
        left = [m.name for m in models if m.k]
        models = [m for m in models if not m.k]
        if left:
            print(f"kron_sgld samples plain MLPs only; left out: {', '.join(left)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    status = 0
    first = "large" if args.large else "realizable"
    tables = [(first, 0.0)] + ([("noisy", 1.0)] if args.noisy else [])
    for label, noise in tables:
        where = (
            "with unit Gaussian noise, at the trained minimum"
            if noise
            else "y = teacher(x), at the teacher"
        )
        level = args.matmul_precision or "the caller's"
        print(
            f"\n{label} suite: n = {args.n}, labels {where}, sampler {args.sampler}, "
            f"matmul precision {level}, device {args.device or 'cpu'}"
        )
        print(HEADER)
        rows = run_suite(
            models,
            n=args.n,
            noise_std=noise,
            seed=args.seed,
            progress=args.progress,
            echo=lambda line: print(line, flush=True),
            sampler=args.sampler,
            spread=not args.no_spread,
            orbit_moves=args.orbit_moves,
            matmul_precision=args.matmul_precision,
            device=args.device,
        )
        print()
        print(format_table(rows))
        fig = plot_suite(rows, title=f"LLC estimates ({label}, n = {args.n})")
        path = out / f"llc_validate_{label}.png"
        fig.savefig(path, dpi=120)
        print(f"wrote {path}")
        if label != "noisy":
            ok, said = check_targets(rows, "large" if args.large else "suite")
            print(said)
            status = 0 if ok else 1
    return status


def main(argv: list[str] | None = None) -> int:
    from ._cli import device, nonnegative_int, positive_int

    parser = argparse.ArgumentParser(
        prog="python -m llc", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="estimate the LLC of models with known λ and compare")
    v.add_argument("--quick", action="store_true", help="a small subset (under 2 minutes)")
    v.add_argument(
        "--noisy", action="store_true", help="also the noisy-label table at trained minima"
    )
    v.add_argument(
        "--n", type=positive_int, default=10_000, help="number of samples (default 10000)"
    )
    v.add_argument("--seed", type=nonnegative_int, default=0)
    v.add_argument(
        "--sampler",
        default="sgld",
        help="the kernel: sgld (default), rmsprop_sgld, sgnht or kron_sgld (plain MLPs)",
    )
    v.add_argument(
        "--large", action="store_true", help="four DLNs of 1e4 to 3e4 parameters instead"
    )
    v.add_argument("--no-spread", action="store_true", help="warm-up without its spreading phase")
    v.add_argument(
        "--orbit-moves", action="store_true", help="orbit moves after warm-up (llc.transport)"
    )
    v.add_argument(
        "--matmul-precision",
        choices=["highest", "high", "medium"],
        default=None,
        help="torch's float32 matmul precision inside each call (default: left alone)",
    )
    v.add_argument(
        "--device",
        type=device,
        default=None,
        help="where the chains run, e.g. cuda (default the CPU); "
        "the exact targets are computed on the CPU",
    )
    v.add_argument("--out", default="validate_out", help="folder for the PNG figures")
    v.add_argument("--progress", action="store_true", help="show progress bars")
    v.add_argument(
        "--transformers", action="store_true", help="the transformer checks (llc.validate_lm)"
    )
    _cli_estimate.add_parser(sub)
    sub.add_parser(
        "demo-training",
        add_help=False,
        help="track the LLC of a deep linear network learning saddle to saddle "
        "(--steps, --estimates, --seed, --out; -h for more)",
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo-training":
        from .saddles import main as demo

        return demo(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "validate":
        return _validate(args)
    if args.command == "estimate":
        try:
            return _cli_estimate.run(args)
        except (ValueError, TypeError, FileNotFoundError) as e:
            parser.error(str(e))
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
