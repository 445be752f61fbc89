"""Text table and histogram plot of a :class:`priors.fit.FitReport` (private helper).

The report is read through its attributes only: :mod:`priors.fit` imports this module
(``FitReport.summary`` and ``.plot``), so it does not import the class back.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _fmt(v: float, width: int = 10, digits: int = 1) -> str:
    if not math.isfinite(v):
        return f"{'-':>{width}}"
    return f"{v:>{width}.{digits}f}"


def _params(params: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in params.items())


def summary(report: Any) -> str:
    """Ranked table: family, k, logL, AIC, ΔAIC, BIC, ΔBIC, GOF statistic and p, params."""
    r = report
    lines = [
        f"priors.fit: n = {r.n}"
        + (f" (subsample of {r.n_total})" if r.n != r.n_total else "")
        + f", exact zeros = {r.n_zero}"
        + (f", hurdle: P(a != 0) = {r.pi:.4g} (slab fitted to non-zeros, loc = 0)"
           if r.zero_inflated else ", no hurdle"),
        f"ranked by {r.rank_by.upper()}; goodness of fit: "
        + (f"{r.gof_statistic.upper()} parametric bootstrap, {r.n_mc_samples} samples, "
           f"n = {r.gof_n}, top {r.gof_top}" if r.gof_top else "skipped"),
    ]
    d_aic, d_bic = report.delta("aic"), report.delta("bic")
    head = (f"{'#':>2} {'family':<12}{'k':>2}{'logL':>13}{'AIC':>13}{'dAIC':>9}"
            f"{'BIC':>13}{'dBIC':>9}{'GOF':>9}{'p':>7}  params")
    lines += [head, "-" * len(head)]
    for i, f in enumerate(r.fits, 1):
        if not f.ok:
            lines.append(f"{i:>2} {f.family:<12}{f.n_params:>2}  fit failed: {f.error}")
            continue
        gof_p = f"{f.gof_pvalue:>7.3f}" if math.isfinite(f.gof_pvalue) else f"{'-':>7}"
        lines.append(
            f"{i:>2} {f.family:<12}{f.n_params:>2}{_fmt(f.loglik, 13)}{_fmt(f.aic, 13)}"
            f"{_fmt(d_aic[f.family], 9)}{_fmt(f.bic, 13)}{_fmt(d_bic[f.family], 9)}"
            f"{_fmt(f.gof_statistic, 9, 3)}{gof_p}  {_params(f.params)}"
        )
    return "\n".join(lines)


def plot(report: Any, top: int = 4, ax: Any = None) -> Figure:
    """Density histogram (log y) of the (non-zero) samples with fitted densities overlaid.

    For a hurdle the histogram and the curves are those of the continuous part, π·f, so
    they integrate to P(a ≠ 0); the spike's mass 1 − π is given in the title.
    """
    import matplotlib.pyplot as plt

    if not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a positive int; got {top!r}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
    else:
        fig = ax.figure
    x = report.samples
    y = x[x != 0] if report.zero_inflated else x
    # Heavy tails would squash the histogram; show the central 99.8 % of the values.
    lo, hi = np.quantile(y, [0.001, 0.999])
    if np.all(y >= 0):
        lo = 0.0
    weights = np.full(y.size, report.pi)
    ax.hist(y, bins=80, range=(lo, hi), density=True, weights=weights, color="0.8",
            label="samples" + (" (non-zero)" if report.zero_inflated else ""))
    grid = np.linspace(lo, hi, 600)
    if lo == 0.0:
        grid = grid[1:]
    for f in [f for f in report.fits if f.ok][:top]:
        dens = f.pi * f.dist.pdf(grid)
        ax.plot(grid, dens, lw=1.5,
                label=f"{f.family} ({report.rank_by.upper()} {getattr(f, report.rank_by):.0f})")
    ax.set_yscale("log")
    ax.set_xlabel("activation")
    ax.set_ylabel("density" + (" of the slab part, π·f" if report.zero_inflated else ""))
    title = f"priors.fit, n = {report.n}"
    if report.zero_inflated:
        title += f"; spike at 0 with mass {1 - report.pi:.3g}"
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig
