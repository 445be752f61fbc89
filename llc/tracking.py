"""The LLC during training: a hook for the training loop, and a pass over saved checkpoints.

>>> tracker = llc.LLCTracker((x, y), every=llc.LogSchedule(10_000, num=30))  # doctest: +SKIP
>>> for step in range(10_000):                                              # doctest: +SKIP
...     loss = train_step(model, optimizer)
...     tracker.step(model, step, train_loss=loss)
>>> tracker.plot()                                                          # doctest: +SKIP

Every estimate of a run uses one nβ (default ``n / log n`` of the data) and one γ (default
0.3), so the estimates are comparable with each other. Each estimate after the first continues
the previous chains when they fit the new posterior (see :class:`LLCTracker`).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._budget import default_max_draws
from ._carry import Carry
from ._precision import check_precision
from .adaptation.step_size import SETTLED
from .estimator import _estimate
from .kernels import evaluation_dtype
from .potential import Potential
from .settings import DEFAULT_LOCALIZATION, LLCSettings
from .trajectory import LLCTrajectory, TrackRecord

__all__ = ["LLCTracker", "LogSchedule", "track_checkpoints"]

DRAW_FRACTION = 10  # a tracked estimate draws at most 1/10 of a cold call's default cap
MIN_TRACK_DRAWS = 200
_POTENTIAL_KEYS = ("params", "divergence", "device", "dtype", "matmul_precision")


@dataclass(frozen=True)
class LogSchedule:
    """``num`` log-spaced training steps from ``first`` to ``last`` (step 0 kept when first = 0).

    Rounded to integers; duplicates (at early steps) are dropped, so there may be fewer.
    """

    last: int
    num: int = 30
    first: int = 1

    def __post_init__(self) -> None:
        for name, low in (("first", 0), ("num", 2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"LogSchedule {name} must be an integer >= {low}, got {v!r}")
        if isinstance(self.last, bool) or not isinstance(self.last, int) or self.last <= self.first:
            raise ValueError(f"LogSchedule last must be an integer > first, got {self.last!r}")

    @property
    def steps(self) -> tuple[int, ...]:
        lo = max(self.first, 1)
        grid = np.geomspace(lo, self.last, self.num - (self.first == 0))
        steps = sorted(
            set(np.round(grid).astype(int).tolist()) | ({0} if not self.first else set())
        )
        return tuple(steps)


def _schedule(every) -> tuple[Callable[[int], bool], bool]:
    """``(is_due(step), log_spaced)`` from an int period, a list of steps or a LogSchedule."""
    if isinstance(every, LogSchedule):
        due = frozenset(every.steps)
        return due.__contains__, True
    if isinstance(every, bool):
        raise TypeError("every must be an int, a sequence of steps or a LogSchedule, got bool")
    if isinstance(every, int | np.integer):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        return (lambda step: step % int(every) == 0), False
    if isinstance(every, Sequence) and not isinstance(every, str):
        steps = list(every)
        if not steps or not all(isinstance(s, int | np.integer) and s >= 0 for s in steps):
            raise ValueError(
                f"every: a sequence of steps must be non-empty integers >= 0, got {every!r}"
            )
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError(f"every: the steps must be strictly increasing, got {every!r}")
        return frozenset(int(s) for s in steps).__contains__, False
    raise TypeError(
        f"every must be an int, a sequence of steps or a LogSchedule, got {type(every).__name__}"
    )


@contextlib.contextmanager
def _eval_mode(model: nn.Module, enabled: bool):
    """The model in eval mode inside the block, every module's flag restored after it."""
    if not enabled:
        yield
        return
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for m, flag in flags:
            m.training = flag


