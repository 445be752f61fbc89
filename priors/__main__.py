"""Command line: ``python -m priors derive NAME [--param value ...] [--latex]`` and
``python -m priors fit FILE.npy [--families f1,f2] [--zero-inflated auto|yes|no]``.

Examples
--------
``python -m priors derive student_t --nu 3 --s 1`` prints the penalty, the log normalizer, the
proximal operator (closed form or numeric) and the threshold at step t (``--t``, default 1).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import sympy as sp

__all__ = ["main"]


def _parse_params(extra: Sequence[str]) -> dict[str, float]:
    params: dict[str, float] = {}
    it = iter(extra)
    for tok in it:
        if not tok.startswith("--"):
            raise SystemExit(f"unexpected argument {tok!r}; parameters are given as --name value")
        key, _, val = tok[2:].partition("=")
        if not val:
            try:
                val = next(it)
            except StopIteration:
                raise SystemExit(f"parameter --{key} needs a value") from None
        try:
            params[key.replace("-", "_")] = float(val)
        except ValueError:
            raise SystemExit(f"parameter --{key}: expected a number, got {val!r}") from None
    return params


def _derive(args: argparse.Namespace, extra: Sequence[str]) -> int:
    import priors

    params = _parse_params(extra)
    try:
        prior = priors.get(args.name, **params)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    pen = priors.penalty(prior)
    fmt = sp.latex if args.latex else str
    print(f"prior:          {fmt(prior.density)}" + (f"  (+ point mass {fmt(prior.atom)} at 0)"
                                                   if prior.atom is not None else ""))
    print(f"support:        {fmt(prior.support)}")
    print(f"penalty:        {pen.latex() if args.latex else pen}")
    print(f"log normalizer: {fmt(pen.log_normalizer)}"
          + ("" if pen.zero_at_zero else "  (p(0) is 0 or infinite: pen(0) != 0)"))
    convex = pen.is_convex
    print(f"convex:         {'unknown (symbolic parameters)' if convex is None else convex}")
    px = priors.prox(pen)
    print(f"prox:           {px.method}")
    if px.closed_form and px.branches and args.latex:
        print(f"  candidates:   {px.latex()}")
    if px.threshold_expr is not None:
        print(f"threshold:      {fmt(px.threshold_expr)}")
    if not pen.params:
        thr = px.threshold(args.t)
        print(f"threshold(t={args.t:g}): {thr:.8g}")
    else:
        names = ", ".join(f"--{s.name}" for s in pen.params)
        print(f"(give {names} for the numeric threshold at t = {args.t:g})")
    return 0


def _fit(args: argparse.Namespace) -> int:
    import numpy as np

    import priors

    try:
        samples = np.load(args.file)
    except (OSError, ValueError) as err:
        print(f"error: cannot read {args.file}: {err}", file=sys.stderr)
        return 2
    zi = {"auto": "auto", "yes": True, "no": False}[args.zero_inflated]
    families = args.families.split(",") if args.families else None
    try:
        report = priors.fit(samples, families=families, zero_inflated=zi, seed=args.seed)
    except (ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.summary() if hasattr(report, "summary") else str(report))
    if args.penalty:
        print(f"penalty of the best fit: {priors.penalty(report.best)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m priors", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("derive", help="penalty, normalizer, prox and threshold of a prior")
    d.add_argument("name", help="catalog name, e.g. laplace, student_t, double_pareto")
    d.add_argument("--latex", action="store_true", help="print LaTeX")
    d.add_argument("--t", type=float, default=1.0, help="prox step for the threshold")
    f = sub.add_parser("fit", help="fit scipy.stats families to activations in a .npy file")
    f.add_argument("file")
    f.add_argument("--families", default=None, help="comma-separated scipy.stats names")
    f.add_argument("--zero-inflated", choices=("auto", "yes", "no"), default="auto")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--penalty", action="store_true", help="also print the best fit's penalty")
    args, extra = parser.parse_known_args(argv)
    if args.command == "derive":
        return _derive(args, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return _fit(args)


if __name__ == "__main__":
    sys.exit(main())
