"""Posterior covariances of per-sample losses, streamed in chain groups, and the call that
samples them (shared by :mod:`llc.loss_kernel`, :mod:`llc.bif` and :mod:`llc.susceptibilities`).

The chains are dealt into G groups (chain c in group ``c mod G``). Each group keeps its own
running sums, so that the pooled covariance and G independent estimates of it come from one
pass: the spread of the G estimates is the Monte Carlo error of their mean, whatever the
autocorrelation of the draws (batch means over chains). Memory: ``8·G·m_a·m_b`` bytes.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from ._data import prepare_data
from .estimator import _estimate, _warn_frozen, estimate_llc
from .kernels import evaluation_dtype
from .observables import ProbeLosses, _moved, record_due
from .potential import Potential
from .settings import LLCSettings

RECORD_EVERY = ProbeLosses.every  # steps between records, as for ProbeLosses
GROUPS = 8  # default chain groups (at most the number of chains): 7 degrees of freedom
GROUP_MEMORY = 2**31  # bytes of grouped sums above which the default takes fewer groups (≥ 2)
_SIGNATURE = inspect.signature(estimate_llc)  # the defaults every function here shares


@dataclass(frozen=True)
class CovarianceStats:
    """Grouped moments of two sets of per-sample losses ``a_i(w)``, ``b_j(w)``.

    Attributes
    ----------
    covariance : ndarray, shape (m_a, m_b)
        ``Cov(a_i, b_j)``, pooled over all kept draws (unbiased).
    var_a, var_b : ndarray, shapes (m_a,), (m_b,)
        Pooled variances.
    mean_a, mean_b : ndarray
        Pooled means.
    group_covariance : ndarray, shape (G, m_a, m_b)
        Each group's own estimate (NaN for a group with fewer than 2 kept draws).
    group_var_a, group_var_b : ndarray, shapes (G, m_a), (G, m_b)
    group_count : ndarray of int, shape (G,)
    count : int
        Kept draws in all.
    """

    covariance: np.ndarray
    var_a: np.ndarray
    var_b: np.ndarray
    mean_a: np.ndarray
    mean_b: np.ndarray
    group_covariance: np.ndarray
    group_var_a: np.ndarray
    group_var_b: np.ndarray
    group_count: np.ndarray
    count: int

    def matrix(self, normalize: bool) -> np.ndarray:
        """The pooled covariance, or the correlation with ``normalize``."""
        if not normalize:
            return self.covariance
        return _correlation(self.covariance, self.var_a, self.var_b)

    def mcse(self, normalize: bool) -> np.ndarray:
        """Per entry, ``sd_g(estimate_g) / √G'`` over the G' groups with at least 2 draws
        (NaN when fewer than 2 such groups): G' − 1 degrees of freedom."""
        ok = self.group_count >= 2
        if ok.sum() < 2:
            return np.full(self.covariance.shape, np.nan)
        est = self.group_covariance[ok]
        if normalize:
            est = _correlation(est, self.group_var_a[ok][:, :, None], self.group_var_b[ok][:, None])
        return est.std(axis=0, ddof=1) / np.sqrt(ok.sum())

    @property
    def dof(self) -> int:
        """Degrees of freedom of :meth:`mcse`: groups with at least 2 draws, minus one."""
        return max(int((self.group_count >= 2).sum()) - 1, 0)


def _correlation(cov, var_a, var_b):
    with np.errstate(invalid="ignore", divide="ignore"):
        if np.ndim(var_a) == 1:
            return cov / np.sqrt(np.outer(var_a, var_b))
        return cov / np.sqrt(var_a * var_b)


