"""Observables: what the sampling loop records, as accumulators over ``(chain, draw, …)``.

Each observable is a small frozen dataclass holding its settings, with three methods ::

    init(num_chains) -> acc
    update(acc, step) -> acc          # step: llc.sampling.Step, at w_t
    finalize(acc, invalid, num_steps) -> value

``invalid`` gives, per chain, the first recorded step that is not to be trusted (the chain
diverged) or None. The loop never reuses an accumulator after passing it to ``update``, so an
update may extend it in place. Pass them to :func:`llc.estimate_llc` with ``observables=`` and
read ``result.observables[name]``.

Traces keep every step, shape ``(chain, draw)``. :class:`ProbeLosses` keeps running sums
instead, so covariances over many probe samples never hold the ``(chain, draw, sample)`` array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

__all__ = [
    "Distance",
    "LLCTrace",
    "LossTrace",
    "MALATrace",
    "Observable",
    "ProbeLossStats",
    "ProbeLosses",
    "Trace",
]


def _stack(rows: list[torch.Tensor], num_chains: int) -> torch.Tensor:
    if not rows:
        return torch.zeros((num_chains, 0), dtype=torch.float64)
    return torch.stack(rows, dim=1).to(torch.float64)


def _mask(out: np.ndarray, invalid) -> np.ndarray:
    for c, start in enumerate(invalid):
        if start is not None:  # values recorded after a chain diverged carry no information
            out[c, start:] = np.nan
    return out


class Observable(Protocol):
    """What the loop asks of an observable (see the module notes)."""

    name: str

    def init(self, num_chains: int): ...

    def update(self, acc, step): ...

    def finalize(self, acc, invalid, num_steps: int): ...


@dataclass(frozen=True)
class Trace:
    """Base of the per-step traces: ``value(step)`` of shape (chain,) kept at every step.

    ``value`` should only pick tensors out of the step: conversion to float64 happens once, in
    ``finalize``, so that recording costs nothing per step.
    """

    name: str = "trace"

    def init(self, num_chains: int):
        return (num_chains, [])

    def update(self, acc, step):
        acc[1].append(self.value(step))
        return acc

    def value(self, step) -> torch.Tensor:  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def finalize(self, acc, invalid, num_steps: int) -> np.ndarray:
        """The trace, shape (chain, draw), float64, NaN where a chain had diverged."""
        return _mask(_stack(acc[1], acc[0]).cpu().numpy(), invalid)


@dataclass(frozen=True)
class LLCTrace(Trace):
    """``nβ (L_B(w_t) − L_B(w*))``, the control-variate draws whose mean is λ̂ [1]_.

    The difference is taken in float64: ``L_B(w) − L_B(w*)`` is a difference of nearly equal
    numbers.

    References
    ----------
    .. [1] E. Lau, Z. Furman, G. Wang, D. Murfet, S. Wei, arXiv:2308.12108.
    """

    name: str = "llc"

    def init(self, num_chains: int):
        return (num_chains, [], [], [1.0])

    def update(self, acc, step):
        acc[1].append(step.loss)
        acc[2].append(step.loss_center)
        acc[3][0] = step.nbeta
        return acc

    def finalize(self, acc, invalid, num_steps: int) -> np.ndarray:
        num_chains, loss, center, (nbeta,) = acc
        excess = (_stack(loss, num_chains) - _stack(center, num_chains)).cpu().numpy()
        return _mask(nbeta * excess, invalid)


@dataclass(frozen=True)
class LossTrace(Trace):
    """The minibatch loss ``L_B(w_t)``."""

    name: str = "loss"

    def value(self, step) -> torch.Tensor:
        return step.loss


@dataclass(frozen=True)
class MALATrace(Trace):
    """The MALA acceptance probability of each paired step (NaN between pairs)."""

    name: str = "mala_acceptance"

    def value(self, step) -> torch.Tensor:
        return step.log_accept

    def finalize(self, acc, invalid, num_steps: int) -> np.ndarray:
        return np.exp(super().finalize(acc, invalid, num_steps))


@dataclass(frozen=True)
class Distance(Trace):
    """The squared distance ``‖w_t − w*‖²`` of each chain from the centre."""

    name: str = "distance"

    def value(self, step) -> torch.Tensor:
        diff = step.position - step.potential.center
        return (diff * diff).sum(1).to(torch.float64)


def record_due(acc: dict, step, every: int, flush) -> bool:
    """Whether to record at ``step``; first, if a divergence check ran since the last step,
    ``flush`` the buffered records of the chains still alive (those of a chain found diverged
    are dropped) and remember the new alive mask."""
    if step.alive is not acc["alive"]:
        flush(acc, step.alive.cpu())
        acc["alive"] = step.alive
    return step.index % every == 0


def _flush(acc: dict, alive: torch.Tensor) -> None:
    """Add the buffered records of the chains still alive to the running sums."""
    for losses, finite in acc["pending"]:
        keep = finite & alive
        if not keep.any():
            continue
        if acc["shift"] is None:
            acc["shift"] = losses[keep].mean(0)
        dev = torch.where(keep[:, None], losses - acc["shift"], 0.0)
        acc["chain_sum"] += dev
        acc["chain_count"] += keep.to(torch.float64)
        if acc["sq"] is not None:
            acc["sq"].addmm_(dev.T, dev)
    acc["pending"] = []


@dataclass(frozen=True)
class ProbeLossStats:
    """Posterior moments of per-sample losses ``ℓ_i(w)`` on a probe set.

    Attributes
    ----------
    mean : ndarray, shape (sample,)
        ``E_w[ℓ_i(w)]`` over all kept draws of all chains.
    covariance : ndarray, shape (sample, sample), or None
        ``Cov_w(ℓ_i, ℓ_j)`` (unbiased, pooled over chains and draws).
    chain_mean : ndarray, shape (chain, sample)
        Each chain's mean (NaN for a chain with no kept draw).
    count : int
        Draws that entered the sums.
    """

    mean: np.ndarray
    covariance: np.ndarray | None
    chain_mean: np.ndarray
    count: int

    def correlation(self) -> np.ndarray:
        """``Cov(ℓ_i, ℓ_j) / √(Var ℓ_i Var ℓ_j)``, shape (sample, sample)."""
        if self.covariance is None:
            raise ValueError("correlation needs covariance=True in ProbeLosses")
        sd = np.sqrt(np.diag(self.covariance))
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.covariance / np.outer(sd, sd)


def _moved(t, pot):
    if isinstance(t, dict):
        return {k: _moved(v, pot) for k, v in t.items()}
    return t.to(pot.device, pot.dtype) if t.is_floating_point() else t.to(pot.device)


@dataclass(frozen=True, eq=False)
class ProbeLosses:
    """Mean and covariance of the per-sample losses on ``(inputs, targets)`` under the posterior.

    Parameters
    ----------
    inputs, targets : Tensor, shape (sample, ...)
        The probe set, moved to the potential's device and dtype; inputs may be a dict of
        tensors (keyword inputs of the model).
    every : int
        Record every this many steps (each record is one forward pass of every chain).
    covariance : bool
        Accumulate the (sample, sample) covariance: ``8·sample²`` bytes.
    per_token : bool
        With ``loss="next_token"``: record each predicted token's loss instead of each
        sequence's, so that "sample" is a token, ``m·(seq − 1)`` of them in row-major order
        (sequence, position); ignored positions are 0.
    name : str

    Notes
    -----
    Running sums over kept draws ``ℓ`` (live chains with finite values), shifted by the first
    draw ``k`` for numerical stability: ``S₁ = Σ (ℓ − k)``, ``S₂ = Σ (ℓ − k)(ℓ − k)ᵀ``, so that
    ``Cov = (S₂ − S₁S₁ᵀ/N) / (N − 1)``. Records wait in a buffer until the loop's next
    divergence check: those of a chain found diverged there are dropped, as the traces drop its
    last ``check_every`` steps. The probe set is moved to the potential's device and dtype.
    """

    inputs: torch.Tensor | dict
    targets: torch.Tensor
    every: int = 10
    covariance: bool = True
    per_token: bool = False
    name: str = "probe_losses"

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"every must be a positive integer, got {self.every!r}")
        parts = list(self.inputs.values()) if isinstance(self.inputs, dict) else [self.inputs]
        if not all(isinstance(t, torch.Tensor) for t in [*parts, self.targets]) or not parts:
            raise TypeError("inputs (a tensor or a dict of tensors) and targets must be tensors")
        if parts[0].shape[0] != self.targets.shape[0] or self.targets.shape[0] == 0:
            raise ValueError(
                f"inputs and targets must hold the same positive number of samples, got "
                f"{parts[0].shape[0]} and {self.targets.shape[0]}"
            )
        if self.per_token and self.targets.ndim != 2:
            raise ValueError(
                "per_token needs token targets of shape (sample, seq), got "
                f"{tuple(self.targets.shape)}"
            )

    @property
    def size(self) -> int:
        """Number of recorded losses per draw: samples, or tokens with ``per_token``."""
        m = self.targets.shape[0]
        return m * (self.targets.shape[1] - 1) if self.per_token else m

    def init(self, num_chains: int):
        m = self.size
        return {
            "shift": None,
            "chain_sum": torch.zeros(num_chains, m, dtype=torch.float64),
            "chain_count": torch.zeros(num_chains, dtype=torch.float64),
            "sq": torch.zeros(m, m, dtype=torch.float64) if self.covariance else None,
            "pending": [],  # (losses (chain, m), finite (chain,)) since the last check
            "alive": None,  # the loop's alive mask at the last check (a new tensor per check)
            "data": None,  # the probe set on the potential's device and dtype
        }

    def update(self, acc, step):
        if not record_due(acc, step, self.every, _flush):
            return acc
        pot = step.potential
        if acc["data"] is None:
            acc["data"] = (_moved(self.inputs, pot), _moved(self.targets, pot))
        record = pot.per_token_losses if self.per_token else pot.per_sample_losses
        losses = record(step.position, *acc["data"]).reshape(step.position.shape[0], -1)
        losses = losses.to(torch.float64).cpu()
        acc["pending"].append((losses, torch.isfinite(losses).all(dim=1)))
        return acc

    def finalize(self, acc, invalid, num_steps: int) -> ProbeLossStats:
        _flush(acc, torch.tensor([start is None for start in invalid]))
        m = self.size
        count = float(acc["chain_count"].sum())
        if acc["shift"] is None or count == 0:
            nan = np.full(m, np.nan)
            cov = np.full((m, m), np.nan) if self.covariance else None
            return ProbeLossStats(nan, cov, np.full(acc["chain_sum"].shape, np.nan), 0)
        s1 = acc["chain_sum"].sum(0)
        mean = acc["shift"] + s1 / count
        with np.errstate(invalid="ignore", divide="ignore"):
            chain_mean = (acc["shift"] + acc["chain_sum"] / acc["chain_count"][:, None]).numpy()
        cov = None
        if acc["sq"] is not None:
            cov = ((acc["sq"] - torch.outer(s1, s1) / count) / max(count - 1, 1)).numpy()
        return ProbeLossStats(mean.numpy(), cov, chain_mean, int(count))
