"""Private helpers: validation of joints and axes, and zero-safe information quantities.

All quantities are computed in nats on float64 numpy arrays and converted to the requested
base at the end (``_to_base``).  Terms with ``p = 0`` contribute 0 (the convention
``0 log 0 = 0``), so no NaN can appear.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

Axes = tuple[int, ...]


def _log_base(base: float | str) -> float:
    """Natural log of the base; ``"nats"``/``"bits"`` are accepted as names for e and 2."""
    if isinstance(base, str):
        names = {"nats": math.e, "e": math.e, "bits": 2.0}
        if base not in names:
            raise ValueError(f"base must be a positive number != 1, 'nats' or 'bits'; got {base!r}")
        base = names[base]
    if isinstance(base, bool) or not isinstance(base, (int, float, np.floating, np.integer)):
        raise TypeError(f"base must be a number, 'nats' or 'bits'; got {type(base).__name__}")
    base = float(base)
    if not math.isfinite(base) or base <= 0 or base == 1:
        raise ValueError(f"base must be a positive finite number != 1; got {base}")
    return math.log(base)


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """Numpy float64 copy of an array-like or torch tensor (any device)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu()
        if x.is_complex():
            raise TypeError(f"{name} must be real, got a complex tensor")
        x = x.double().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a real numeric array or tensor; got {type(x).__name__}") \
            from err
    return arr


