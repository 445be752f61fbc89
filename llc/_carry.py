"""What one estimate hands the next on a nearby model, and whether its chains fit there.

The chains an estimate leaves behind are a sample of its posterior ``p_{t−1}``. Under the next
posterior ``p_t`` they are a sample up to importance weights, with

    log p_t(w) − log p_{t−1}(w) = −ΔU(w) + const,   ΔU = U_t − U_{t−1},
    U(w) = nβ L(w) + (γ/2) ‖w − w*‖²,

so they may start the next estimate's chains when ``ΔU`` varies little over them. For
log-normal weights the effective sample fraction is ``exp(−Var ΔU)``: the chains are carried
when the standard deviation of ``ΔU`` over the chains is at most :data:`MAX_SHIFT` (at least 37 %
of the sample kept). ``L`` is evaluated on the same :data:`PROBE_SAMPLES` samples (evenly strided)
at both estimates, so on the same data ``ΔU`` holds only the move of the localization centre and
any change of the loss itself (BatchNorm statistics, the reference of a behavioral loss).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ._data import take

__all__ = ["Carry", "MAX_SHIFT", "PROBE_SAMPLES", "carried_positions", "hand_over"]

PROBE_SAMPLES = 4096
MAX_SHIFT = 1.0


class Carry(NamedTuple):
    """What one estimate hands the next (:mod:`llc.tracking`)."""

    params: object  # the kernel's parameters after warm-up: metric and noise scale are reused
    llc_trace: np.ndarray  # (chain, draw): its autocorrelation and spread plan the draws
    positions: torch.Tensor | None = None  # (chain, d): where the draws left the chains
    energy: torch.Tensor | None = None  # (chain,): U_{t−1} there, on the probe samples
    n: int = 0  # samples of the potential


def _probe(n: int) -> torch.Tensor:
    return torch.arange(0, n, max(1, n // PROBE_SAMPLES))[:PROBE_SAMPLES]


@torch.no_grad()
def _tempered(pot, w: torch.Tensor, params) -> torch.Tensor:
    """``U(w_c) = nβ L(w_c) + γ/2 ‖w_c − w*‖²`` per chain on the probe samples, float64."""
    idx = _probe(pot.n).to(pot.targets.device)
    loss = pot.per_sample_losses(w, take(pot.inputs, idx), take(pot.targets, idx)).mean(1)
    shift = ((w - params.center) ** 2).sum(1)
    return params.nbeta * loss.double() + 0.5 * params.localization * shift.double()


def hand_over(pot, params, llc_trace: np.ndarray, positions: torch.Tensor) -> Carry:
    """The carry of a finished estimate whose chains ended at ``positions``."""
    pos = positions.detach().clone()
    return Carry(params, llc_trace, pos, _tempered(pot, pos, params), pot.n)


def carried_positions(start: Carry | None, pot, params, num_chains: int):
    """``(positions or None, sd of ΔU or None)``: the previous chains, when they fit."""
    pos = None if start is None else start.positions
    if pos is None or start.energy is None or start.n != pot.n:
        return None, None
    if num_chains < 2 or pos.shape != (num_chains, pot.dim) or not bool(pos.isfinite().all()):
        return None, None  # one chain cannot show how ΔU varies
    pos = pos.to(device=params.center.device, dtype=params.center.dtype)
    before = start.energy.to(params.center.device)
    sd = float((_tempered(pot, pos, params) - before).std())
    if not sd <= MAX_SHIFT:  # NaN too
        return None, sd
    return pos.clone(), sd
