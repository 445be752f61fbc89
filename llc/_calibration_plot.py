"""The figure of a calibration grid: λ̂ heatmaps and the traces around the recommended cell."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_calibration"]


def _color_range(cal) -> tuple[float, float]:
    """The colour scale: λ̂ of the cells below the edge (the edge's λ̂ would swamp it)."""
    below = np.isin(cal.status, ("ok", "no plateau", "not converged"))
    vals = cal.llc[below & np.isfinite(cal.llc)]
    if vals.size == 0:
        vals = cal.llc[np.isfinite(cal.llc)]
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = float(vals.min()), float(vals.max())
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def _heatmap(ax, cal, i: int, vmin: float, vmax: float):
    from matplotlib.patches import Rectangle

    img = ax.imshow(cal.llc[i], origin="lower", aspect="auto", cmap="viridis", vmin=vmin,
                    vmax=vmax)  # fmt: skip
    for j in range(len(cal.localizations)):
        for k in range(len(cal.step_sizes)):
            value = cal.llc[i, j, k]
            ax.text(k, j, f"{value:.3g}" if np.isfinite(value) else "–", ha="center",
                    va="center", fontsize=6, color="w")  # fmt: skip
            if cal.status[i, j, k] != "ok":
                ax.add_patch(Rectangle((k - 0.5, j - 0.5), 1, 1, fill=False, hatch="///",
                                       edgecolor="0.85", lw=0))  # fmt: skip
    rec = cal.recommended.index
    if rec is not None and rec[0] == i:
        ax.add_patch(Rectangle((rec[2] - 0.5, rec[1] - 0.5), 1, 1, fill=False, edgecolor="red",
                               lw=2.5))  # fmt: skip
    ax.set_xticks(range(len(cal.step_sizes)), [f"{s:.2g}" for s in cal.step_sizes],
                  rotation=60, fontsize=7)  # fmt: skip
    ax.set_yticks(range(len(cal.localizations)), [f"{g:.3g}" for g in cal.localizations])
    ax.set(xlabel="step size ε", ylabel="localization γ", title=f"λ̂ at nβ = {cal.nbetas[i]:.4g}")
    return img


def _trace_cells(cal, panels: int) -> list[tuple[int, int, int]]:
    """The recommended cell (else the default slice's largest step below the edge) and its
    neighbouring steps."""
    if cal.recommended.index is not None:
        i, j, k = cal.recommended.index
    else:
        i, j = cal.settings.get("default_slice", (0, 0))
        below = np.flatnonzero(np.isin(cal.status[i, j], ("ok", "no plateau", "not converged")))
        k = int(below[-1]) if below.size else 0
    num = len(cal.step_sizes)
    lo = max(0, min(k - (panels - 1) // 2, num - panels))
    return [(i, j, kk) for kk in range(lo, min(num, lo + panels))]


def _trace(ax, cal, cell) -> None:
    burn, draws = cal.burnin_traces[cell], cal.traces[cell]
    full = np.concatenate([burn, draws], axis=1)
    for c, row in enumerate(full):
        ax.plot(row, lw=0.5, alpha=0.7, label=f"chain {c}" if c < 8 else None)
    ax.axvline(burn.shape[1], color="k", ls=":", lw=1)
    ax.axhline(cal.llc[cell], color="k", lw=1.2)
    i, j, k = cell
    star = " (recommended)" if cell == cal.recommended.index else ""
    ax.set_title(f"ε = {cal.step_sizes[k]:.3g}{star}: λ̂ = {cal.llc[cell]:.3g}, "
                 f"{cal.status[cell]}", fontsize=8)  # fmt: skip
    ax.set_xlabel("step (burn-in, then draws)", fontsize=7)
    ax.set_ylabel("nβ (L_B(w) − L_B(w*))", fontsize=7)
    ax.tick_params(labelsize=7)


def plot_calibration(cal, traces: int = 3):
    """Heatmaps of λ̂ (one per nβ) over the trace panels; returns the Figure."""
    import matplotlib.pyplot as plt

    if isinstance(traces, bool) or not isinstance(traces, int) or traces < 0:
        raise ValueError(f"traces must be a non-negative integer, got {traces!r}")
    traces = min(traces, len(cal.step_sizes))
    width = 3.6 * max(len(cal.nbetas), traces, 2)
    height = 1.8 + 0.4 * len(cal.localizations)
    fig = plt.figure(figsize=(width, height + (3.0 if traces else 0)), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[height, 3.0]) if traces else (fig, None)
    vmin, vmax = _color_range(cal)
    axes = top.subplots(1, len(cal.nbetas), squeeze=False)[0]
    for i, ax in enumerate(axes):
        img = _heatmap(ax, cal, i, vmin, vmax)
    top.colorbar(img, ax=list(axes), label="λ̂ (hatched: unusable)")
    if bottom is not None:
        for ax, cell in zip(
            bottom.subplots(1, traces, squeeze=False)[0], _trace_cells(cal, traces)
        ):
            _trace(ax, cal, cell)
    fig.suptitle(f"Calibration: {cal.recommended.reason}", fontsize=8, wrap=True)
    return fig
