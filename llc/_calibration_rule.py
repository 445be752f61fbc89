"""The rule that recommends one cell of a calibration grid (:func:`llc.calibrate`).

Each (nβ, γ) slice of the grid is scanned from the smallest step up. The *edge* of stable steps
is the first step where a chain diverges, the MALA acceptance drops below ``MIN_MALA``, the
draws' standard deviation grows more than ``MAX_SPREAD``-fold over the next smaller step's (rare
excursions to high loss), or λ̂ leaves the plateau (changes by more than ``PLATEAU`` of λ̂ from
the last converged smaller step's); it and every larger step are unusable. Below the edge a cell
is *converged* when R-hat ≤ ``MAX_RHAT`` (chains started at w* only: from warm-up they keep the
spread it gave them whatever the step) and the trend statistic ``|drift|`` ≤ ``MAX_DRIFT``; a
converged cell is *usable* ("ok") when a smaller converged step agrees with it (a plateau of two
or more steps). The slice's choice is its largest usable step. The default nβ and γ are
preferred; another slice is chosen only when theirs has no usable cell.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "MAX_DRIFT",
    "MAX_RHAT",
    "MAX_SPREAD",
    "MIN_MALA",
    "PLATEAU",
    "RULE",
    "STATUSES",
    "classify",
    "choose",
    "preferred_slice",
]

PLATEAU = 0.07  # largest change of λ̂ between neighbouring steps (√2 apart); measured −2 … +3 %
# largest growth of the draws' sd over the next smaller step: below the edge it changed by a
# factor 0.94-1.05, at the first step past it by 2.5-12.5 (rare excursions to high loss)
MAX_SPREAD = 2.0
MIN_MALA = 0.5  # below: even a Metropolis-adjusted sampler would take smaller steps (optimum 0.574)
MAX_RHAT = 1.05
MAX_DRIFT = 3.0
SLICE_METRICS = ("llc", "sd", "mala", "r_hat", "drift", "divergences")  # classify's arguments
STATUSES = (
    "ok",
    "no plateau",
    "not converged",
    "diverged",
    "low acceptance",
    "excursions",
    "off plateau",
    "beyond edge",
)

RULE = (
    "Per (nβ, γ), scan the steps upwards. The edge of stable steps is the first step where a chain "
    f"diverges, the MALA acceptance is below {MIN_MALA}, the standard deviation of the draws "
    f"grows more than {MAX_SPREAD:g}-fold over the next smaller step's (excursions), or λ̂ "
    f"changes by more than {PLATEAU:.0%} from the last converged smaller step's (leaves the "
    "plateau); it and all larger steps are unusable. Below the edge, a cell is converged when "
    f"R-hat ≤ {MAX_RHAT} (chains started at w* only) and |drift| ≤ {MAX_DRIFT:g}, and usable "
    "when a smaller converged step "
    "agrees with it (a plateau). Recommend the largest usable step at the default nβ = n/log n "
    "and γ (or the grid's values nearest to them); another (nβ, γ) only when that slice has no "
    "usable cell."
)


def classify(llc, sd, mala, r_hat, drift, divergences, use_rhat: bool = True) -> np.ndarray:
    """The status of each step of one slice (arrays of shape (step,)); see the module notes.
    ``use_rhat=False`` (chains started where warm-up left them): converged on the trend alone.

    The spread is compared with the next smaller step's; λ̂ with the last converged smaller
    step's (the λ̂ of a step that has not converged still moves with the step size). The first
    converged step is the plateau's reference ("no plateau"); later ones that agree are "ok".
    """
    status = np.full(len(llc), "beyond edge", dtype=object)
    last = None  # the last converged step
    for k in range(len(llc)):
        if divergences[k] > 0 or not math.isfinite(llc[k]):
            status[k] = "diverged"
        elif mala[k] < MIN_MALA:  # NaN (kernels without MALA) passes
            status[k] = "low acceptance"
        elif k and sd[k] > MAX_SPREAD * sd[k - 1]:
            status[k] = "excursions"
        elif last is not None and abs(llc[k] - llc[last]) > PLATEAU * abs(llc[last]):
            status[k] = "off plateau"
        elif not ((r_hat[k] <= MAX_RHAT or not use_rhat) and abs(drift[k]) <= MAX_DRIFT):
            status[k] = "not converged"
            continue
        else:
            status[k] = "ok" if last is not None else "no plateau"
            last = k
            continue
        break
    return status


def _preference(values: tuple[float, ...], default: float) -> list[int]:
    """Indices of ``values`` ordered by distance from ``default`` (in log, ties: smaller first)."""

    def dist(v: float) -> float:
        if v == default:
            return 0.0
        if v <= 0 or default <= 0:
            return math.inf
        return abs(math.log(v / default))

    return sorted(range(len(values)), key=lambda i: (dist(values[i]), values[i]))


def preferred_slice(nbetas, locs, default_nbeta: float, default_gamma: float) -> tuple[int, int]:
    """``(i, j)``: the grid's nβ and γ nearest (in log) to the defaults."""
    return _preference(nbetas, default_nbeta)[0], _preference(locs, default_gamma)[0]