def _flush(acc: dict, alive: torch.Tensor) -> None:
    """Add the buffered records of the chains still alive to the groups' running sums."""
    for a, b, finite in acc["pending"]:
        keep = finite & alive
        if not keep.any():
            continue
        if acc["shift_a"] is None:  # a common shift for every group keeps the sums additive
            acc["shift_a"], acc["shift_b"] = a[keep].mean(0), b[keep].mean(0)
        da = torch.where(keep[:, None], a - acc["shift_a"], 0.0)
        db = torch.where(keep[:, None], b - acc["shift_b"], 0.0)
        acc["sum_a"] += da
        acc["sum_b"] += db
        acc["sq_a"] += da * da
        acc["sq_b"] += db * db
        acc["count"] += keep.to(torch.float64)
        for g, rows in enumerate(acc["groups"]):
            acc["cross"][g].addmm_(da[rows].T, db[rows])
    acc["pending"] = []


@dataclass(frozen=True, eq=False)
class LossCovariance:
    """Observable: the grouped covariance of per-sample losses on two probe sets ``a`` and ``b``.

    ``b`` None means ``b = a`` (one evaluation per record); ``b_sets``, several data sets whose
    losses are concatenated into ``b``, may replace it. ``reduce_a`` records the mean of ``a``'s
    per-sample losses (one column) instead. Data are ``(inputs, targets)`` as prepared by
    :func:`prepare_probe`; ``per_token`` records each predicted token's loss
    (``loss="next_token"``) in ``b``, and in ``a`` unless reduced. Records follow
    :class:`llc.observables.ProbeLosses`: every ``every`` steps, buffered until the loop's
    divergence check, dropped for a chain found diverged there.
    """

    a: tuple
    b: tuple | None = None
    groups: int = GROUPS
    every: int = RECORD_EVERY
    per_token: bool = False
    name: str = "loss_covariance"
    b_sets: tuple = ()
    reduce_a: bool = False

    def _size(self, data, per_token: bool) -> int:
        targets = data[1]
        return targets.shape[0] * (targets.shape[1] - 1) if per_token else targets.shape[0]

    def _sets(self) -> list:
        """The data sets evaluated at each record: ``a`` first, then those of ``b``."""
        return [self.a, *((self.b,) if self.b is not None else self.b_sets)]

    @property
    def shape(self) -> tuple[int, int]:
        """``(m_a, m_b)``: the recorded columns of ``a`` and ``b``."""
        m_a = 1 if self.reduce_a else self._size(self.a, self.per_token)
        rest = self._sets()[1:]
        return m_a, sum(self._size(d, self.per_token) for d in rest) if rest else m_a

    def init(self, num_chains: int):
        g = min(self.groups, num_chains)
        m_a, m_b = self.shape
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64)  # noqa: E731
        return {
            "groups": [torch.arange(k, num_chains, g) for k in range(g)],
            "shift_a": None, "shift_b": None,
            "sum_a": zeros(num_chains, m_a), "sum_b": zeros(num_chains, m_b),
            "sq_a": zeros(num_chains, m_a), "sq_b": zeros(num_chains, m_b),
            "count": zeros(num_chains), "cross": zeros(g, m_a, m_b),
            "pending": [], "alive": None, "data": None,
        }  # fmt: skip

    def _losses(self, pot, w, data, per_token: bool):
        record = pot.per_token_losses if per_token else pot.per_sample_losses
        return record(w, *data).reshape(w.shape[0], -1).to(torch.float64).cpu()

    def _modes(self) -> list[bool]:
        """Per set, whether its losses are per token (a reduced ``a`` is per sample)."""
        n = len(self._sets())
        return [self.per_token and not (i == 0 and self.reduce_a) for i in range(n)]

    def _prepare(self, pot):
        """The sets on the potential's device, stacked into one batch when they stack (plain
        tensors of one per-sample shape, one loss mode): one forward pass per record."""
        sets = [(_moved(d[0], pot), _moved(d[1], pot)) for d in self._sets()]
        modes = self._modes()
        same = len(set(modes)) == 1 and all(
            isinstance(x, torch.Tensor)
            and x.shape[1:] == sets[0][0].shape[1:]
            and x.dtype == sets[0][0].dtype
            and y.shape[1:] == sets[0][1].shape[1:]
            and y.dtype == sets[0][1].dtype
            for x, y in sets
        )
        if len(sets) > 1 and same:
            sizes = [self._size(d, modes[0]) for d in sets]
            stacked = (torch.cat([x for x, _ in sets]), torch.cat([y for _, y in sets]))
            return "stacked", stacked, sizes
        return "apart", sets, modes

    def _evaluate(self, pot, w, data) -> list[torch.Tensor]:
        """Each set's recorded losses, shape (chain, size) each."""
        how, sets, extra = data
        if how == "stacked":
            return list(self._losses(pot, w, sets, self._modes()[0]).split(extra, 1))
        return [self._losses(pot, w, d, mode) for d, mode in zip(sets, extra)]

    def update(self, acc, step):
        if not record_due(acc, step, self.every, _flush):
            return acc
        pot = step.potential
        if acc["data"] is None:
            acc["data"] = self._prepare(pot)
        a, *rest = self._evaluate(pot, step.position, acc["data"])
        if self.reduce_a:
            a = a.mean(1, keepdim=True)
        b = torch.cat(rest, 1) if rest else a
        finite = torch.isfinite(a).all(dim=1) & torch.isfinite(b).all(dim=1)
        acc["pending"].append((a, b, finite))
        return acc

    def finalize(self, acc, invalid, num_steps: int) -> CovarianceStats:
        _flush(acc, torch.tensor([start is None for start in invalid]))
        groups = acc["groups"]
        n_g = torch.stack([acc["count"][r].sum() for r in groups])
        s_a = torch.stack([acc["sum_a"][r].sum(0) for r in groups])
        s_b = torch.stack([acc["sum_b"][r].sum(0) for r in groups])
        q_a = torch.stack([acc["sq_a"][r].sum(0) for r in groups])
        q_b = torch.stack([acc["sq_b"][r].sum(0) for r in groups])
        cross = acc["cross"]
        n = n_g.sum()
        shift_a = acc["shift_a"] if acc["shift_a"] is not None else torch.zeros(s_a.shape[1])
        shift_b = acc["shift_b"] if acc["shift_b"] is not None else torch.zeros(s_b.shape[1])

        def central(sq, s1, s2, count):  # (Σ d dᵀ − S₁S₂ᵀ/N) / (N − 1), NaN below 2 draws
            with np.errstate(invalid="ignore", divide="ignore"):
                out = (sq - s1 * s2 / count) / (count - 1)
            return torch.where(count >= 2, out, torch.nan).numpy()

        ng = n_g[:, None, None]
        return CovarianceStats(
            covariance=central(cross.sum(0), s_a.sum(0)[:, None], s_b.sum(0)[None], n),
            var_a=central(q_a.sum(0), s_a.sum(0), s_a.sum(0), n),
            var_b=central(q_b.sum(0), s_b.sum(0), s_b.sum(0), n),
            mean_a=(shift_a + s_a.sum(0) / n).numpy(),
            mean_b=(shift_b + s_b.sum(0) / n).numpy(),
            group_covariance=central(cross, s_a[:, :, None], s_b[:, None], ng),
            group_var_a=central(q_a, s_a, s_a, n_g[:, None]),
            group_var_b=central(q_b, s_b, s_b, n_g[:, None]),
            group_count=n_g.numpy().astype(int),
            count=int(n),
        )


