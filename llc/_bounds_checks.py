"""Argument checks of :mod:`llc.bounds`: dtype, seed and finite weights, each named in the error."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from ._checks import check_finite_parameters

__all__ = ["check_dtype", "check_finite_model", "check_seed", "model_applies"]

DTYPES = (torch.float32, torch.float64)


def check_dtype(dtype) -> torch.dtype:
    """float32 or float64: eigen-solvers have no half-precision kernels (float16, bfloat16)."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    if dtype not in DTYPES:
        raise ValueError(
            f"dtype must be torch.float32 or torch.float64, got {dtype} (the curvature "
            "spectrum needs an eigen-solver, which has no half-precision or integer kernels)"
        )
    return dtype


def check_seed(seed) -> int:
    """A non-negative int (a NumPy integer too): seeds numpy's Generator."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be a non-negative int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def check_finite_model(model: nn.Module) -> None:
    """``model`` is a module whose parameters are finite (:func:`llc._checks`'s rule)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_finite_parameters(model)


@contextlib.contextmanager
def model_applies():
    """Shape and type mismatches between model, inputs and targets become a ValueError on data."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as err:
        raise ValueError(
            "data: the model cannot be applied to the inputs, or the loss to its outputs and "
            f"the targets ({err})"
        ) from err
