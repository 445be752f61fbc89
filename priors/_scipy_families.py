"""Sympy densities of scipy.stats families, in scipy's own parametrization.

``p(a) = f((a − loc)/scale) / scale`` with ``f`` the standardized density of the family as
documented by scipy.stats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sympy as sp

from ._symbolic import to_sympy_number

__all__ = ["SCIPY_FAMILIES", "scipy_fields"]

_X = sp.Symbol("x_", real=True)
_A = sp.Symbol("a", real=True)
_HALF = sp.Interval(0, sp.oo)
_OPEN_HALF = sp.Interval.Lopen(0, sp.oo)

# name -> (shape parameter names, standardized density builder, standardized support)
_Builder = Callable[..., sp.Expr]
SCIPY_FAMILIES: dict[str, tuple[tuple[str, ...], _Builder, sp.Set]] = {
    "norm": ((), lambda: sp.exp(-(_X**2) / 2) / sp.sqrt(2 * sp.pi), sp.Reals),
    "laplace": ((), lambda: sp.exp(-sp.Abs(_X)) / 2, sp.Reals),
    "cauchy": ((), lambda: 1 / (sp.pi * (1 + _X**2)), sp.Reals),
    "t": (
        ("df",),
        lambda df: sp.gamma((df + 1) / 2)
        / (sp.sqrt(sp.pi * df) * sp.gamma(df / 2))
        * (1 + _X**2 / df) ** (-(df + 1) / 2),
        sp.Reals,
    ),
    "gennorm": (
        ("beta",),
        lambda beta: beta / (2 * sp.gamma(1 / beta)) * sp.exp(-(sp.Abs(_X) ** beta)),
        sp.Reals,
    ),
    "halfgennorm": (
        ("beta",),
        lambda beta: beta / sp.gamma(1 / beta) * sp.exp(-(_X**beta)),
        _HALF,
    ),
    "halfcauchy": ((), lambda: 2 / (sp.pi * (1 + _X**2)), _HALF),
    "halfnorm": ((), lambda: sp.sqrt(2 / sp.pi) * sp.exp(-(_X**2) / 2), _HALF),
    "expon": ((), lambda: sp.exp(-_X), _HALF),
    "lognorm": (
        ("s",),
        lambda s: sp.exp(-sp.log(_X) ** 2 / (2 * s**2)) / (s * _X * sp.sqrt(2 * sp.pi)),
        _OPEN_HALF,
    ),
    "gamma": (("a",), lambda a: _X ** (a - 1) * sp.exp(-_X) / sp.gamma(a), _OPEN_HALF),
    "invgamma": (("a",), lambda a: _X ** (-a - 1) * sp.exp(-1 / _X) / sp.gamma(a), _OPEN_HALF),
    "lomax": (("c",), lambda c: c / (1 + _X) ** (c + 1), _HALF),
    "genpareto": (("c",), lambda c: (1 + c * _X) ** (-1 - 1 / c), _HALF),
    "weibull_min": (("c",), lambda c: c * _X ** (c - 1) * sp.exp(-(_X**c)), _HALF),
}


def scipy_fields(name: str, **params: float) -> dict[str, Any]:
    """The fields of :meth:`priors.Prior.from_scipy`'s prior (``Prior(**fields)``).

    Fields rather than a Prior: :mod:`priors.prior` builds on this module.
    """
    if not isinstance(name, str) or name not in SCIPY_FAMILIES:
        raise ValueError(
            f"unknown scipy.stats family {name!r}; supported: {', '.join(sorted(SCIPY_FAMILIES))}"
        )
    shapes, build, std_support = SCIPY_FAMILIES[name]
    params = dict(params)
    loc = to_sympy_number(params.pop("loc", 0))
    scale = to_sympy_number(params.pop("scale", 1))
    if not scale > 0:
        raise ValueError(f"scale: must be > 0, got {scale}")
    missing = [s for s in shapes if s not in params]
    if missing:
        raise ValueError(f"scipy family {name!r}: missing shape parameter(s) {missing}")
    unknown = set(params) - set(shapes)
    if unknown:
        raise ValueError(
            f"scipy family {name!r}: unknown parameter(s) {sorted(unknown)}; "
            f"expected {list(shapes) + ['loc', 'scale']}"
        )
    shape_vals = {}
    for s in shapes:
        val = to_sympy_number(params[s])
        if name != "genpareto" and not val > 0:
            raise ValueError(f"{s}: must be > 0 for scipy family {name!r}, got {params[s]}")
        shape_vals[s] = val
    support = std_support
    if name == "genpareto":
        c = shape_vals["c"]
        if c == 0:
            return scipy_fields("expon", loc=float(loc), scale=float(scale))
        if c < 0:
            support = sp.Interval(0, -1 / c)
    std = build(**shape_vals)
    density = std.subs(_X, (_A - loc) / scale) / scale
    if support != sp.Reals:
        support = sp.Interval(
            loc + scale * support.inf,
            loc + scale * support.sup,
            support.left_open,
            support.right_open,
        )
    meta = {"scipy_name": name, "scipy_params": {**{k: float(v) for k, v in shape_vals.items()},
                                                 "loc": float(loc), "scale": float(scale)}}
    return {"density": density, "var": _A, "support": support, "params": (),
            "name": f"scipy.{name}", "meta": meta}