def choose(
    arrays: dict, steps, locs, nbetas, default_nbeta: float, default_gamma: float,
    use_rhat: bool = True,
):  # fmt: skip
    """``(index, status, reason, default)``: the recommended cell (or None), the status of every
    cell (shape (nβ, γ, step)), the reason in words and the preferred slice ``(i, j)``."""
    shape = (len(nbetas), len(locs), len(steps))
    status = np.empty(shape, dtype=object)
    for i in range(shape[0]):
        for j in range(shape[1]):
            metrics = (arrays[m][i, j] for m in SLICE_METRICS)
            status[i, j] = classify(*metrics, use_rhat=use_rhat)
    order = [(i, j) for i in _preference(nbetas, default_nbeta)
             for j in _preference(locs, default_gamma)]  # fmt: skip
    for rank, (i, j) in enumerate(order):
        ok = np.flatnonzero(status[i, j] == "ok")
        if ok.size:
            k = int(ok[-1])
            reason = _reason(status[i, j], k, steps, rank, nbetas[i], locs[j])
            return (i, j, k), status, reason, order[0]
    i, j = order[0]
    reason = (
        f"no usable cell (default slice nβ = {nbetas[i]:.4g}, γ = {locs[j]:.3g}: "
        f"{_counts(status[i, j])}). Below the edge the chains have not converged to a plateau: "
        "rerun the steps just below the edge with more num_burnin and num_draws (e.g. 4×)"
        if (status[i, j] != "beyond edge").sum() > 1
        else f"no usable cell (default slice nβ = {nbetas[i]:.4g}, γ = {locs[j]:.3g}: "
        f"{_counts(status[i, j])}); try smaller steps"
    )
    return None, status, reason, order[0]


def _counts(status: np.ndarray) -> str:
    return ", ".join(f"{int((status == s).sum())} {s}" for s in STATUSES if (status == s).any())


def _reason(status: np.ndarray, k: int, steps, rank: int, nbeta: float, gamma: float) -> str:
    edge = next((s for s in status[k + 1 :] if s != "not converged"), None)
    top = {None: "the largest step of the grid (the edge was not reached: larger steps may be "
           "usable too)", "diverged": "the step below the first divergence",
           "low acceptance": f"the step below MALA acceptance < {MIN_MALA}",
           "excursions": "the step below excursions (the draws' spread jumps)",
           "off plateau": "the step below where λ̂ leaves the plateau"}[edge]  # fmt: skip
    if status[k + 1 :].size and status[k + 1] == "not converged":
        top = "the largest converged step below the edge"
    where = f"nβ = {nbeta:.4g}, γ = {gamma:.3g}"
    if rank:
        where += " (the default nβ and γ slice has no usable cell)"
    plateau = int((status[:k] == "ok").sum()) + 1  # the "no plateau" reference step too
    return f"step {steps[k]:.3g} at {where}: {top}, on a plateau of {plateau + 1} steps"
