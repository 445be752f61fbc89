"""``python -m llc estimate``: the LLC of a saved model on a saved data set, without code."""

from __future__ import annotations

import argparse
import importlib
import pickle
from pathlib import Path

from ._cli import nonnegative_int, positive_int

LOSSES = ("mse", "cross_entropy", "next_token", "behavioral")
DATA_KEYS = (("x", "y"), ("inputs", "targets"))


def add_parser(sub) -> None:
    """Register the ``estimate`` command on an argparse sub-parser collection."""
    p = sub.add_parser(
        "estimate",
        help="estimate the LLC of a saved model on a saved data set",
        description=(
            "Estimate the LLC of a saved model at its saved weights. MODEL is a file written by "
            "torch.save: a whole nn.Module, or a state dict together with --factory. DATA is a "
            ".pt file holding (inputs, targets) or a dict with keys x, y (or inputs, targets), "
            "or an .npz file with those keys. Prints the summary and writes the trace figure. "
            "Loading a whole module unpickles it: only load files you trust."
        ),
    )
    p.add_argument("model", help="torch.save'd nn.Module, or a state dict (with --factory)")
    p.add_argument("data", help=".pt or .npz file with inputs and targets")
    p.add_argument(
        "--factory",
        help="'package.module:function' returning a fresh model to load a state dict into",
    )
    p.add_argument("--loss", default="mse", choices=LOSSES, help="per-sample loss (default mse)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the chains (default 0)")
    p.add_argument("--num-chains", type=positive_int, default=8, help="chains (default 8)")
    p.add_argument("--nbeta", type=float, help="inverse temperature × n (default n / log n)")
    p.add_argument("--localization", type=float, help="γ (default 0.3)")
    p.add_argument("--max-draws", type=positive_int, help="cap on draws per chain (cheaper runs)")
    p.add_argument("--num-draws", type=positive_int, help="fixed draws per chain")
    p.add_argument("--num-burnin", type=positive_int, help="fixed warm-up steps")
    p.add_argument("--budget", type=float, help="seconds for warm-up and draws (budget=)")
    p.add_argument("--no-spread", action="store_true", help="warm-up without its spreading phase")
    p.add_argument("--sampler", default="sgld", help="sgld (default), rmsprop_sgld or sgnht")
    p.add_argument(
        "--matmul-precision", choices=["highest", "high", "medium"],
        help="torch's float32 matmul precision inside the call (default: left alone)",
    )  # fmt: skip
    p.add_argument("--num-threads", type=positive_int, help="torch threads while sampling")
    p.add_argument(
        "--max-memory", help="budget for the chains evaluated at once, e.g. 2GiB (max_memory=)"
    )
    p.add_argument("--plot", default="llc_trace.png", help="trace figure (default llc_trace.png)")
    p.add_argument("--progress", action="store_true", help="show progress bars")


def _load_model(path: str, factory: str | None):
    import torch

    try:  # with a factory the file should be plain tensors: load it without unpickling code
        obj = torch.load(path, map_location="cpu", weights_only=factory is not None)
    except pickle.UnpicklingError as e:
        raise ValueError(f"--factory: {path} is not a plain state dict; drop --factory") from e
    if isinstance(obj, torch.nn.Module):
        if factory is not None:
            raise ValueError(f"--factory: {path} holds a whole module; drop --factory")
        return obj
    if not isinstance(obj, dict):
        raise ValueError(f"model: {path} holds a {type(obj).__name__}, not a module or state dict")
    if factory is None:
        raise ValueError(
            f"model: {path} holds a state dict; pass --factory 'package.module:function' that "
            "returns the model to load it into"
        )
    model = _factory(factory)()
    model.load_state_dict(obj)
    return model


def _factory(spec: str):
    name, sep, attr = spec.partition(":")
    if not sep or not name or not attr:
        raise ValueError(f"--factory: expected 'package.module:function', got {spec!r}")
    try:
        fn = getattr(importlib.import_module(name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"--factory: cannot import {spec!r} ({e})") from e
    if not callable(fn):
        raise ValueError(f"--factory: {spec!r} is not callable")
    return fn


def _load_data(path: str):
    import numpy as np
    import torch

    if Path(path).suffix == ".npz":
        with np.load(path) as z:
            obj = {k: torch.from_numpy(z[k]) for k in z.files}
    else:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return tuple(obj)
    if isinstance(obj, dict):
        for keys in DATA_KEYS:
            if all(k in obj for k in keys):
                return tuple(obj[k] for k in keys)
    found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
    raise ValueError(
        f"data: {path} must hold (inputs, targets) or keys x, y (or inputs, targets); found {found}"
    )


def run(args: argparse.Namespace) -> int:
    """Load, estimate, print the summary (with any warnings) and write the figure."""
    import matplotlib

    matplotlib.use("Agg")
    from .estimator import estimate_llc

    model = _load_model(args.model, args.factory)
    data = _load_data(args.data)
    result = estimate_llc(
        model, data, loss=args.loss, seed=args.seed, num_chains=args.num_chains,
        nbeta=args.nbeta, localization=args.localization, max_draws=args.max_draws,
        num_draws=args.num_draws, num_burnin=args.num_burnin,
        sampler=args.sampler, progress=args.progress, budget=args.budget,
        spread=not args.no_spread, matmul_precision=args.matmul_precision,
        num_threads=args.num_threads, max_memory=args.max_memory,
    )  # fmt: skip
    print(result.summary())
    fig = result.plot()
    fig.savefig(args.plot, dpi=120)
    print(f"wrote {args.plot}")
    return 0
