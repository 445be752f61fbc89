"""Command line: ``python -m priors derive NAME [--param value ...] [--latex]`` and
``python -m priors fit FILE.npy [--families f1,f2] [--zero-inflated auto|yes|no]``.

Examples
--------
``python -m priors derive student_t --nu 3 --s 1`` prints the penalty, the log normalizer, the
proximal operator (closed form or numeric) and the threshold at step t (``--t``, default 1).
"""


from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

__all__ = ["main"]

_DESCRIPTION = (
    "Sparsity penalties from activation priors: 'derive' prints a catalog prior's penalty, "
    "normalizer, proximal operator and threshold; 'fit' fits scipy.stats families to "
    "activations saved with numpy.save and ranks them."
)


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


def _catalog_help() -> str:
    """The catalog's names and parameters, for ``derive --help``."""
    import priors

    lines = ["priors and their parameters (omitted ones stay symbolic):"]
    for name in priors.CATALOG:
        if name == "spike_and_slab":
            lines.append(f"  {name:<20} --pi, plus the slab's (a Gaussian slab: --sigma)")
            continue
        params = " ".join(f"--{p.name.replace('lambda', 'lam')}"
                          for p in priors.get(name).params)
        lines.append(f"  {name:<20} {params}")
    return "\n".join(lines)


def _step(text: str) -> float:
    """``--t``: a finite non-negative number (argparse exits with code 2 otherwise)."""
    try:
        t = float(text)
    except ValueError:
        t = math.nan
    if not math.isfinite(t) or t < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return t


def _derive(args: argparse.Namespace, extra: Sequence[str]) -> int:
    import sympy as sp

    import priors

    params = _parse_params(extra)
    try:
        prior = priors.get(args.name, **params)
    except (ValueError, TypeError) as err:
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
        print(f"  candidates:   {_candidates_latex(px)}")
    if px.threshold_expr is not None:
        print(f"threshold:      {fmt(px.threshold_expr)}")
    if not pen.params:
        thr = px.threshold(args.t)
        print(f"threshold(t={args.t:g}): {thr:.8g}")
    else:
        names = ", ".join(f"--{s.name}" for s in pen.params)
        print(f"(give {names} for the numeric threshold at t = {args.t:g})")
    return 0


def _candidates_latex(px) -> str:
    """The prox's candidates as the stationarity condition they solve (every symbol defined),
    not the radical formulas (thousands of characters of nested cube roots)."""
    import sympy as sp

    y = sp.Symbol("y", positive=True)
    eq = px.stationarity.subs(sp.Symbol("y_", positive=True), y)
    var = "|v|" if px.symmetric else "v"
    eq = eq.subs(sp.Symbol("w", positive=True), sp.Symbol(var))
    sign = r"\operatorname{sign}(v)\," if px.symmetric else ""
    return (r"x^\star \in \{0\} \cup \{" + sign + r"y : y > 0,\ " + sp.latex(eq)
            + r" = 0\}" + "  (real roots in closed form; x* is the candidate with the lowest "
            r"\tfrac12(x - v)^2 + t\,\mathrm{pen}(x))")


def _seed(text: str) -> int:
    """``--seed``: a non-negative integer (argparse exits with code 2 otherwise)."""
    try:
        seed = int(text)
    except ValueError:
        seed = -1
    if seed < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return seed


def _fit(args: argparse.Namespace) -> int:
    import numpy as np

    import priors

    try:
        samples = np.load(args.file)
    except (OSError, ValueError) as err:
        why = str(err)
        if "pickled" in why or "Failed to interpret" in why:
            why = "not a .npy/.npz array file (save activations with numpy.save)"
        print(f"error: cannot read {args.file}: {why}", file=sys.stderr)
        return 2
    if isinstance(samples, np.lib.npyio.NpzFile):
        if len(samples.files) != 1:
            print(f"error: {args.file} holds {len(samples.files)} arrays "
                  f"({', '.join(samples.files)}); save one array", file=sys.stderr)
            return 2
        samples = samples[samples.files[0]]
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
    parser = argparse.ArgumentParser(prog="python -m priors", description=_DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("derive", help="penalty, normalizer, prox and threshold of a prior",
                       description="Penalty, normalizer, prox and threshold of a catalog prior; "
                       "parameters are given as --name value.",
                       epilog=_catalog_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("name", help="catalog name, e.g. laplace, student_t, double_pareto")
    d.add_argument("--latex", action="store_true", help="print LaTeX")
    d.add_argument("--t", type=_step, default=1.0, metavar="T",
                   help="prox step for the threshold, a finite number >= 0 (default 1)")
    f = sub.add_parser("fit", help="fit scipy.stats families to activations in a .npy file")
    f.add_argument("file")
    f.add_argument("--families", default=None, help="comma-separated scipy.stats names")
    f.add_argument("--zero-inflated", choices=("auto", "yes", "no"), default="auto")
    f.add_argument("--seed", type=_seed, default=0, help="a non-negative integer (default 0)")
    f.add_argument("--penalty", action="store_true", help="also print the best fit's penalty")
    args, extra = parser.parse_known_args(argv)
    if args.command == "derive":
        return _derive(args, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return _fit(args)


if __name__ == "__main__":
    sys.exit(main())
