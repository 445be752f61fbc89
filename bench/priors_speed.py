"""Compiled (sympy → torch) penalties vs hand-written torch: forward + backward on 1e7 activations.

Usage::

    python bench/priors_speed.py [--n 10000000] [--repeats 7] [--dtype float32]

Prints one table: median wall time of ``pen(a).sum().backward()`` for the penalty compiled by
``priors.penalty(prior).to_torch()`` and for the same expression written by hand, and their
ratio (target: ≤ 1.5).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

import priors


def _hand_written():
    return {
        "laplace b=0.5": (("laplace", {"b": 0.5}), lambda a: a.abs() / 0.5),
        "gaussian σ=2": (("gaussian", {"sigma": 2}), lambda a: a**2 / 8),
        "cauchy s=1": (("cauchy", {"s": 1}), lambda a: torch.log1p(a**2)),
        "student_t ν=3": (("student_t", {"nu": 3, "s": 1}), lambda a: 2 * torch.log1p(a**2 / 3)),
        "gen. gaussian p=1/2": (
            ("generalized_gaussian", {"p": 0.5, "s": 1}),
            lambda a: a.abs().sqrt(),  # NaN gradient at 0; the compiled one is safe
        ),
        "double pareto λ=2": (("double_pareto", {"lam": 2, "s": 1}),
                              lambda a: 2 * torch.log1p(a.abs())),
        "spike-and-slab": (
            ("spike_and_slab", {"pi": 0.2, "sigma": 1}),
            lambda a: torch.where(a == 0, 0.0, a**2 / 2 + math.log(4 * math.sqrt(2 * math.pi))),
        ),
        "exponential (a ≥ 0)": (
            ("exponential", {"lam": 1.5}),
            lambda a: torch.where(a >= 0, 1.5 * a, math.inf),
        ),
    }


def _time(fn, a, repeats):
    times = []
    for _ in range(repeats + 1):
        x = a.detach().requires_grad_(True)
        t0 = time.perf_counter()
        y = fn(x)
        y.sum().backward() if torch.isfinite(y).all() else y[torch.isfinite(y)].sum().backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])  # first call warms up


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(args.n, generator=gen, dtype=dtype)
    a[torch.rand(args.n, generator=gen) < 0.3] = 0.0  # sparse activations: exact zeros
    print(f"n = {args.n:.0e}, dtype = {args.dtype}, torch {torch.__version__}, "
          f"threads = {torch.get_num_threads()}, median of {args.repeats}")
    print(f"{'penalty':24s} {'compiled (ms)':>14s} {'hand (ms)':>10s} {'ratio':>7s}")
    for label, ((name, params), hand) in _hand_written().items():
        compiled = priors.penalty(priors.get(name, **params)).to_torch()
        # same values (where the hand-written one is finite) before timing
        x = a[:1000]
        ok = torch.isfinite(hand(x))
        torch.testing.assert_close(compiled(x)[ok], hand(x)[ok], rtol=1e-5, atol=1e-6)
        tc = _time(compiled, a, args.repeats)
        th = _time(hand, a, args.repeats)
        print(f"{label:24s} {1e3 * tc:14.1f} {1e3 * th:10.1f} {tc / th:7.2f}")


if __name__ == "__main__":
    main()