class _Engine:
    """Estimates on successive weights with one nβ and γ, each warm-started from the last."""

    def __init__(self, data, loss, kwargs: dict, warm_start: bool, eval_mode: bool, keep: bool):
        self.data, self.loss = data, loss
        self.pot_kwargs = {k: kwargs.pop(k) for k in _POTENTIAL_KEYS if k in kwargs}
        self.observables = tuple(kwargs.pop("observables", ()))
        first = LLCSettings(**kwargs)  # unknown names raise TypeError, bad values ValueError now
        check_precision(self.pot_kwargs.get("matmul_precision"))
        dtype = evaluation_dtype(first.sampler, self.pot_kwargs.get("dtype"))
        if dtype is not None:
            self.pot_kwargs["dtype"] = dtype
        self.kwargs, self.warm_start, self.eval_mode, self.keep = (
            kwargs,
            warm_start,
            eval_mode,
            keep,
        )
        self.carry: Carry | None = None
        self.shapes: tuple | None = None
        self.settings: LLCSettings | None = None
        self.count = 0  # estimates made

    def _first_settings(self, pot: Potential) -> LLCSettings:
        """nβ, γ and the draw cap fixed for the run at the first estimate."""
        kw = dict(self.kwargs)
        kw["nbeta"] = kw.get("nbeta") or (pot.n / math.log(pot.n) if pot.n > 1 else 1.0)
        if kw.get("localization") is None:
            kw["localization"] = DEFAULT_LOCALIZATION
        if kw.get("max_draws") is None and kw.get("num_draws") is None:
            batch = kw.get("batch_size") or min(pot.n, 512)
            cold = default_max_draws(kw.get("num_chains", 8), batch, pot.dim)
            kw["max_draws"] = max(MIN_TRACK_DRAWS, cold // DRAW_FRACTION)
        return LLCSettings(**kw)

    def _check_shapes(self, model: nn.Module, step: int) -> None:
        shapes = tuple((n, tuple(p.shape)) for n, p in model.named_parameters())
        if self.shapes is not None and shapes != self.shapes:
            old, new = dict(self.shapes), dict(shapes)
            diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            raise ValueError(
                f"model: the parameter shapes changed at step {step} (first differing: "
                f"{diff[:5]}); a tracker follows one architecture"
            )
        self.shapes = shapes

    def estimate(self, model: nn.Module, step: int, train_loss, progress: bool, stacklevel: int):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self._check_shapes(model, step)
        t0 = time.perf_counter()
        with _eval_mode(model, self.eval_mode):
            pot = Potential(model, self.data, loss=self.loss, **self.pot_kwargs)
            if self.settings is None:
                self.settings = self._first_settings(pot)
            s = self.settings if progress else _quiet(self.settings)
            start = self.carry if self.warm_start else None
            if start is not None:
                s = replace(s, seed=_estimate_seed(s.seed, self.count))
            result, carry = _estimate(
                pot, s, self.observables, start, stacklevel + 1, hand=self.warm_start
            )
        self.carry, self.count = carry, self.count + 1
        reused = start is not None and _fitted(result.config)
        carried = result.config["carried"]
        extra = {"warm_start": start is not None, "reused": bool(reused), "carried": carried}
        return TrackRecord.from_result(
            step, result, train_loss, extra, time.perf_counter() - t0, self.keep
        )


def _estimate_seed(seed, index: int):
    """A fresh seed for the ``index``-th estimate: chains carried on must not replay the same
    noise (a repeated noise sequence adds the same net displacement at every estimate)."""
    if isinstance(seed, torch.Generator):
        return seed  # it has advanced since the last estimate
    return int(
        np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> np.uint64(2)
    )


def _fitted(config: dict) -> bool:
    """Warm-up adapted, its step needed no change at its first re-set, and it passed its tests
    (False for a fixed ``num_burnin``: then nothing was tested)."""
    if config.get("num_burnin") == "given":
        return False
    h = config.get("step_size_history", ())
    settled = len(h) < 2 or abs(math.log(h[1] / h[0])) < SETTLED
    return bool(settled and config.get("warmup_converged"))


def _quiet(s: LLCSettings) -> LLCSettings:
    return replace(s, progress=False)


class LLCTracker:
    """Estimate the LLC at scheduled steps of a training loop.

    Parameters
    ----------
    data : (inputs, targets), TensorDataset or DataLoader
        The n training samples the LLC is measured on (as in :func:`llc.estimate_llc`).
    every : int, sequence of int, or LogSchedule
        An estimate every ``every`` steps (from step 0), at the listed steps, or at log-spaced
        steps.
    loss : str or callable
        As in :func:`llc.estimate_llc`.
    warm_start : bool
        Start each estimate from the previous one (see Notes). False: every estimate is cold.
    eval_mode : bool
        Estimate with the model in eval mode (dropout off, BatchNorm on running statistics);
        each module's mode is restored afterwards.
    keep_results : bool
        Keep each full :class:`llc.LLCResult` in its record (``record.result``).
    progress : bool
        tqdm bars for each estimate's warm-up and draws.
    **estimate_kwargs
        Any other argument of :func:`llc.estimate_llc` (``nbeta``, ``localization``,
        ``num_chains``, ``seed``, ``params``, ``max_draws``, …).

    Notes
    -----
    nβ (default ``n / log n``) and γ (default 0.3) are fixed at the first estimate for the
    whole run, so the estimates ``λ̂(t) = nβ (E_w[L_n(w)] − L_n(w*_t))`` target the same
    localized tempered posterior family and can be compared with each other.

    Warm start: the chains start where the previous estimate's draws left them when they fit
    the new posterior, that is when the change ``ΔU`` of the tempered potential
    ``U(w) = nβ L(w) + γ/2 ‖w − w*‖²`` (``L`` the mean loss on at most 4,096 samples spread
    over the data) varies over them by a standard deviation of at most 1: the importance
    weights ``exp(−ΔU)`` that would turn them into a sample of the new posterior then keep at
    least 37 % of the sample (:mod:`llc._carry`). Carried chains need no warm-up from w*: a
    short one (at least 4 windows of 100 steps) re-sets the step, metric and noise
    compensation and ends when the step has settled, the energy shows no trend and the
    chains' spread has stopped changing. Chains that do not fit (the network changed too
    much, as when a behavioral loss's reference map changes), a single chain, and chains of
    an estimate in which one diverged start at w* with a full warm-up. Either way warm-up
    begins with the previous diagonal metric and noise compensation, and the draws are planned
    from the previous trace's autocorrelation and spread, capped at 1/10 of the cold default
    cap (at least 200); each record holds its own MCSE. With warm start each estimate draws
    fresh noise (a seed derived from ``seed`` and its index): chains carried on under a
    replayed noise sequence gain the same net displacement at every estimate and drift
    (without warm start every estimate uses ``seed``: common random numbers).
    ``record.settings["carried"]`` says whether the chains were carried, and
    ``result.config["carry_shift_sd"]`` holds the measured spread of ``ΔU``;
    ``record.settings["reused"]`` is True when the step needed no change at its first re-set
    and warm-up passed its tests. A fixed ``num_burnin`` replaces the warm-up's tests.

    Tracking never perturbs training: no parameter, buffer, gradient, optimizer state or global
    RNG state (CPU and CUDA) is changed by :meth:`step`.
    """

    def __init__(
        self,
        data,
        every: int | Sequence[int] | LogSchedule,
        *,
        loss="mse",
        warm_start: bool = True,
        eval_mode: bool = True,
        keep_results: bool = True,
        progress: bool = True,
        **estimate_kwargs,
    ):
        self._due, self._log = _schedule(every)
        estimate_kwargs.setdefault("progress", progress)
        self._engine = _Engine(data, loss, estimate_kwargs, warm_start, eval_mode, keep_results)
        self._progress = progress
        self._records: list[TrackRecord] = []
        self._last_step: int | None = None

    def due(self, step: int) -> bool:
        """Whether ``step`` is scheduled."""
        return self._due(int(step))

    def step(self, model: nn.Module, step: int, train_loss: float | None = None):
        """Estimate at ``step`` if it is scheduled; the :class:`TrackRecord`, or None."""
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"step must be an integer >= 0, got {step!r}")
        if self._last_step is not None and step <= self._last_step:
            raise ValueError(
                f"step must increase from call to call: got {step} after {self._last_step}"
            )
        self._last_step = int(step)
        if not self._due(int(step)):
            return None
        if torch.is_tensor(train_loss):
            train_loss = train_loss.detach().item()
        record = self._engine.estimate(model, int(step), train_loss, self._progress, 4)
        self._records.append(record)
        return record

    @property
    def records(self) -> tuple[TrackRecord, ...]:
        return tuple(self._records)

    @property
    def trajectory(self) -> LLCTrajectory:
        return LLCTrajectory(self.records, log_steps=self._log)

    def to_pandas(self):
        """One row per estimate (:meth:`LLCTrajectory.to_pandas`)."""
        return self.trajectory.to_pandas()

    def plot(self, ax=None, **kwargs):
        """λ̂ against step (:meth:`LLCTrajectory.plot`); returns the figure."""
        return self.trajectory.plot(ax, **kwargs)

    def summary(self) -> str:
        return self.trajectory.summary()