def check_tolerance(value: Any, name: str) -> float:
    """A finite number >= 0: NaN or inf would switch off the checks it controls."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a finite number >= 0; got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value}")
    return value


def validate_joint(joint: Any, name: str = "joint", *, normalize: bool = False,
                   atol: float = 1e-8) -> np.ndarray:
    """Check a probability table: finite, non-negative, summing to 1 (or normalise it).

    Entries in ``[-atol, 0)`` are rounding noise and set to 0; anything more negative raises.
    """
    atol = check_tolerance(atol, "atol")
    p = _to_numpy(joint, name)
    if p.ndim == 0:
        raise ValueError(f"{name} must have at least one axis (one per variable); got a scalar")
    if p.size == 0:
        raise ValueError(f"{name} is empty (shape {p.shape})")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    low = float(p.min())
    if low < -atol:
        raise ValueError(f"{name} has negative entries (min {low:.3g}); probabilities must be >= 0")
    p = np.where(p < 0, 0.0, p)
    total = float(p.sum())
    if normalize:
        if total <= 0:
            raise ValueError(f"{name} sums to {total:.3g}; cannot normalise a zero table")
        p = p / total
    elif abs(total - 1.0) > atol:
        raise ValueError(
            f"{name} sums to {total:.12g}, not 1 (tolerance {atol:g}); "
            "pass normalize=True to rescale it"
        )
    return p


def normalize_axes(spec: Any, ndim: int, name: str) -> Axes:
    """An axis or a tuple/list of axes -> tuple of non-negative ints, checked against ``ndim``."""
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        items = (int(spec),)
    elif isinstance(spec, (tuple, list)):
        items = tuple(spec)
        if len(items) == 0:
            raise ValueError(f"{name} is an empty block; give at least one axis")
        for a in items:
            if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
                raise TypeError(f"{name} must contain integer axes; got {a!r}")
        items = tuple(int(a) for a in items)
    else:
        raise TypeError(f"{name} must be an axis (int) or a tuple of axes; got {spec!r}")
    out = []
    for a in items:
        if not -ndim <= a < ndim:
            raise ValueError(f"{name} refers to axis {a}, but the joint has only {ndim} axes")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} repeats an axis: {items}")
    return tuple(out)


def normalize_roles(ndim: int, observables: Any, latents: Sequence[tuple[Any, str]],
                    min_blocks: int = 2) -> tuple[tuple[Axes, ...], tuple[Axes, ...]]:
    """Validate observables (list of axes/blocks) and latents; no axis may be used twice."""
    if isinstance(observables, (int, np.integer)) or not isinstance(observables, (list, tuple)):
        raise TypeError(
            "observables must be a list of axes or tuples of axes (one entry per block); "
            f"got {observables!r}"
        )
    if len(observables) < min_blocks:
        raise ValueError(
            f"observables must name at least {min_blocks} blocks; got {len(observables)}"
        )
    blocks = tuple(normalize_axes(b, ndim, f"observables[{i}]") for i, b in enumerate(observables))
    lats = tuple(normalize_axes(spec, ndim, nm) for spec, nm in latents)
    seen: dict[int, str] = {}
    named = [(f"observables[{i}]", b) for i, b in enumerate(blocks)]
    named += [(nm, ax) for (_, nm), ax in zip(latents, lats)]
    for nm, axes in named:
        for a in axes:
            if a in seen:
                raise ValueError(f"axis {a} is used by both {seen[a]} and {nm}; roles must not "
                                 "overlap")
            seen[a] = nm
    return blocks, lats


def marginal(p: np.ndarray, keep: Sequence[int]) -> np.ndarray:
    """Sum out every axis not in ``keep`` (``keepdims`` so it broadcasts against ``p``)."""
    drop = tuple(a for a in range(p.ndim) if a not in set(keep))
    return p.sum(axis=drop, keepdims=True) if drop else p


def entropy_nats(p: np.ndarray, keep: Sequence[int]) -> float:
    """H of the variables on axes ``keep`` (nats), zero-safe."""
    q = marginal(p, keep).ravel()
    q = q[q > 0]
    return float(max(0.0, -(q * np.log(q)).sum()))


def expected_log_ratio(p: np.ndarray, num: Sequence[np.ndarray],
                       den: Sequence[np.ndarray]) -> float:
    r"""``Σ p · log(Π num / Π den)`` over the support of ``p`` (marginals broadcast against p).

    Used for KL divergences written as ``E_p[log p(..)p(..)/(p(..)p(..))]``; every marginal is
    positive wherever ``p`` is, so the ratio is finite on the support.
    """
    mask = p > 0
    total = np.zeros(p.shape)
    for q in num:
        total = total + np.log(np.where(mask, np.broadcast_to(q, p.shape), 1.0))
    for q in den:
        total = total - np.log(np.where(mask, np.broadcast_to(q, p.shape), 1.0))
    return float((p[mask] * total[mask]).sum())


def _clean(val: float) -> float:
    """A divergence or conditional entropy: rounding below 0 or below 1e-13 nats is reported 0."""
    return 0.0 if val < 1e-13 else float(val)


def cond_mutual_info_nats(p: np.ndarray, a: Sequence[int], b: Sequence[int],
                          c: Sequence[int] = ()) -> float:
    """I(A; B | C) in nats as ``E log[p(abc) p(c) / (p(ac) p(bc))]``; clipped at 0."""
    keep = tuple(a) + tuple(b) + tuple(c)
    pj = marginal(p, keep)
    val = expected_log_ratio(pj, [pj, marginal(pj, c)], [marginal(pj, tuple(a) + tuple(c)),
                                                          marginal(pj, tuple(b) + tuple(c))])
    return _clean(val)


def total_correlation_nats(p: np.ndarray, blocks: Sequence[Axes], given: Axes) -> float:
    r"""``Σ_i H(X_i|C) − H(X|C) = E log[p(x,c) p(c)^{m-1} / Π_i p(x_i,c)]`` in nats."""
    allx = tuple(a for blk in blocks for a in blk)
    pj = marginal(p, allx + tuple(given))
    pc = marginal(pj, given)
    val = expected_log_ratio(pj, [pj] + [pc] * (len(blocks) - 1),
                             [marginal(pj, tuple(blk) + tuple(given)) for blk in blocks])
    return _clean(val)


def cond_entropy_nats(p: np.ndarray, a: Sequence[int], c: Sequence[int]) -> float:
    """H(A | C) in nats as ``−E log p(a,c)/p(c)``; clipped at 0."""
    pj = marginal(p, tuple(a) + tuple(c))
    val = -expected_log_ratio(pj, [pj], [marginal(pj, c)])
    return _clean(val)
