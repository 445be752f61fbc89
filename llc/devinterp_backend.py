"""devinterp as a backend of :func:`llc.estimate_llc` (to be written)."""

from __future__ import annotations

__all__ = ["estimate_devinterp"]


def estimate_devinterp(model, data, settings, *, loss, params, device, dtype, observables):
    raise NotImplementedError