def _load(checkpoint, key):
    if isinstance(checkpoint, str | os.PathLike):
        checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, Mapping) or not all(
        torch.is_tensor(v) for v in checkpoint.values()
    ):
        raise TypeError(
            f"checkpoints[{key!r}] must be a state dict (str -> Tensor) or a path to one, "
            f"got {type(checkpoint).__name__}"
        )
    return checkpoint


def _restore(model_factory, state_dict, key) -> nn.Module:
    model = model_factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model_factory must return an nn.Module, got {type(model).__name__}")
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise ValueError(
            f"checkpoints[{key!r}] does not fit the model from model_factory: "
            f"missing keys {missing[:8]}, unexpected keys {unexpected[:8]}"
        )
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"checkpoints[{key!r}] does not fit model_factory's model: {exc}") from exc
    return model


def track_checkpoints(
    checkpoints,
    model_factory: Callable[[], nn.Module],
    data,
    *,
    loss="mse",
    train_losses: Sequence[float] | Mapping | None = None,
    log_steps: bool | None = None,
    warm_start: bool = True,
    eval_mode: bool = True,
    keep_results: bool = True,
    progress: bool = True,
    **estimate_kwargs,
) -> LLCTrajectory:
    """Estimate the LLC at saved checkpoints, in step order.

    Parameters
    ----------
    checkpoints : mapping {step: state dict or path}, or sequence of them
        State dicts (or files written by ``torch.save(model.state_dict(), path)``); a sequence
        is numbered 0, 1, 2, … .
    model_factory : callable
        ``model_factory()`` returns a fresh model of the architecture; each checkpoint is
        loaded into one (strictly: missing or unexpected keys raise ``ValueError``).
    data, loss, warm_start, eval_mode, keep_results, **estimate_kwargs
        As in :class:`LLCTracker`.
    train_losses : sequence or mapping {step: loss}, optional
        Training losses to record alongside.
    log_steps : bool, optional
        Plot on a log step axis (default: when the steps are roughly log-spaced).
    progress : bool
        A bar over checkpoints and, inside it, each estimate's bars.

    Returns
    -------
    LLCTrajectory
    """
    if not callable(model_factory):
        raise TypeError("model_factory must be callable, returning an nn.Module")
    items = _checkpoint_items(checkpoints)
    losses = _train_losses(train_losses, [k for k, _ in items])
    estimate_kwargs.setdefault("progress", progress)
    engine = _Engine(data, loss, estimate_kwargs, warm_start, eval_mode, keep_results)
    records = []
    for key, ckpt in tqdm(items, desc="checkpoints", disable=not progress):
        model = _restore(model_factory, _load(ckpt, key), key)
        records.append(engine.estimate(model, key, losses.get(key), progress, 4))
    steps = np.array([k for k, _ in items], dtype=float)
    if log_steps is None:
        pos = steps[steps > 0]
        log_steps = len(pos) > 3 and pos[-1] / pos[0] > 100 and _log_spaced(pos)
    return LLCTrajectory(tuple(records), log_steps=bool(log_steps))