def _first(x):
    return next(iter(x.values())) if isinstance(x, dict) else x


def posterior(model, data, kw: dict) -> tuple[Potential, LLCSettings]:
    """The potential and settings that ``estimate_llc(model, data, **kw)`` would sample, its
    defaults read from its signature."""
    for bad in ("observables", "backend"):
        if bad in kw:
            raise TypeError(f"{bad} cannot be passed here: this call sets it")
    try:
        bound = _SIGNATURE.bind(model, data, **kw)
    except TypeError as exc:  # an unknown keyword, named by Python's message
        raise TypeError(f"{exc} (the keyword arguments are those of llc.estimate_llc)") from None
    bound.apply_defaults()
    a = bound.arguments
    settings = LLCSettings(**{f.name: a[f.name] for f in fields(LLCSettings)})
    pot = Potential(
        model, data, loss=a["loss"], params=a["params"], divergence=a["divergence"],
        device=a["device"], dtype=evaluation_dtype(settings.sampler, a["dtype"]),
        matmul_precision=a["matmul_precision"],
    )  # fmt: skip
    if a["params"] is None:
        _warn_frozen(model, stacklevel=4)  # the line that called the public function
    return pot, settings


def sample(pot: Potential, settings: LLCSettings, observable):
    """The LLC run with ``observable`` recorded: ``(LLCResult, its value)``. Warnings point at
    the line that called the public function (the frame above the caller)."""
    result, _ = _estimate(pot, settings, (observable,), stacklevel=5)
    return result, result.observables[observable.name]


