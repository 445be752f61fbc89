"""LLC estimates along training: one record per estimate, a table and a figure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .result import LLCResult

__all__ = ["LLCTrajectory", "TrackRecord"]


@dataclass(frozen=True)
class TrackRecord:
    """One LLC estimate at one training step.

    Attributes
    ----------
    step : int
        The training step (or checkpoint key) of the weights w*.
    llc, std, mcse, r_hat, ess : float
        λ̂, its spread over chains, Monte Carlo standard error, R-hat and bulk ESS.
    train_loss : float or None
        The training loss the caller passed for this step.
    settings : dict
        nβ, γ, step size, batch size, warm-up steps and draws used, and how the estimate
        started: ``warm_start`` (with the previous estimate's metric, noise scale and draw
        plan), ``carried`` (the chains continued from where the previous ones ended, since they
        fitted the new posterior; False: they started at w*) and ``reused`` (warm-up's tests
        passed after its minimum, so what was reused still fitted; False: it went on adapting).
    warnings : tuple of str
        The estimate's warnings (:attr:`llc.LLCResult.warnings`).
    seconds : float
        Wall time of the estimate.
    result : LLCResult or None
        The full estimate (None when the tracker keeps records only).
    """

    step: int
    llc: float
    std: float
    mcse: float
    r_hat: float
    ess: float
    train_loss: float | None
    settings: dict
    warnings: tuple[str, ...] = ()
    seconds: float = math.nan
    result: LLCResult | None = field(default=None, repr=False)

    @classmethod
    def from_result(cls, step: int, result: LLCResult, train_loss, settings, seconds, keep):
        return cls(
            step=int(step), llc=result.mean, std=result.std, mcse=result.mcse,
            r_hat=result.r_hat, ess=result.ess,
            train_loss=None if train_loss is None else float(train_loss),
            settings={
                "nbeta": result.nbeta, "localization": result.localization,
                "step_size": result.step_size, "batch_size": result.batch_size,
                "num_chains": result.num_chains, "num_burnin": result.num_burnin,
                "num_draws": result.num_draws, "sampler": result.sampler, **settings,
            },
            warnings=tuple(getattr(result, "warnings", ())), seconds=float(seconds),
            result=result if keep else None,
        )  # fmt: skip


COLUMNS = ("step", "llc", "std", "mcse", "r_hat", "ess", "train_loss", "seconds")


@dataclass(frozen=True)
class LLCTrajectory:
    """The records of an LLC tracking run, in step order.

    Attributes
    ----------
    records : tuple of TrackRecord
    log_steps : bool
        The schedule was log-spaced (the plot then uses a log step axis).
    """

    records: tuple[TrackRecord, ...] = ()
    log_steps: bool = False

    @property
    def steps(self) -> np.ndarray:
        """Shape (estimate,)."""
        return np.array([r.step for r in self.records], dtype=np.int64)

    @property
    def llc(self) -> np.ndarray:
        """λ̂ per estimate, shape (estimate,)."""
        return np.array([r.llc for r in self.records])

    @property
    def mcse(self) -> np.ndarray:
        return np.array([r.mcse for r in self.records])

    def rows(self) -> list[dict]:
        """One dict per record: the columns of :meth:`to_pandas`."""
        out = []
        for r in self.records:
            row = {c: getattr(r, c) for c in COLUMNS}
            row.update({k: v for k, v in r.settings.items()})
            row["warnings"] = len(r.warnings)
            out.append(row)
        return out

    def to_pandas(self):
        """A :class:`pandas.DataFrame`, one row per estimate (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is a dependency of xarray
            raise ImportError("to_pandas needs pandas: pip install pandas") from exc
        return pd.DataFrame(self.rows())

    def summary(self) -> str:
        """A text table: step, λ̂ ± MCSE, R-hat, training loss, how the chains started (cold,
        warm or carried on), seconds, warnings."""
        lines = [f"{'step':>8} {'λ̂':>9} {'± MCSE':>8} {'R-hat':>6} {'train loss':>11} "
                 f"{'start':>7} {'s':>6}  warnings"]  # fmt: skip
        for r in self.records:
            loss = "" if r.train_loss is None else f"{r.train_loss:.4g}"
            lines.append(
                f"{r.step:>8} {r.llc:>9.4g} {r.mcse:>8.2g} {r.r_hat:>6.3f} {loss:>11} "
                f"{_start(r.settings):>7} {r.seconds:>6.1f}  {len(r.warnings)}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def plot(self, ax=None, *, exact: Sequence[float] | dict | None = None):
        """λ̂ against step with ±2 MCSE error bars, and the training loss on a second axis.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        exact : sequence of float or dict {label: value}, optional
            Reference values drawn as horizontal lines (e.g. Aoyagi's λ for each rank).

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4)) if ax is None else (ax.figure, ax)
        steps = self.steps
        if self.log_steps:
            steps = np.maximum(steps, 1)  # step 0 on a log axis
            ax.set_xscale("log")
        ax.errorbar(steps, self.llc, yerr=2 * self.mcse, fmt="o-", ms=3, capsize=2,
                    color="C0", label="λ̂ ± 2 MCSE")  # fmt: skip
        if exact is not None:
            items = exact.items() if isinstance(exact, dict) else ((None, v) for v in exact)
            for label, value in items:
                ax.axhline(value, color="k", ls=":", lw=0.8, label=label if label else None)
        ax.set_xlabel("training step")
        ax.set_ylabel("λ̂", color="C0")
        losses = [r.train_loss for r in self.records]
        if any(v is not None for v in losses):
            ax2 = ax.twinx()
            y = np.array([np.nan if v is None else v for v in losses], dtype=float)
            ax2.plot(steps, y, color="C1", lw=1, label="training loss")
            ax2.set_ylabel("training loss", color="C1")
            if np.all(y[np.isfinite(y)] > 0):
                ax2.set_yscale("log")
        ax.legend(loc="upper left", fontsize=8)
        ax.set_title("LLC during training")
        fig.tight_layout()
        return fig


def _start(settings: dict) -> str:
    if settings.get("carried"):
        return "carried"
    return "warm" if settings.get("warm_start") else "cold"
