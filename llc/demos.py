"""Worked examples: a one-layer transformer that groks modular addition, with the LLC tracked.

>>> from llc.demos import grokking
>>> run = grokking()          # p = 47, 5,000 steps, 26 estimates: about 6 min   # doctest: +SKIP
>>> print(run.summary())                                                          # doctest: +SKIP
>>> run.plot("grokking.png")                                                      # doctest: +SKIP

- :func:`modular_addition`: every pair ``(a, b)`` of ``Z_p`` as the tokens ``[a, b, =]`` with
  the target ``(a + b) mod p``, split at random into training and test pairs.
- :class:`ModularAdditionTransformer`: token and position embeddings, one attention layer, a
  ReLU MLP and an unembedding read at the last position (Nanda et al.'s grokking transformer,
  smaller; no LayerNorm).
- :func:`train_modular_addition`: full-batch AdamW with strong weight decay, the setting in
  which the network first memorises its training pairs and much later generalises (groks).
- :func:`grokking`: all three, with an :class:`llc.LLCTracker` on the training loss; returns a
  :class:`GrokkingRun` (history, LLC trajectory, a table and a figure).

The bench script ``bench/llc_grokking.py`` runs :func:`grokking` at full size and writes the
figure of the README.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .tracking import LLCTracker
from .trajectory import LLCTrajectory

__all__ = [
    "SMALL",
    "TRACK",
    "GrokkingRun",
    "ModularAdditionTransformer",
    "TrainingHistory",
    "grokking",
    "modular_addition",
    "train_modular_addition",
]


def modular_addition(p: int, train_fraction: float = 0.4, *, seed: int = 0):
    """All ``p²`` sums ``a + b mod p`` as token sequences, split into training and test pairs.

    Parameters
    ----------
    p : int
        The modulus (a prime in the literature; any ``p >= 2`` works). Tokens ``0 … p − 1`` are
        the residues and token ``p`` is ``=``.
    train_fraction : float
        The share of the ``p²`` pairs in the training set (at least one pair on each side).
    seed : int
        Seeds the split.

    Returns
    -------
    (train, test) : two ``(inputs, targets)`` tuples
        ``inputs`` LongTensor ``(n, 3)`` rows ``[a, b, p]``, ``targets`` LongTensor ``(n,)``
        rows ``(a + b) mod p``.
    """
    if isinstance(p, bool) or not isinstance(p, int) or p < 2:
        raise ValueError(f"p must be an integer >= 2, got {p!r}")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    a, b = torch.cartesian_prod(torch.arange(p), torch.arange(p)).unbind(1)
    inputs = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    targets = (a + b) % p
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    n_train = min(max(round(train_fraction * p * p), 1), p * p - 1)
    tr, te = perm[:n_train].sort().values, perm[n_train:].sort().values
    return (inputs[tr], targets[tr]), (inputs[te], targets[te])


class ModularAdditionTransformer(nn.Module):
    """A one-layer transformer on ``[a, b, =]`` returning the logits of ``a + b mod p``.

    Parameters
    ----------
    p : int
        The modulus: ``p + 1`` input tokens (``p`` is ``=``), ``p`` output classes.
    d_model, n_heads, d_mlp : int
        Residual width, attention heads (``d_model`` divisible by ``n_heads``) and MLP width.
    seed : int
        Seeds the initialisation (torch's global RNG is not used).

    Notes
    -----
    ``h = E[x] + P`` (token and position embeddings), then one attention layer in which the
    last position attends to all three (the other positions' outputs are never read), a ReLU
    MLP on the last position, both residual, and the unembedding ``U h`` of the last position:
    ``forward(x)`` has shape ``(batch, p)``, the input of ``loss="cross_entropy"``. Weights are
    normal with standard deviation ``1/√fan_in`` (embeddings ``1/√d_model``), biases zero.
    """

    def __init__(
        self, p: int, d_model: int = 32, n_heads: int = 4, d_mlp: int = 128, *, seed: int = 0
    ):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.p, self.n_heads = p, n_heads
        gen = torch.Generator().manual_seed(seed)

        def normal(*shape, fan_in):
            return nn.Parameter(torch.randn(*shape, generator=gen) / math.sqrt(fan_in))

        self.embed = normal(p + 1, d_model, fan_in=d_model)
        self.pos = normal(3, d_model, fan_in=d_model)
        self.W_q = normal(d_model, d_model, fan_in=d_model)
        self.W_k = normal(d_model, d_model, fan_in=d_model)
        self.W_v = normal(d_model, d_model, fan_in=d_model)
        self.W_o = normal(d_model, d_model, fan_in=d_model)
        self.W_in = normal(d_mlp, d_model, fan_in=d_model)
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = normal(d_model, d_mlp, fan_in=d_mlp)
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.unembed = normal(p, d_model, fan_in=d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed[x] + self.pos[: x.shape[-1]]  # (batch, 3, d)
        batch, length, d = h.shape
        heads, dh = self.n_heads, d // self.n_heads
        q = (h[:, -1] @ self.W_q.T).view(batch, heads, 1, dh)
        k = (h @ self.W_k.T).view(batch, length, heads, dh).transpose(1, 2)
        v = (h @ self.W_v.T).view(batch, length, heads, dh).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)  # (b, heads, 1, 3)
        z = (att @ v).reshape(batch, d)
        r = h[:, -1] + z @ self.W_o.T
        r = r + F.relu(r @ self.W_in.T + self.b_in) @ self.W_out.T + self.b_out
        return r @ self.unembed.T


@dataclass(frozen=True)
class TrainingHistory:
    """Losses and accuracies along training, at the steps in ``steps``.

    Attributes
    ----------
    steps : ndarray of int
    train_loss, test_loss, train_acc, test_acc : ndarray of float
    """

    steps: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    train_acc: np.ndarray
    test_acc: np.ndarray

    def first_step(self, metric: str, threshold: float) -> int | None:
        """The first recorded step at which ``metric`` (e.g. ``"test_acc"``) is ``>= threshold``
        and stays so to the end; None if it never does."""
        values = getattr(self, metric)
        below = np.flatnonzero(values < threshold)
        start = 0 if below.size == 0 else below[-1] + 1
        return None if start >= len(values) else int(self.steps[start])

    @property
    def memorised(self) -> int | None:
        """The first step from which training accuracy stays at 100 %."""
        return self.first_step("train_acc", 1.0)

    @property
    def grokked(self) -> int | None:
        """The first step from which test accuracy stays at or above 99 %."""
        return self.first_step("test_acc", 0.99)


@torch.no_grad()
def _evaluate(model: nn.Module, data) -> tuple[float, float]:
    logits = model(data[0])
    loss = F.cross_entropy(logits, data[1]).item()
    return loss, (logits.argmax(-1) == data[1]).double().mean().item()


def train_modular_addition(
    model: nn.Module,
    train,
    test,
    *,
    steps: int,
    lr: float = 1e-3,
    weight_decay: float = 1.0,
    betas: tuple[float, float] = (0.9, 0.98),
    eval_every: int = 10,
    callback: Callable[[nn.Module, int, float], None] | None = None,
    log: Callable[[str], None] | None = None,
    log_every: int = 1000,
) -> TrainingHistory:
    """Train ``model`` in place with full-batch AdamW on the cross-entropy of ``train``.

    Parameters
    ----------
    model : nn.Module
        Maps inputs ``(n, 3)`` to logits ``(n, p)``.
    train, test : (inputs, targets)
        As returned by :func:`modular_addition`.
    steps : int
        Optimizer steps; the weights are visited at steps ``0 … steps`` (0: initialisation).
    lr, weight_decay, betas
        AdamW's (decoupled weight decay: each step multiplies the weights by ``1 − lr·wd``).
    eval_every : int
        Record the losses and accuracies every ``eval_every`` steps (and at the last).
    callback : callable, optional
        ``callback(model, step, train_loss)`` at every step ``0 … steps``, with the weights
        after ``step`` updates and their full training loss, before the next update (an
        :meth:`llc.LLCTracker.step` fits).
    log : callable, optional
        Called with a progress line every ``log_every`` steps (e.g. ``print``).

    Returns
    -------
    TrainingHistory
    """
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=betas)
    rows = []
    for step in range(steps + 1):
        logits = model(train[0])
        loss = F.cross_entropy(logits, train[1])
        if callback is not None:
            callback(model, step, loss.item())
        if step % eval_every == 0 or step == steps:
            train_acc = (logits.argmax(-1) == train[1]).double().mean().item()
            test_loss, test_acc = _evaluate(model, test)
            rows.append((step, loss.item(), test_loss, train_acc, test_acc))
            if log is not None and (step % log_every == 0 or step == steps):
                log(
                    f"step {step:>6}  train loss {loss.item():.3g} acc {train_acc:6.1%}  "
                    f"test loss {test_loss:.3g} acc {test_acc:6.1%}"
                )
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    cols = list(zip(*rows, strict=True))
    return TrainingHistory(
        steps=np.array(cols[0], dtype=np.int64),
        train_loss=np.array(cols[1]),
        test_loss=np.array(cols[2]),
        train_acc=np.array(cols[3]),
        test_acc=np.array(cols[4]),
    )


TRACK = {
    "num_chains": 4,
    "batch_size": 256,
    "sampler": "rmsprop_sgld",
    "num_burnin": 1000,
    "num_draws": 1000,
    "progress": False,
}
"""The tracker's settings in :func:`grokking`: fixed short chains, about 13 s an estimate on one
loaded CPU core at d ≈ 16,000. RMSprop-SGLD's per-coordinate step reaches the flat directions of
a memorising network in a few hundred steps, where plain SGLD at the stiffest direction's step
does not (it gave λ̂ near 3 after grokking with 300 + 300 steps); the fixed warm-up and draws
skip the adaptive warm-up, which on this network ran to its cap (5,000 steps, 1.5 min an
estimate) without passing its tests."""

SMALL = {
    "p": 23,
    "d_model": 16,
    "d_mlp": 64,
    "steps": 600,
    "lr": 3e-3,
    "every": [0, 100, 200, 300, 450, 600],
    "num_chains": 2,
    "num_burnin": 100,
    "num_draws": 100,
}
"""A seconds-long :func:`grokking` run (memorisation only; it does not grok in 600 steps)."""


def _schedule(steps: int, num: int) -> list[int]:
    """Step 0 and ``num − 1`` log-spaced steps from ``steps/250`` to ``steps`` (duplicates
    dropped): the memorisation phase, which starts after a few dozen steps, and grokking."""
    lo = max(1, steps // 250)
    grid = np.round(np.geomspace(lo, steps, num - 1)).astype(int).tolist()
    return sorted({0, *grid})


@dataclass(frozen=True)
class GrokkingRun:
    """A tracked training run of :func:`grokking`.

    Attributes
    ----------
    config : dict
        The arguments of the run.
    history : TrainingHistory
        Losses and accuracies every ``eval_every`` steps.
    trajectory : LLCTrajectory
        The LLC estimates (on the training set), plotted on a log step axis.
    train_seconds, track_seconds : float
        Wall time of training alone and of the LLC estimates.
    model : nn.Module
        The network at the end of training.
    """

    config: dict
    history: TrainingHistory
    trajectory: LLCTrajectory
    train_seconds: float
    track_seconds: float
    model: nn.Module = field(repr=False)

    def llc_at(self, step: int) -> float:
        """λ̂ of the tracked step nearest to ``step``."""
        steps = self.trajectory.steps
        return float(self.trajectory.llc[np.argmin(np.abs(steps - step))])

    def key_points(self) -> dict:
        """Steps of memorisation and grokking, and λ̂ at initialisation, at its peak, at those
        two steps and at the end (each the nearest tracked step)."""
        h, t = self.history, self.trajectory
        peak = int(np.nanargmax(t.llc))
        out = {
            "memorised_step": h.memorised,
            "grokked_step": h.grokked,
            "llc_init": float(t.llc[0]),
            "llc_peak": float(t.llc[peak]),
            "peak_step": int(t.steps[peak]),
            "llc_final": float(t.llc[-1]),
        }
        for name in ("memorised", "grokked"):
            step = getattr(h, name)
            out[f"llc_{name}"] = math.nan if step is None else self.llc_at(step)
        return out

    def summary(self) -> str:
        """The tracker's table, then the key points."""
        k = self.key_points()
        lines = [self.trajectory.summary(), ""]
        lines.append(
            f"memorised (train acc 100 % from) step {k['memorised_step']}, "
            f"grokked (test acc >= 99 % from) step {k['grokked_step']}"
        )
        lines.append(
            f"λ̂: init {k['llc_init']:.3g}, at memorisation {k['llc_memorised']:.3g}, "
            f"peak {k['llc_peak']:.3g} (step {k['peak_step']}), at grokking "
            f"{k['llc_grokked']:.3g}, final {k['llc_final']:.3g}"
        )
        lines.append(
            f"time: training {self.train_seconds:.0f} s, {len(self.trajectory.records)} "
            f"estimates {self.track_seconds:.0f} s"
        )
        return "\n".join(lines)

    def plot(self, path=None):
        """λ̂ (with the training loss) above, train and test accuracy and loss below, on one
        log step axis; saved to ``path`` when given. Returns the figure."""
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
        self.trajectory.plot(ax1)
        ax1.set_xlabel("")
        ax1.xaxis.set_minor_formatter(plt.NullFormatter())
        h = self.history
        verb = "groks" if h.grokked is not None else "learns"
        ax1.set_title(
            f"LLC while a one-layer transformer {verb} a + b mod {self.config['p']} "
            f"({self.config['n_train']} training pairs)"
        )
        x = np.maximum(h.steps, 1)
        ax2.plot(x, 100 * h.train_acc, color="C2", label="train accuracy")
        ax2.plot(x, 100 * h.test_acc, color="C3", label="test accuracy")
        ax2.set_ylabel("accuracy (%)")
        ax2.set_xlabel("training step")
        ax3 = ax2.twinx()
        ax3.plot(x, h.train_loss, color="C2", ls=":", lw=1, label="train loss")
        ax3.plot(x, h.test_loss, color="C3", ls=":", lw=1, label="test loss")
        ax3.set_yscale("log")
        ax3.set_ylabel("cross-entropy (dotted)")
        marks = {s: name for s, name in ((h.memorised, "memorised"), (h.grokked, "grokked")) if s}
        for step in marks:
            for ax in (ax1, ax2):
                ax.axvline(step, color="gray", ls="--", lw=0.8)
        if marks:  # named on a top axis, clear of the curves
            top = ax1.secondary_xaxis("top")
            top.set_xticks(list(marks), labels=[f"{n} ({s})" for s, n in marks.items()])
            top.set_xticks([], minor=True)
            top.tick_params(labelsize=8, colors="gray")
        lines = ax2.get_legend_handles_labels()
        more = ax3.get_legend_handles_labels()
        ax2.legend(lines[0] + more[0], lines[1] + more[1], loc="center left", fontsize=8)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


def grokking(
    p: int = 47,
    *,
    train_fraction: float = 0.4,
    d_model: int = 32,
    n_heads: int = 4,
    d_mlp: int = 128,
    steps: int = 5000,
    lr: float = 1e-3,
    weight_decay: float = 2.0,
    every=None,
    num_estimates: int = 26,
    seed: int = 0,
    eval_every: int = 10,
    log: Callable[[str], None] | None = None,
    log_every: int = 500,
    **estimate_kwargs,
) -> GrokkingRun:
    """Train :class:`ModularAdditionTransformer` on :func:`modular_addition` and track its LLC.

    Parameters
    ----------
    p, train_fraction
        The task (:func:`modular_addition`, split seeded with ``seed``).
    d_model, n_heads, d_mlp
        The network (:class:`ModularAdditionTransformer`, initialised with ``seed``).
    steps, lr, weight_decay, eval_every
        Training (:func:`train_modular_addition`).
    every : int, sequence of int or LogSchedule, optional
        When to estimate (:class:`llc.LLCTracker`). Default: step 0 and ``num_estimates − 1``
        log-spaced steps from ``steps / 250`` to ``steps``.
    log : callable, optional
        Progress lines (training every ``log_every`` steps, and each estimate).
    **estimate_kwargs
        For the tracker (:func:`llc.estimate_llc`'s arguments). Defaults (:data:`TRACK`):
        RMSprop-SGLD with 1,000 warm-up steps and 1,000 draws on 4 chains of minibatches of 256,
        ``seed=seed``, no progress bars; nβ and γ are the tracker's (``n / log n``, 0.3).

    Returns
    -------
    GrokkingRun

    Notes
    -----
    With the defaults the network memorises its 884 training pairs within about 500 steps and
    generalises (test accuracy 99 %) about 2,000 steps later, weight decay shrinking the
    memorising solution; the estimates use the training set, the model's cross-entropy and the
    tracker's fixed ``nβ = n / log n`` and ``γ = 0.3``.
    """
    train, test = modular_addition(p, train_fraction, seed=seed)
    model = ModularAdditionTransformer(p, d_model, n_heads, d_mlp, seed=seed)
    if every is None:
        every = _schedule(steps, num_estimates)
    estimate_kwargs = {**TRACK, "seed": seed, **estimate_kwargs}
    if estimate_kwargs.get("batch_size"):
        estimate_kwargs["batch_size"] = min(estimate_kwargs["batch_size"], len(train[1]))
    tracker = LLCTracker(train, every, loss="cross_entropy", **estimate_kwargs)

    def callback(model, step, loss):
        record = tracker.step(model, step, train_loss=loss)
        if record is not None and log is not None:
            log(
                f"step {step:>6}  λ̂ {record.llc:8.3g} ± {record.mcse:.2g}  "
                f"({record.seconds:.1f} s, {len(record.warnings)} warnings)"
            )

    t0 = time.perf_counter()
    history = train_modular_addition(
        model, train, test, steps=steps, lr=lr, weight_decay=weight_decay,
        eval_every=eval_every, callback=callback, log=log, log_every=log_every,
    )  # fmt: skip
    total = time.perf_counter() - t0
    track = sum(r.seconds for r in tracker.records)
    config = {
        "p": p, "train_fraction": train_fraction, "n_train": len(train[1]),
        "n_test": len(test[1]), "d_model": d_model, "n_heads": n_heads, "d_mlp": d_mlp,
        "params": sum(w.numel() for w in model.parameters()), "steps": steps, "lr": lr,
        "weight_decay": weight_decay, "seed": seed, **estimate_kwargs,
    }  # fmt: skip
    trajectory = LLCTrajectory(tracker.records, log_steps=True)
    return GrokkingRun(config, history, trajectory, total - track, track, model)
