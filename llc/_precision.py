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

__all__ = [
    "PRECISIONS", "caller_precision", "check_precision", "describe_precision",
    "matmul_precision", "precise",
]  # fmt: skip

PRECISIONS = ("highest", "high", "medium")
_LOCK = threading.RLock()


def check_precision(level) -> None:
    """A ValueError unless ``level`` is None or one of :data:`PRECISIONS`."""
    if level is not None and (not isinstance(level, str) or level not in PRECISIONS):
        raise ValueError(f"matmul_precision must be None or one of {PRECISIONS}, got {level!r}")


# what torch's setter writes into its per-backend settings (torch ≥ 2.9), per level
_PER_BACKEND = {"highest": {"cuda": "ieee", "mkldnn": "ieee"},
                "high": {"cuda": "tf32", "mkldnn": "tf32"},
                "medium": {"cuda": "tf32", "mkldnn": "bf16"}}  # fmt: skip


def _matmul_backends() -> dict:
    """torch's per-backend matmul settings (``fp32_precision``), by name, where it has them."""
    found = {name: getattr(getattr(torch.backends, name, None), "matmul", None)
             for name in ("cuda", "mkldnn")}  # fmt: skip
    return {name: m for name, m in found.items() if hasattr(m, "fp32_precision")}


def caller_precision() -> str:
    """The level in force, in words (torch's getter refuses once the per-backend settings
    were used, so those are listed then)."""
    try:
        return torch.get_float32_matmul_precision()
    except RuntimeError:
        backends = _matmul_backends().items()
        return ", ".join(f"{name} matmul {m.fp32_precision}" for name, m in backends)


def describe_precision(level: str | None) -> str:
    """For ``config["matmul_precision"]``."""
    return f"{level}: given" if level is not None else f"{caller_precision()}: the caller's"


@contextmanager
def matmul_precision(level: str | None) -> Iterator[None]:
    """torch's float32 matmul precision at ``level`` inside (None: left alone). On exit every
    setting is as before, the per-backend ones included (torch's setter writes them)."""
    if level is None:
        yield
        return
    with _LOCK:
        backends = _matmul_backends()
        saved = {name: m.fp32_precision for name, m in backends.items()}
        try:
            before = torch.get_float32_matmul_precision()
        except RuntimeError:  # the caller uses the per-backend settings: set only those
            before = None
        if before is None:
            for name, m in backends.items():
                m.fp32_precision = _PER_BACKEND[level][name]
        else:
            torch.set_float32_matmul_precision(level)
        try:
            yield
        finally:
            if before is not None:
                torch.set_float32_matmul_precision(before)
            for name, m in backends.items():
                m.fp32_precision = saved[name]


def precise(method: Callable) -> Callable:
    """A method of an object with a ``matmul_precision`` attribute, evaluated at that level."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self.matmul_precision is None:  # the sampler's hot path: no context to enter
            return method(self, *args, **kwargs)
        with matmul_precision(self.matmul_precision):
            return method(self, *args, **kwargs)

    return wrapper
