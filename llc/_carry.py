"""What one estimate hands the next on a nearby model, and whether its chains fit there.

The chains an estimate leaves behind are a sample of its posterior ``p_{t−1}``. Under the next
posterior ``p_t`` they are a sample up to importance weights, with

    log p_t(w) − log p_{t−1}(w) = −ΔU(w) + const,   ΔU = U_t − U_{t−1},
    U(w) = nβ L(w) + (γ/2) ‖w − w*‖²,

so they may start the next estimate's chains when ``ΔU`` varies little over them. For
log-normal weights the effective sample fraction is ``exp(−Var ΔU)``: the chains are carried
when the standard deviation of ``ΔU`` over the chains is at most :data:`MAX_SHIFT` (at least 37 %
of the sample kept). ``L`` is the mean loss over the same at most :data:`PROBE_SAMPLES` samples,
spread evenly over the data, at both estimates (and, for a model that draws random numbers, the
same draws), so on the same data ``ΔU`` holds only the move of the localization centre and any
change of the loss itself (BatchNorm statistics, the reference of a behavioral loss). One chain
cannot show how ``ΔU`` varies, and chains that diverged restart at w*: neither is carried.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = [
    "Carry",
    "MAX_SHIFT",
    "PROBE_SAMPLES",
    "carried_positions",
    "hand_over",
    "probe_indices",
]

PROBE_SAMPLES = 4096
MAX_SHIFT = 1.0
_PROBE_SEED = 0  # the random draws of a stochastic model while U is evaluated


class Carry(NamedTuple):
    """What one estimate hands the next (:mod:`llc.tracking`)."""

    params: object  # the kernel's parameters after warm-up: metric and noise scale are reused
    llc_trace: np.ndarray  # (chain, draw): its autocorrelation and spread plan the draws
    positions: torch.Tensor | None = None  # (chain, d) on the CPU: where the draws ended
    energy: torch.Tensor | None = None  # (chain,) float64: U_{t−1} there
    n: int = 0  # samples of the potential


def probe_indices(n: int) -> torch.Tensor:
    """At most :data:`PROBE_SAMPLES` sample indices spread evenly over ``range(n)``."""
    m = min(n, PROBE_SAMPLES)
    return torch.arange(m) * n // m


def _tempered(chains, w: torch.Tensor, params) -> torch.Tensor:
    """``U(w_c)`` per chain on the probe samples, float64, in minibatches of the chains' size
    (and their chain batches and out-of-memory retries)."""
    pot, size = chains.potential, chains.randomness.batch_size
    idx = probe_indices(pot.n).to(pot.center.device)
    total = torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
    with pot.model_rng(_PROBE_SEED):
        for i in range(0, len(idx), size):
            part = idx[i : i + size]
            values, _ = chains.value_and_grad(w, part.expand(w.shape[0], -1))
            total += values.double() * len(part)
    shift = ((w - params.center).double() ** 2).sum(1)
    return params.nbeta * total / len(idx) + 0.5 * params.localization * shift


def hand_over(chains, params, llc_trace: np.ndarray, positions: torch.Tensor) -> Carry:
    """The carry of a finished estimate whose chains ended at ``positions``; without positions
    when a chain diverged (it was moved back to w*)."""
    diverged = any(d is not None for d in chains.diverged_at)
    if diverged or chains.num_chains < 2:
        return Carry(params, llc_trace)
    pos = positions.detach()
    energy = _tempered(chains, pos, params).cpu()
    return Carry(params, llc_trace, pos.cpu(), energy, chains.potential.n)


def carried_positions(start: Carry | None, chains, params):
    """``(positions or None, sd of ΔU or None)``: the previous chains, when they fit."""
    pot, num = chains.potential, chains.num_chains
    pos = None if start is None else start.positions
    if pos is None or start.energy is None or start.n != pot.n:
        return None, None
    if pos.shape != (num, pot.dim) or not bool(pos.isfinite().all()):
        return None, None
    pos = pos.to(device=params.center.device, dtype=params.center.dtype)
    change = _tempered(chains, pos, params) - start.energy.to(pos.device)
    sd = float(change.std())
    if not sd <= MAX_SHIFT:  # NaN too
        return None, sd
    return pos, sd
