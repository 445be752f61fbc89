"""Turn a fitted scipy.stats family into a :class:`priors.Prior` (private helper)."""

from __future__ import annotations

from typing import Any


def to_prior(family: str, params: dict[str, float], pi: float | None) -> Any:
    """``Prior.from_scipy(family, **params)``; spike-and-slab with P(a != 0) = pi if given."""
    from priors.catalog import spike_and_slab
    from priors.prior import Prior

    slab = Prior.from_scipy(family, **params)
    if pi is None or pi >= 1.0:
        return slab
    return spike_and_slab(slab=slab, pi=float(pi))
