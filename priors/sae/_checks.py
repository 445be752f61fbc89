"""Argument checks shared by the SAE modules."""

from __future__ import annotations

import math

import torch


def generator(seed: int | torch.Generator) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    return torch.Generator().manual_seed(seed)


def check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def check_nonnegative(name: str, value: object, strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (strict and value == 0):
        raise ValueError(f"{name} must be {'> 0' if strict else '>= 0'} and finite, got {value}")


def as_penalty(prior: object, params: dict | None, name: str = "prior"):
    """The :class:`priors.Penalty` of ``prior`` with ``params`` bound, checked.

    Accepts a Prior, a Penalty, or a fit report (its ``.prior()``).  Refuses an improper
    prior (naming the normalizability condition that fails) and free symbols left unbound.
    """
    import sympy as sp

    from ..penalty import Penalty, penalty
    from ..prior import ImproperPriorError, Prior

    if hasattr(prior, "prior") and callable(prior.prior) and not isinstance(prior, Prior):
        prior = prior.prior()  # a priors.fit report
    if isinstance(prior, Prior):
        cond = prior.meta.get("normalizable_if")
        if params:
            if cond is not None:
                cond = sp.sympify(cond).subs(
                    {s: params[s.name] for s in prior.params if s.name in params}
                )
        if cond is not None and (cond is sp.false or cond == sp.false):
            raise ImproperPriorError(
                f"{name}: the prior is improper at these parameters: it is normalizable only "
                f"if {prior.meta['normalizable_if']}"
            )
        pen = penalty(prior)
    elif isinstance(prior, Penalty):
        pen = prior
    else:
        raise TypeError(
            f"{name}: expected a priors.Prior, a priors.Penalty or a priors.fit report, got "
            f"{type(prior).__name__}"
        )
    if params:
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict of parameter values, got {type(params)}")
        unknown = sorted(set(params) - {s.name for s in pen.params})
        if unknown:
            raise ValueError(
                f"params: {unknown} are not free parameters of the {name}; its free parameters "
                f"are {[s.name for s in pen.params]}"
            )
        pen = pen.subs(**params)
    if pen.params:
        raise ValueError(
            f"{name}: free parameters {[s.name for s in pen.params]} are unbound; give their "
            f"values with params={{...}}"
        )
    return pen


def check_activations(x: object, name: str = "x") -> torch.Tensor:
    """A finite floating-point tensor whose last axis holds the latents or activations."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"{name} must have at least one axis (..., d), got a scalar")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x
