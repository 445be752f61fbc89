"""Calibrating the sampler: a grid of step sizes, localizations and nβ sampled in one batch.

>>> cal = llc.calibrate(model, (x, y))                    # doctest: +SKIP
>>> print(cal)                                           # doctest: +SKIP
>>> cal.recommended.step_size, cal.plot()                # doctest: +SKIP

Every cell of the grid runs ``num_chains`` chains of the same kernel at a fixed step (no
adaptation, as :func:`llc.estimate_llc` with ``step_size`` and ``num_burnin`` given), from where
the estimator's adaptive warm-up leaves its chains (or from w*), and reports λ̂, its Monte Carlo
error and the diagnostics that say whether the setting can be trusted. A rule
(:func:`calibrate`, Notes) recommends one cell.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ._calibration_grid import BATCHED_SAMPLERS, METRICS, GridSampler, kernel_params
from ._calibration_rule import RULE, choose, preferred_slice
from ._calibration_start import STARTS, start_seed, warmed_up
from ._curvature import top_curvature
from ._data import LossFn
from ._precision import describe_precision
from ._randomness import chain_seeds
from .kernels import get_kernel
from .potential import Potential
from .sampling import Chains
from .settings import DEFAULT_BATCH, DEFAULT_LOCALIZATION, LLCSettings
from .warmup import initial_step_size

__all__ = ["CalibrationResult", "calibrate"]

STEP_MULTIPLES = tuple(2.0 ** (k / 2) for k in range(-6, 5))  # from w*: ε₀/8 … 4ε₀
WARM_MULTIPLES = tuple(2.0 ** (k / 2) for k in range(-4, 9))  # from warm-up: ε₀/4 … 16ε₀
DEFAULT_BURNIN, DEFAULT_DRAWS = 4000, 4000


@dataclass(frozen=True)
class Recommendation:
    """The recommended cell of a calibration grid.

    Attributes
    ----------
    step_size, localization, nbeta : float
        Its settings (NaN when no cell passed the rule's checks).
    llc, mcse : float
        Its λ̂ and Monte Carlo standard error.
    index : tuple of int, or None
        ``(i, j, k)`` into the ``(nβ, γ, step)`` arrays (None: no cell passed).
    reason : str
        Why this cell, in words.
    """

    step_size: float
    localization: float
    nbeta: float
    llc: float
    mcse: float
    index: tuple[int, int, int] | None
    reason: str

    @property
    def found(self) -> bool:
        return self.index is not None

    def estimate_kwargs(self) -> dict:
        """``step_size``, ``localization`` and ``nbeta`` for :func:`llc.estimate_llc`. With
        ``num_burnin`` given it then samples exactly as this cell did when the grid started at
        w* (``start="center"``); a cell started from warm-up began nearer the posterior's
        typical set, so on deep networks a call from w* needs a longer burn-in to match it."""
        if not self.found:
            raise ValueError(f"no cell was recommended: {self.reason}")
        return {"step_size": self.step_size, "localization": self.localization,
                "nbeta": self.nbeta}  # fmt: skip


@dataclass(frozen=True)
class CalibrationResult:
    """A calibration grid: per-cell λ̂ and diagnostics, and the recommended cell.

    Per-cell arrays have shape ``(len(nbetas), len(localizations), len(step_sizes))``.

    Attributes
    ----------
    step_sizes, localizations, nbetas : tuple of float
        The grid axes, each increasing.
    llc, mcse : ndarray
        λ̂ (mean over the chains that did not diverge) and its Monte Carlo standard error.
    sd : ndarray
        Standard deviation of the draws (pooled over those chains).
    mala : ndarray
        Mean MALA acceptance probability (NaN for kernels without one).
    r_hat, ess : ndarray
        Rank-normalised split-R̂ and bulk ESS of the cell's draws.
    divergences : ndarray of int
        Chains of the cell that diverged.
    drift : ndarray
        Trend statistic of the draws in standard errors (:func:`llc.diagnostics.drift`).
    status : ndarray of str
        The rule's verdict per cell: ``"ok"`` (usable), ``"no plateau"``, ``"not converged"``,
        ``"diverged"``, ``"low acceptance"``, ``"excursions"``, ``"off plateau"`` or
        ``"beyond edge"``.
    traces : dict
        ``(i, j, k) -> ndarray (chain, draw)``: ``nβ (L_B(w) − L_B(w*))`` over the draws.
    burnin_traces : dict
        The same over the burn-in steps.
    recommended : Recommendation
    rule : str
        The rule that chose it, in words.
    settings : dict
        ``n``, ``d``, ``num_chains``, ``num_burnin``, ``num_draws``, ``batch_size``,
        ``sampler``, ``seed``, ``loss``, ``batched`` (how the grid was sampled) and
        ``step_base`` (ε₀ of the default step grid, None when ``step_sizes`` was given),
        ``default_slice`` (``(i, j)`` of the preferred nβ and γ), ``start`` and
        ``matmul_precision``.
    """

    step_sizes: tuple[float, ...]
    localizations: tuple[float, ...]
    nbetas: tuple[float, ...]
    llc: np.ndarray
    mcse: np.ndarray
    sd: np.ndarray
    mala: np.ndarray
    r_hat: np.ndarray
    ess: np.ndarray
    divergences: np.ndarray
    drift: np.ndarray
    status: np.ndarray
    traces: dict
    burnin_traces: dict
    recommended: Recommendation
    rule: str
    settings: dict

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.nbetas), len(self.localizations), len(self.step_sizes)

    @property
    def usable(self) -> np.ndarray:
        """Cells that passed the rule's checks, bool of the grid's shape."""
        return self.status == "ok"

    def cells(self):
        """``(i, j, k)`` of every cell, nβ slowest and step fastest."""
        return itertools.product(*map(range, self.shape))

    def to_pandas(self):
        """One row per cell: settings, λ̂, MCSE, diagnostics, status, recommended."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is installed in development
            raise ImportError(
                "CalibrationResult.to_pandas needs pandas: pip install pandas"
            ) from exc
        rows = []
        for c in self.cells():
            i, j, k = c
            row = {"nbeta": self.nbetas[i], "localization": self.localizations[j],
                   "step_size": self.step_sizes[k]}  # fmt: skip
            row.update({m: getattr(self, m)[c].item() for m in METRICS})
            row.update(status=self.status[c], recommended=c == self.recommended.index)
            rows.append(row)
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """The grid as a text table; the recommended cell is marked ``*``."""
        s = self.settings
        lines = [
            f"Calibration grid: {s['sampler']}, {s['num_chains']} chains × {s['num_draws']} "
            f"draws after {s['num_burnin']} burn-in steps, batch {s['batch_size']}, n = {s['n']}",
            f" {'nβ':>8}{'γ':>7}{'step':>10}{'λ̂':>10}{'MCSE':>8}{'MALA':>6}{'R-hat':>7}"
            f"{'ESS':>7}{'div':>4}{'drift':>7}  status",
        ]
        for c in self.cells():
            i, j, k = c
            lines.append(
                f"{'*' if c == self.recommended.index else ' '}{self.nbetas[i]:>8.4g}"
                f"{self.localizations[j]:>7.3g}{self.step_sizes[k]:>10.3g}{self.llc[c]:>10.4g}"
                f"{self.mcse[c]:>8.2g}{self.mala[c]:>6.2f}{self.r_hat[c]:>7.3f}"
                f"{self.ess[c]:>7.0f}{self.divergences[c]:>4d}{self.drift[c]:>7.1f}  "
                f"{self.status[c]}"
            )
        r = self.recommended
        head = f"λ̂ = {r.llc:.4g} ± {r.mcse:.2g} (MCSE) at " if r.found else ""
        lines.append(f"recommended: {head}{r.reason}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def plot(self, traces: int = 3):
        """Heatmaps of λ̂ over step × localization, one per nβ (unusable cells hatched, the
        recommended cell outlined), and the traces of the recommended cell and its neighbouring
        steps (``traces`` panels). Returns the matplotlib Figure."""
        from ._calibration_plot import plot_calibration

        return plot_calibration(self, traces)


def _grid(name: str, values, allow_zero: bool = False) -> tuple[float, ...]:
    """The grid axis ``values`` as a tuple of distinct finite floats > 0 (≥ 0), sorted."""
    if isinstance(values, int | float) and not isinstance(values, bool):
        values = (values,)
    if isinstance(values, torch.Tensor | np.ndarray):
        values = values.tolist()
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} must not be empty: the calibration grid needs a value")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise TypeError(f"{name} must hold numbers, got {type(v).__name__} {v!r}")
        if not math.isfinite(v) or (v < 0 if allow_zero else v <= 0):
            raise ValueError(
                f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {v}"
            )
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat a value, got {values}")
    return tuple(sorted(float(v) for v in values))


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def calibrate(
    model: nn.Module,
    data,
    *,
    step_sizes=None,
    localizations=(DEFAULT_LOCALIZATION,),
    nbetas=None,
    loss: str | LossFn = "mse",
    num_chains: int = 4,
    num_burnin: int = DEFAULT_BURNIN,
    num_draws: int = DEFAULT_DRAWS,
    batch_size: int | None = None,
    sampler: str = "sgld",
    seed: int | torch.Generator = 0,
    start: str = "warmup",
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
    params=None,
    matmul_precision: str | None = None,
) -> CalibrationResult:
    """Sample a grid of step sizes, localizations and nβ; recommend one cell.

    Parameters
    ----------
    model : nn.Module
        The network at w* (left untouched, as by :func:`llc.estimate_llc`).
    data : (inputs, targets) tuple, TensorDataset or DataLoader
        The n training samples.
    step_sizes : sequence of float > 0, optional
        The steps ε. Default: ``ε₀ · 2^{k/2}``, with ``ε₀`` the kernel's step for the largest
        curvature of the potential at and around w* and at the chains' starting points
        (SGLD: ``ε₀ = ½/κ̂``), at the grid's largest nβ and smallest γ; k = −4 … 8 (ε₀/4 to
        16ε₀, 13 steps) from warm-up, k = −6 … 4 (ε₀/8 to 4ε₀, 11 steps) from w*.
    localizations : sequence of float ≥ 0
        The localizations γ (default 0.3, the estimator's).
    nbetas : sequence of float > 0, optional
        The inverse temperatures times n, default ``(n / log n,)``.
    loss : {"mse", "cross_entropy", "next_token", "behavioral"} or callable
        As in :func:`llc.estimate_llc`.
    num_chains : int ≥ 2
        Chains per cell.
    num_burnin, num_draws : int
        Steps discarded, then kept, in every cell.
    batch_size : int, optional
        Minibatch size, default ``min(n, 512)``.
    sampler : {"sgld", "rmsprop_sgld", "sgnht"}
    seed : int or torch.Generator
        Seeds the chains; every cell's chain c uses the same random stream as chain c of
        ``estimate_llc(seed=seed)``. The warm-up of ``start="warmup"`` draws from a stream
        derived from it.
    start : {"warmup", "center"}
        Where every cell's chains start. ``"warmup"``: where :func:`llc.estimate_llc`'s adaptive
        warm-up (its spreading phase included) leaves ``num_chains`` chains at the default nβ
        and γ (the grid's values nearest to them), chain c of every cell at that warm-up's
        chain c. ``"center"``: at w*.
    device, dtype : optional
        Where and in what precision to sample (default: the model's).
    progress : bool
        Show a tqdm progress bar.
    params : optional
        The parameters to sample (weight-refined LLC), as in :func:`llc.estimate_llc`.
    matmul_precision : {"highest", "high", "medium"}, optional
        As in :func:`llc.estimate_llc`.

    Returns
    -------
    CalibrationResult
        Per-cell arrays of shape ``(len(nbetas), len(localizations), len(step_sizes))``, the
        traces, the recommended cell and the rule; ``.plot()``, ``.to_pandas()``, ``.summary()``.

    Raises
    ------
    ValueError, TypeError
        An empty grid, a grid value ≤ 0 (γ < 0), not finite or repeated, an unknown ``start``,
        or a value of the wrong type; the message names the argument.

    Notes
    -----
    Every cell runs the kernel at its fixed step: ``num_burnin`` steps from its start, then
    ``num_draws`` kept draws of ``nβ (L_B(w) − L_B(w*))``. With ``start="center"`` that is
    exactly what ``estimate_llc(step_size=ε, localization=γ, nbeta=nβ, num_burnin=…,
    num_draws=…, num_chains=…, seed=seed)`` runs (no step or metric adaptation, no noise
    compensation): λ̂, MCSE, R-hat and ESS are that call's. The cells estimate different
    quantities as nβ and γ change the target ``p(w) ∝ exp(−nβ L_n(w) − γ‖w − w*‖²/2)``; only
    the step is a pure sampling parameter.

    **Why start from warm-up.** From w*, a fixed-step run on a deep network spends its budget
    drifting out along the flat directions, and small steps never arrive: on DLN 20x6
    (d = 2000) the plateau sat 8.9 % below λ_n, or none was found. Started where the
    estimator's warm-up, with its spreading phase, leaves the chains, the cells begin near the
    posterior's typical set and the grid measures what each step does from there. The steps
    that are stable there are smaller (the chains sit where the network is stiffer), hence the
    start's curvature in ε₀, and the grid reaches 16ε₀ because the edge lay at 5–8ε₀ on the
    tuning models. The draws of a cell barely move the chains along the flat directions within
    the budget, so the chains keep the spread warm-up gave them and R-hat stays above 1.05 at
    every step (1.1–1.6 on DLN 20x6) whatever the step: with this start, R-hat is reported but
    not part of the rule; the between-chain spread enters the MCSE through the ESS.

    With ``sampler="sgld"`` or ``"rmsprop_sgld"`` the whole grid is **one batched computation**:
    cells × chains are the chains of one :class:`llc.sampling.Chains`, each with its own ε, γ and
    nβ (per-chain parameters of shape (chain, 1)), sharing the model's batched evaluation. SGNHT
    samples one cell at a time (its thermostat update takes scalar parameters). Every cell
    reuses the same ``num_chains`` random streams (common random numbers), so differences
    between cells are due to the settings, not to the noise.

    **The rule.** Below the edge of stable steps, λ̂ of a fixed-budget run changes little from
    one step to the next (small steps have not quite equilibrated: a low bias that shrinks as ε
    grows), and so does the spread of the draws. Past the edge, chains make rare excursions to
    high loss where the step is unstable: the spread of the draws jumps and λ̂ is biased upwards
    by up to 50 %, while the MALA acceptance drops. Per (nβ, γ), the steps are scanned upwards;
    the *edge* is the first step k where

    - a chain diverges, or
    - the MALA acceptance is below 0.5 (beneath even the optimal rate 0.574 of the Metropolis-
      adjusted algorithm [2]_), or
    - the draws' standard deviation grows more than twofold, ``s_k > 2 s_{k−1}``
      (excursions), or
    - λ̂ leaves the plateau: ``|λ̂_k − λ̂_j| > 0.07 |λ̂_j|``, j the last converged step below,

    and that step and all larger ones are unusable. Below the edge a cell is converged when
    R-hat ≤ 1.05 (from w* only) and the trend statistic ``|z| ≤ 3``
    (``z = (m₂ − m₁)/√(MCSE₁² + MCSE₂²)`` between the draws' two halves,
    :func:`llc.diagnostics.drift`); λ̂ of a cell that has not
    converged still moves with the step, so it is not compared with. A converged cell is usable
    when a smaller converged step agrees with it: λ̂ is on a plateau of at least two steps (the
    first converged step is the plateau's reference, status ``"no plateau"``). The
    recommendation is the largest usable step of the slice at the default nβ = n/log n and
    γ = 0.3 (or the grid's values nearest to them, in log); another slice is chosen only when
    that one has no usable cell, and the reason says so.

    The thresholds come from the default grid on RRR 4-3-4 and DLN 6-5-4-6 of
    :data:`llc.validate.SUITE` (10 seeds each): below the edge, neighbouring steps changed λ̂ by
    −2.1 … +3.2 % and the draws' sd by a factor 0.94 … 1.05; the first step past the edge
    multiplied the sd by 2.5 … 12.5 and moved λ̂ by +3.8 … +42 %. The spread test is the sharp
    one; the plateau test backs it up. A fixed MALA threshold such as 0.9 was a poor edge
    marker: the acceptance at the edge was 0.75–0.85 there and 0.66 on DLN 24-20-20-24 (d = 1360,
    not in the suite). The tolerances assume steps about √2 apart; on coarser grids λ̂ may
    change more between neighbours below the edge, which makes the choice conservative.
    Validation on other suite models: ``bench/calibration_rule.py`` and ``docs/design.md``.

    Limits. The edge depends on the run's length: a chain that meets an unstable region only
    rarely may not within ``num_burnin + num_draws`` steps (longer runs put it lower on deep
    networks). The cells below the edge may not reach a plateau within the budget: then no
    cell is recommended, and the reason says to rerun the steps just below the edge with more
    burn-in and draws. From warm-up, the smallest steps keep the chains near where warm-up
    left them and λ̂ moves a few percent, up or down, towards the largest stable steps; the
    rule's choice of the largest usable step is the one that has relaxed most. The plateau
    test compares neighbouring steps only, so with budgets far below the defaults (the 1000 +
    1000 steps of ``notebooks/13_llc_training.ipynb``: +18 % over 11 steps, ESS 9–35) a slow
    drift across the grid passes it; ``summary()`` shows it.

    References
    ----------
    .. [1] E. Lau, Z. Furman, G. Wang, D. Murfet, S. Wei, "The Local Learning Coefficient: A
       Singularity-Aware Complexity Measure", arXiv:2308.12108.
    .. [2] G. O. Roberts and J. S. Rosenthal, "Optimal scaling of discrete approximations to
       Langevin diffusions", J. R. Stat. Soc. B 60 (1998) 255–268.
    """
    locs = _grid("localizations", localizations, allow_zero=True)
    given = None if step_sizes is None else _grid("step_sizes", step_sizes)
    nbs = None if nbetas is None else _grid("nbetas", nbetas)
    for name, value, low in (("num_chains", num_chains, 2), ("num_burnin", num_burnin, 0),
                             ("num_draws", num_draws, 8)):  # fmt: skip
        _count(name, value, low)
    if batch_size is not None:
        _count("batch_size", batch_size, 1)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, got {type(progress).__name__}")
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    kernel = get_kernel(sampler)
    pot = Potential(model, data, loss=loss, params=params, device=device, dtype=dtype,
                    matmul_precision=matmul_precision)  # fmt: skip
    default_nbeta = pot.n / math.log(pot.n) if pot.n > 1 else 1.0
    nbs = nbs or (default_nbeta,)
    batch = batch_size or min(pot.n, DEFAULT_BATCH)
    seeds = chain_seeds(seed, num_chains)
    begin = None
    if start == "warmup":
        i, j = preferred_slice(nbs, locs, default_nbeta, DEFAULT_LOCALIZATION)
        s = LLCSettings(nbeta=nbs[i], localization=locs[j], num_chains=num_chains,
                        batch_size=batch, sampler=kernel.name, seed=start_seed(seed),
                        progress=progress)  # fmt: skip
        begin = warmed_up(pot, s)
    grid = GridSampler(pot, kernel, seeds, num_chains, batch, num_burnin, num_draws, begin)
    with grid.chains(1) as probe, pot.model_rng(probe.randomness.aux.initial_seed()):
        # (a model with dropout draws from the global RNG: forked, and seeded from `seed`)
        base = None if given else _base_step(probe, kernel, max(nbs), min(locs), begin)
        multiples = STEP_MULTIPLES if begin is None else WARM_MULTIPLES
        steps = given or tuple(base * m for m in multiples)
        cells = np.array(list(itertools.product(nbs, locs, steps)), dtype=np.float64)
        out = grid.run(cells, progress)
    shape = (len(nbs), len(locs), len(steps))
    arrays = {m: np.array([c[m] for c in out]).reshape(shape) for m in METRICS}
    index, status, reason, default = choose(
        arrays, steps, locs, nbs, default_nbeta, DEFAULT_LOCALIZATION, start == "center"
    )
    settings = {
        "n": pot.n, "d": pot.dim, "num_chains": num_chains, "num_burnin": num_burnin,
        "num_draws": num_draws, "batch_size": batch, "sampler": kernel.name,
        "seed": seed if isinstance(seed, int) else "generator", "loss": pot.loss_name,
        "batched": "one batch" if kernel.name in BATCHED_SAMPLERS else "one cell at a time",
        "step_base": base,
        "default_slice": default,
        "start": start,
        "matmul_precision": describe_precision(matmul_precision),
    }  # fmt: skip
    cell_index = list(itertools.product(*map(range, shape)))
    return CalibrationResult(
        steps, locs, nbs, **arrays, status=status,
        traces={c: o["trace"] for c, o in zip(cell_index, out)},
        burnin_traces={c: o["burnin"] for c, o in zip(cell_index, out)},
        recommended=_recommendation(index, reason, arrays, steps, locs, nbs),
        rule=RULE, settings=settings,
    )  # fmt: skip


def _recommendation(index, reason, arrays, steps, locs, nbs) -> Recommendation:
    if index is None:
        return Recommendation(math.nan, math.nan, math.nan, math.nan, math.nan, None, reason)
    i, j, k = index
    llc, err = float(arrays["llc"][index]), float(arrays["mcse"][index])
    return Recommendation(steps[k], locs[j], nbs[i], llc, err, index, reason)


def _base_step(chains: Chains, kernel, nbeta: float, gamma: float, begin=None) -> float:
    """ε₀: the kernel's step for the largest curvature at and around w* (as warm-up starts),
    and at the chains' start ``begin`` when given (deep networks stiffen as the chains spread)."""
    pot = chains.potential
    params = kernel_params(kernel, 1.0, gamma, nbeta, pot.center)
    gen = chains.randomness.aux
    vecs = torch.randn((chains.num_chains, pot.dim), generator=gen, device=pot.device,
                       dtype=pot.dtype)  # fmt: skip
    eps, vecs = initial_step_size(chains, kernel, params, vecs, gen)
    if begin is not None:
        kappa, _ = top_curvature(chains, params, begin, None, vecs, iters=10)
        eps = min(eps, kernel.stable_step_size(max(kappa.max().item(), gamma, 1e-12)))
    return float(eps)