def _log_spaced(steps: np.ndarray) -> bool:
    gaps = np.diff(steps)
    return bool(gaps[-1] > 10 * gaps[0])


def _checkpoint_items(checkpoints) -> list:
    if isinstance(checkpoints, Mapping):
        items = list(checkpoints.items())
        if not all(isinstance(k, int | np.integer) and k >= 0 for k, _ in items):
            raise ValueError(
                "checkpoints: the keys of a mapping must be training steps (ints >= 0)"
            )
        items = sorted(((int(k), v) for k, v in items), key=lambda kv: kv[0])
    elif isinstance(checkpoints, Sequence) and not isinstance(checkpoints, str):
        items = list(enumerate(checkpoints))
    else:
        raise TypeError(
            "checkpoints must be a mapping {step: state dict or path} or a sequence of them, "
            f"got {type(checkpoints).__name__}"
        )
    if not items:
        raise ValueError("checkpoints is empty")
    return items


def _train_losses(train_losses, keys) -> dict:
    if train_losses is None:
        return {}
    if isinstance(train_losses, Mapping):
        return {int(k): float(v) for k, v in train_losses.items()}
    values = list(train_losses)
    if len(values) != len(keys):
        raise ValueError(f"train_losses has {len(values)} values for {len(keys)} checkpoints")
    return {k: float(v) for k, v in zip(keys, values, strict=True)}