def prepare_probe(name: str, probe, pot: Potential, per_token: bool) -> tuple:
    """``probe`` as ``(inputs, targets)`` on the CPU, checked against the training inputs
    (None: the training data itself).

    A probe set must hold the inputs the model takes: the per-sample shape of the training
    inputs (for token data, sequences of any length), the same keys for keyword inputs, and at
    least one sample. Errors name ``name``.
    """
    tokens = pot.loss_name == "next_token"
    if pot.behavioral:
        raise ValueError(
            f"{name}: loss='behavioral' is not supported here (its targets are the reference "
            "network's outputs on the training data); pass a loss on (inputs, targets)"
        )
    if per_token and not tokens:
        raise ValueError(f"per_token needs loss='next_token', got loss={pot.loss_name!r}")
    if probe is None:
        return pot.inputs, pot.targets
    try:
        x, y = prepare_data(probe, device=torch.device("cpu"), dtype=pot.dtype, tokens=tokens)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{name}: {exc}") from None
    ref = pot.inputs
    if isinstance(ref, dict) != isinstance(x, dict) or (isinstance(x, dict) and set(x) != set(ref)):
        want = f"keyword inputs {sorted(ref)}" if isinstance(ref, dict) else "a tensor of inputs"
        raise ValueError(f"{name} must hold the inputs the model takes ({want}), like data")
    xs, rs = _first(x), _first(ref)
    same = xs.ndim == rs.ndim if tokens else xs.shape[1:] == rs.shape[1:]
    if not same or xs.dtype.is_floating_point != rs.dtype.is_floating_point:
        raise ValueError(
            f"{name} inputs have per-sample shape {tuple(xs.shape[1:])} ({xs.dtype}), but the "
            f"model takes {tuple(rs.shape[1:])} ({rs.dtype}), the shape of data's inputs"
        )
    if pot.loss_name == "cross_entropy" and not y.is_floating_point():
        y = y.long()
    return x, y


def with_groups(obs: LossCovariance, groups, settings: LLCSettings) -> LossCovariance:
    """``obs`` with ``groups`` checked; default ``min(num_chains, GROUPS)``, fewer (at least 2)
    when the grouped sums, ``8·G·m_a·m_b`` bytes, would pass ``GROUP_MEMORY``."""
    if groups is None:
        m_a, m_b = obs.shape
        fits = max(2, GROUP_MEMORY // (8 * m_a * m_b))
        groups = min(settings.num_chains, GROUPS, fits)
    elif isinstance(groups, bool) or not isinstance(groups, int) or groups < 2:
        raise ValueError(f"groups must be an integer >= 2, got {groups!r}")
    return replace(obs, groups=groups)


def record_every(every) -> int:
    """``every`` checked, default as :class:`llc.ProbeLosses`."""
    if every is None:
        return RECORD_EVERY
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    return every
