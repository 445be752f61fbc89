"""The default rule: warm-up with step-size adaptation and a stationarity test.

Warm-up runs in windows of ``window`` steps. Before the first window, ε is set from the largest
curvature of the potential at points around w* whose excess energy is typical of the posterior;
after every window it is re-set to ``ε = c / κ̂`` (c = 1/2) with κ̂ the largest curvature of
``U = nβ L + γ/2 ‖w − w*‖²`` over the chains' current points (power iteration with Hessian-vector
products, warm-started). Singular models need this: chains drift to regions of higher curvature
than w*, and a step size fixed from w* lets them run into stiff regions where it is too large.
A chain that diverges during warm-up is restarted at w* with ε halved (and capped there).
Warm-up ends once ε has settled (changed by less than 25 % over the last window), the warm-up
spans at least ten integrated autocorrelation times of the trace ``nβ (L_B − L_B(w*))`` and four
times the number of steps the trace took to first reach 90 % of its current level, and
that trace shows no trend over the second half of the warm-up: its third and fourth quarters
agree within 1.5 standard errors of the per-chain differences plus 0.5 %; and the chains have
stopped spreading: their squared distance from w* shows no such trend either (within 2 %). The
energy can look stationary while chains still drift along nearly flat directions, which biases
λ̂ low on deep linear networks (measured against the exact Gibbs sampler of
:func:`theory.dln_gibbs_llc`). The warm-up is capped by the caller's budget (at most 10⁴ steps).
The number of draws is then chosen so that the Monte Carlo standard error, projected from the
autocorrelation seen in warm-up, is about 1 % of λ̂.

Rules tried and rejected (measured on the validation suite): ε from the median chain's curvature
(one chain ran into regions where ε was unstable: +13 % on RRR 5-4-5), ε steered to a MALA
acceptance of 0.9 (chains reach stiffer regions after warm-up: +23 % to +28 %), c = 1 (+12 %;
later +4.6 % and an MCSE of 3 % on DLN 40-30-30-40), a diagonal metric from Hutchinson estimates
of the Hessian diagonal instead of ``E[(∂U)²]`` (coordinates it amplified turned stiff at some
chains, ε collapsed: DLN 20×6 −19 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from . import sampler
from ._chains import ChainRunner
from .diagnostics import ess

__all__ = ["WarmupResult", "choose_num_draws", "initial_step_size", "warmup"]

METRIC_RANGE = (1e-2, 1e2)  # metric entries relative to their median
MAX_HEATING = 0.5  # minibatch heating h beyond which the noise compensation stops (s ≥ √0.5)
STEP_FACTOR = 0.5  # c in ε = c/κ̂: the stiffest direction relaxes by a = εκ/2 = 1/4 per step


@dataclass(frozen=True)
class WarmupResult:
    state: sampler.SGLDState
    config: sampler.SGLDConfig
    llc_trace: np.ndarray  # (chain, step)
    loss_trace: np.ndarray
    num_steps: int
    converged: bool
    step_sizes: tuple[float, ...]
    restarts: int = 0
    heating: float = 0.0  # mean minibatch heating h compensated by state.noise_scale


@torch.no_grad()
def _perturbation_scale(
    runner: ChainRunner, config: sampler.SGLDConfig, gen: torch.Generator
) -> torch.Tensor:
    """Points ``w* + σ ξ`` whose excess energy ``nβ (L − L*)`` is about d/4 (posterior-typical)."""
    c, d = runner.num_chains, runner.flat.dim
    xi = torch.randn(c, d, generator=gen, device=runner.x.device, dtype=runner.flat.center.dtype)
    idx = runner.draw_indices()
    target = max(d / 4.0, 0.5)
    lo, hi = -12.0, 2.0  # log10 σ
    center = runner.flat.center
    base = runner.loss_center[idx].mean(1)
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        pts = center + (10.0**mid) * xi
        losses, _ = runner.value_grad(pts, idx)
        excess = (config.nbeta * (losses - base)).median().item()
        if not math.isfinite(excess) or excess > target:
            hi = mid
        else:
            lo = mid
    return center + (10.0 ** (0.5 * (lo + hi))) * xi


def initial_step_size(
    runner: ChainRunner, config: sampler.SGLDConfig, vecs: torch.Tensor, gen: torch.Generator
) -> tuple[float, torch.Tensor]:
    """ε₀ = c / κ̂ with κ̂ the largest curvature at w* and at typical points around it."""
    pts = _perturbation_scale(runner, config, gen)
    state = sampler.SGLDState(params=pts, center=runner.flat.center, noise=torch.zeros_like(pts))
    kappa, vecs = runner.top_curvature(state, config, vecs, iters=10)
    state0 = replace(state, params=runner.flat.center.expand_as(pts).clone())
    kappa0, _ = runner.top_curvature(state0, config, vecs, iters=10)
    k = max(kappa.max().item(), kappa0.max().item(), config.localization, 1e-12)
    return STEP_FACTOR / k, vecs


def _diagonal_metric(runner: ChainRunner, config: sampler.SGLDConfig) -> torch.Tensor | None:
    """``G_i ∝ 1 / E[(∂_i U)²]``: at equilibrium ``E[(∂_i U)²] = E[∂_i² U]`` (integration by parts),
    the mean curvature along coordinate i, so G equalises the coordinates' relaxation rates."""
    curv = runner.grad_sq / runner.grad_sq_count
    curv = torch.clamp(curv, min=max(config.localization, 1e-12))
    metric = 1.0 / curv
    ok = torch.isfinite(metric) & (metric > 0)
    if not ok.any():
        return None
    # normalise by the median of the usable entries; unusable ones get the smallest step
    metric = torch.where(ok, metric / metric[ok].median(), torch.zeros_like(metric))
    return torch.clamp(metric, METRIC_RANGE[0], METRIC_RANGE[1]).to(runner.flat.center.dtype)


