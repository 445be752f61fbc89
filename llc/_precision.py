"""The float32 matmul precision of a potential's evaluations, set around them and restored after.

``torch.set_float32_matmul_precision`` is process state. A :class:`llc.Potential` built with a
level sets it around each of its evaluations only, holding a lock so that two potentials with
levels in two threads never run at each other's; the caller's level is back after every
evaluation. A thread that evaluates its own matmuls meanwhile may see the level, as with any
call of torch's setter.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

__all__ = ["PRECISIONS", "check_precision", "describe_precision", "matmul_precision", "precise"]

PRECISIONS = ("highest", "high", "medium")
_LOCK = threading.RLock()


def check_precision(level) -> None:
    """A ValueError unless ``level`` is None or one of :data:`PRECISIONS`."""
    if level is not None and (not isinstance(level, str) or level not in PRECISIONS):
        raise ValueError(f"matmul_precision must be None or one of {PRECISIONS}, got {level!r}")


def describe_precision(level: str | None) -> str:
    """For ``config["matmul_precision"]``."""
    if level is not None:
        return f"{level}: given"
    return f"{torch.get_float32_matmul_precision()}: the caller's"


@contextmanager
def matmul_precision(level: str | None) -> Iterator[None]:
    """torch's float32 matmul precision at ``level`` inside (None: left alone)."""
    if level is None:
        yield
        return
    with _LOCK:
        before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision(level)
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(before)


def precise(method: Callable) -> Callable:
    """A method of an object with a ``matmul_precision`` attribute, evaluated at that level."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with matmul_precision(self.matmul_precision):
            return method(self, *args, **kwargs)

    return wrapper