def noise_scale(
    noise_var: torch.Tensor, config: sampler.SGLDConfig, metric: torch.Tensor | None
) -> tuple[torch.Tensor, float]:
    """``s = √(1 − h)``, ``h = ε nβ² G Var(∇L_B) / 4`` (see :mod:`llc.sampler`), and the mean of
    the compensated (capped) h.

    h is capped at ``MAX_HEATING``: beyond it the gradient noise alone exceeds half the intended
    noise, and only a smaller ε or a larger batch helps.
    """
    g = metric.double() if metric is not None else 1.0
    h = config.step_size * config.nbeta**2 * g * noise_var / 4
    h = torch.where(torch.isfinite(h), h, torch.zeros_like(h))
    h = h.clamp(0, MAX_HEATING)
    return (1 - h).sqrt(), float(h.mean())


def _stationary(ex: np.ndarray, rel: float = 0.005, relaxation_times: float = 10.0) -> bool:
    """No trend in the second half of a ``(chain, step)`` trace: quarters 3 and 4 agree, and the
    warm-up spans at least ``relaxation_times`` integrated autocorrelation times of the trace
    (estimated on its second half)."""
    ex = ex[np.isfinite(ex).all(axis=1)]
    t = ex.shape[1]
    if ex.shape[0] == 0:
        return True
    half = ex[:, t // 2 :]
    e = ess(half)
    tau = half.size / e / half.shape[0] if e > 0 else math.inf
    if t < relaxation_times * tau:
        return False
    # The trace rises from 0 at w*: ask for four times the time it took to reach 90 % of its
    # current level (about nine relaxation times for an exponential approach).
    level = ex[:, 3 * t // 4 :].mean()
    running = np.convolve(ex.mean(axis=0), np.ones(50) / 50, mode="valid")
    reached = np.flatnonzero(running >= 0.9 * level)
    if level > 0 and reached.size and t < 4 * (reached[0] + 50):
        return False
    q3 = ex[:, t // 2 : 3 * t // 4].mean(axis=1)
    q4 = ex[:, 3 * t // 4 :].mean(axis=1)
    diff = q4 - q3
    se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else abs(diff.mean())
    return abs(diff.mean()) <= 1.5 * se + rel * abs(ex[:, t // 2 :].mean())


def _settled(spread: np.ndarray, rel: float = 0.02) -> bool:
    """The chains have stopped spreading: ``‖w − w*‖²``, shape (chain, window), shows no trend
    between the third and fourth quarters of the warm-up (1.5 standard errors plus ``rel``).

    The energy trace alone misses slow drift along nearly flat directions (for a deep linear
    network the localised posterior spreads over its symmetry orbits, which barely changes the
    energy while the chains travel), so warm-up also waits for the chains' spread to level off.
    """
    spread = spread[np.isfinite(spread).all(axis=1)]
    t = spread.shape[1]
    if spread.shape[0] == 0 or t < 4:
        return True
    diff = spread[:, 3 * t // 4 :].mean(axis=1) - spread[:, t // 2 : 3 * t // 4].mean(axis=1)
    se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else abs(diff.mean())
    return abs(diff.mean()) <= 1.5 * se + rel * abs(spread[:, t // 2 :].mean())


def warmup(
    runner: ChainRunner,
    state: sampler.SGLDState,
    config: sampler.SGLDConfig,
    *,
    adapt_step: bool,
    adapt_metric: bool = True,
    compensate: bool = True,
    num_steps: int | None,
    window: int = 100,
    min_windows: int = 8,
    max_windows: int = 100,
    eps_cap: float = math.inf,
    gen: torch.Generator,
    progress: bool,
) -> WarmupResult:
    """Run the warm-up (see the module docstring). With ``num_steps`` given, run exactly that.

    ``eps_cap`` bounds the adapted ε (a warm-up repeated after chains diverged in the draws).
    """
    vecs = torch.randn(
        state.params.shape, generator=gen, device=state.params.device, dtype=state.params.dtype
    )
    if adapt_step:
        eps0, vecs = initial_step_size(runner, config, vecs, gen)
        config = replace(config, step_size=min(eps0, eps_cap))
    step_sizes = [config.step_size]
    llc_parts, loss_parts = [], []
    total, converged, restarts = 0, False, 0
    budget = num_steps if num_steps is not None else window * max_windows
    runner.track_grad_sq = adapt_metric
    spread: list[np.ndarray] = []  # ‖w − w*‖² per chain after each window
    noise_sum, noise_count, heating = None, 0, 0.0
    while total < budget:
        n_steps = min(window, budget - total)
        state, trace = runner.run(
            state, n_steps, config, progress=progress, desc=f"warm-up ε={config.step_size:.2e}"
        )
        total += n_steps
        loss, lc, _ = trace.stacked()
        ex = (config.nbeta * (loss - lc)).cpu().numpy()
        llc_parts.append(ex)
        loss_parts.append(loss.cpu().numpy())
        dead = [c for c, d in enumerate(runner.diverged_at) if d is not None]
        if dead and adapt_step and num_steps is None:
            # adaptation, not sampling: halve ε, restart those chains at w*, never exceed it again
            config = replace(config, step_size=0.5 * config.step_size)
            eps_cap = config.step_size
            restarts += len(dead)
            runner.revive(dead)
            step_sizes.append(config.step_size)
            continue
        alive = np.isfinite(ex).all(axis=1)
        if not alive.any():
            break
        spread.append(((state.params - state.center) ** 2).sum(1).double().cpu().numpy())
        if num_steps is not None:
            continue
        settled = True
        if adapt_metric and runner.grad_sq_count:
            metric = _diagonal_metric(runner, config)
            if metric is not None:
                state = replace(state, metric=metric)
        runner.grad_sq.zero_()
        runner.grad_sq_count = 0
        if adapt_step:
            kappa, vecs = runner.top_curvature(state, config, vecs, iters=3)
            # The stiffest chain sets ε (a median rule let single chains run into regions where ε
            # was unstable: quartic potentials have near-zero curvature at w*).
            k = kappa[torch.as_tensor(alive, device=kappa.device)].max().item()
            new_eps = STEP_FACTOR / max(k, config.localization, 1e-12)
            new_eps = min(max(new_eps, 0.5 * config.step_size), 2.0 * config.step_size, eps_cap)
            settled = abs(math.log(new_eps / config.step_size)) < math.log(1.25)
            config = replace(config, step_size=new_eps)
            step_sizes.append(new_eps)
        if compensate and config.preconditioner == "identity":
            var = runner.gradient_noise(state.params)
            if var is not None:
                noise_sum = var if noise_sum is None else noise_sum + var
                noise_count += 1
            if noise_count:
                scale, heating = noise_scale(noise_sum / noise_count, config, state.metric)
                state = replace(state, noise_scale=scale.to(state.params.dtype))
        if (
            len(llc_parts) >= min_windows
            and settled
            and _stationary(np.concatenate(llc_parts, axis=1))
            and _settled(np.stack(spread, axis=1))
        ):
            converged = True
            break
    runner.track_grad_sq = False
    if noise_count:  # for the final ε and metric (a restart may have halved ε after the last set)
        scale, heating = noise_scale(noise_sum / noise_count, config, state.metric)
        state = replace(state, noise_scale=scale.to(state.params.dtype))
    return WarmupResult(
        state=state,
        config=config,
        llc_trace=np.concatenate(llc_parts, axis=1)
        if llc_parts
        else np.zeros((runner.num_chains, 0)),
        loss_trace=np.concatenate(loss_parts, axis=1)
        if loss_parts
        else np.zeros((runner.num_chains, 0)),
        num_steps=total,
        converged=converged or num_steps is not None,
        restarts=restarts,
        step_sizes=tuple(step_sizes),
        heating=heating,
    )


def choose_num_draws(
    warm: WarmupResult, *, rel_mcse: float = 0.01, min_draws: int = 500, max_draws: int = 4000
) -> int:
    """Draws so that the projected MCSE is ``rel_mcse`` of λ̂, from warm-up's last half."""
    ex = warm.llc_trace
    ex = ex[np.isfinite(ex).all(axis=1)]
    half = ex[:, ex.shape[1] // 2 :]
    if half.shape[1] < 8:
        return min_draws
    e = ess(half)
    lam = abs(half.mean())
    if not (e > 0 and lam > 0):
        return max_draws
    draws_per_ess = half.size / e / half.shape[0]  # steps per effective draw, per chain
    sd = half.std(ddof=1)
    need_ess = (sd / (rel_mcse * lam)) ** 2
    draws = int(math.ceil(need_ess * draws_per_ess / half.shape[0]))
    return int(min(max(draws, min_draws), max_draws))
