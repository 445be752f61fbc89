"""Warm-up: move the chains to the posterior while adapting the kernel's parameters.

Warm-up runs in windows of ``window`` steps. Before the first, the step size is set from the
largest curvature of the potential at w* and at points around it whose excess energy is typical
of the posterior. After each window the adaptation parts of :mod:`llc.adaptation` update, in this
order: the diagonal metric (kernels that take one), the step size from the curvature at the
chains' current points, and the minibatch-noise compensation (kernels that take it). Warm-up ends
when the step size has settled and both convergence tests pass (after at least ``min_windows``),
or at ``max_windows``. A chain that diverges in a window is restarted at w* and the step size is
halved and capped there. With ``num_steps`` given, warm-up runs exactly that many steps at the
initial step size and adapts nothing. :func:`kron_warmup` is the warm-up of the Kronecker-metric
kernel (:mod:`llc.kernels.kron_sgld`), whose metric follows the chains by construction.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch

from ._curvature import scaled_curvature, top_curvature, typical_points
from .adaptation import convergence, metric, noise, step_size
from .kernels import KERNELS, Kernel, kron_sgld
from .kernels._kron import apply_power
from .observables import LLCTrace
from .sampling import Chains, progress_bar, run
from .sampling import values as window_values
from .transport import mean_distance

__all__ = ["WarmupResult", "initial_step_size", "kron_warmup", "spread", "warmup"]

FALLBACK_H = 1e-3  # placeholder step of the spreading phase, replaced from the curvature at once
KRON_MIN_WINDOWS = 20  # transport windows of kron_sgld at least (2,000 steps)
KRON_SETTLE = 200  # steps at the draws' step before the draws, at least
KRON_SETTLE_MAX_WINDOWS = 20  # until the energy has no trend (the transport's O(ε) heat is gone)


@dataclass(frozen=True)
class WarmupResult:
    """Where warm-up left the chains, and what it adapted.

    Attributes
    ----------
    state, params
        The kernel's state and parameters for the draws.
    llc_trace : ndarray, shape (chain, step)
        ``nβ (L_B − L_B(w*))`` through warm-up.
    num_steps : int
    converged : bool
        The convergence tests passed (True for a fixed ``num_steps``).
    step_sizes : tuple of float
        The step size after each update.
    restarts : int
        Chains restarted after diverging (in this phase).
    minibatch_heating : float
        Mean minibatch heating h compensated by ``params.noise_scale``.
    earlier : tuple of WarmupResult
        The phases before this one, in order (the estimator's first SGLD phase and its
        spreading phase); empty for a single phase.
    transport : dict or None
        The record of the orbit moves between the spreading phase and this one
        (:meth:`llc.transport.TransportResult.record`), or None.
    """

    state: object
    params: object
    llc_trace: np.ndarray
    num_steps: int
    converged: bool
    step_sizes: tuple[float, ...]
    restarts: int = 0
    minibatch_heating: float = 0.0
    earlier: tuple[WarmupResult, ...] = ()  # phases before this one (the spreading phase's)
    transport: dict | None = None  # the orbit moves before this phase (llc.transport)

    @property
    def total_steps(self) -> int:
        """Steps of this phase and the earlier ones."""
        return self.num_steps + sum(e.total_steps for e in self.earlier)

    @property
    def full_trace(self) -> np.ndarray:
        """``llc_trace`` of the earlier phases and this one, in order, shape (chain, step)."""
        return np.concatenate([e.full_trace for e in self.earlier] + [self.llc_trace], axis=1)


@dataclass(frozen=True, eq=False)
class _MetricRecorder:
    """Feeds each step's ``∇U`` to the metric part, continuing from ``start``."""

    start: metric.MetricState
    name: str = "metric"

    def init(self, num_chains):
        return self.start

    def update(self, acc, step):
        return metric.update(acc, step.info.potential_grad, step.alive)

    def finalize(self, acc, invalid, num_steps):
        return acc


def initial_step_size(chains: Chains, kernel: Kernel, params, vecs, gen) -> tuple[float, object]:
    """The kernel's step for the largest curvature at w* and at posterior-typical points."""
    pts = typical_points(chains, params.nbeta, gen)
    kappa, vecs = top_curvature(chains, params, pts, None, vecs, iters=10)
    at_center = params.center.expand_as(pts).clone()
    kappa0, _ = top_curvature(chains, params, at_center, None, vecs, iters=10)
    k = max(kappa.max().item(), kappa0.max().item(), params.localization, 1e-12)
    return kernel.stable_step_size(k), vecs


def _noise_variance(chains: Chains, position):
    """One measurement of Var(∇L_B) from two minibatches per chain (None with full batches)."""
    if chains.randomness.batch_size >= chains.potential.n:
        return None
    _, g1 = chains.value_and_grad(position, chains.randomness.indices())
    _, g2 = chains.value_and_grad(position, chains.randomness.indices())
    return noise.pair_variance(g1, g2, chains.alive())


class _Adapting(NamedTuple):
    """The adaptation parts' states between windows."""

    steps: step_size.StepSizeState
    grads: metric.MetricState
    noise: noise.NoiseState
    vecs: torch.Tensor  # power-iteration vectors, warm-started window to window
    heating: float = 0.0


def _adapt(chains, kernel, params, state, a: _Adapting, alive, flags) -> tuple[object, _Adapting]:
    """After a window: the metric, then the step from the curvature, then the noise scale."""
    adapt_metric, adapt_step, compensate = flags
    if adapt_metric:
        learned = metric.final(a.grads, params.localization, state.position.dtype)
        if learned is not None:
            params = replace(params, metric=learned)
        a = a._replace(grads=metric.init(*a.grads.sum_sq.shape, a.grads.sum_sq.device))
    if adapt_step:
        precond = kernel.preconditioner(state, params)
        kappa, vecs = top_curvature(chains, params, state.position, precond, a.vecs, iters=3)
        k = _stiffest(kappa, torch.as_tensor(alive, device=kappa.device))
        steps = step_size.update(a.steps, k, kernel.stable_step_size, params.localization)
        params = replace(params, step_size=step_size.final(steps))
        a = a._replace(steps=steps, vecs=vecs)
    if compensate:
        a = a._replace(noise=noise.update(a.noise, _noise_variance(chains, state.position)))
        params, heating = _compensated(kernel, params, a.noise)
        a = a._replace(heating=heating)
    return params, a


def warmup(
    chains: Chains,
    kernel: Kernel,
    params,
    state,
    *,
    adapt_step: bool,
    adapt_metric: bool = True,
    compensate: bool = True,
    num_steps: int | None = None,
    window: int = 100,
    min_windows: int = 8,
    max_windows: int = 100,
    step_cap: float = math.inf,
    probe_start: bool = True,
    carried: bool = False,
    deadline: float | None = None,
    progress: bool = False,
    desc: str = "warm-up",
) -> WarmupResult:
    """Run the warm-up (see the module notes); ``step_cap`` bounds the adapted step size.

    The first adapted step comes from the curvature around w* (``probe_start``) or at the
    chains' current points (for a warm-up that continues from an earlier phase). With a
    ``deadline`` (a :func:`time.perf_counter` value) no window after the first starts after
    it. ``carried``: the chains start where an earlier estimate at a nearby w* left them; the
    first step comes from the curvature there and the energy test asks for no trend only
    (:data:`llc.adaptation.convergence.trend`), until a diverged chain restarts at w*."""
    adaptive = num_steps is None
    probe_start = probe_start and not carried
    stationary = convergence.trend if carried else convergence.energy
    flags = (adapt_metric and kernel.learns_metric and adaptive, adapt_step and adaptive,
             compensate and kernel.compensates_noise and adaptive)  # fmt: skip
    params, a = _start(chains, kernel, params, state, adapt_step, step_cap, probe_start)
    trace_obs, parts = LLCTrace(), []
    energy, spread = stationary.init(), convergence.spread.init()
    total, converged, restarts = 0, False, 0
    budget = num_steps if num_steps is not None else window * max_windows
    # one bar for the whole warm-up; its time left is against the budget, an upper bound
    bar = progress_bar(budget, desc if num_steps else f"{desc} (at most)", progress)
    while total < budget and not converged and not (parts and _past(deadline)):
        bar.set_postfix_str(f"ε={params.step_size:.2e}", refresh=False)
        observables = [trace_obs] + ([_MetricRecorder(a.grads)] if flags[0] else [])
        first = chains.steps_done
        state, accs = run(
            chains, kernel, params, state, min(window, budget - total), observables,
            bar=bar,
        )  # fmt: skip
        values = window_values(chains, observables, accs, first)
        total += values["llc"].shape[1]
        parts.append(values["llc"])
        energy = stationary.update(energy, values["llc"])
        a = a._replace(grads=values.get("metric", a.grads))
        dead = chains.diverged()
        if dead and flags[1]:
            # adaptation, not sampling: halve the step, restart those chains at w*
            a = a._replace(steps=step_size.halve(a.steps))
            params = replace(params, step_size=step_size.final(a.steps))
            restarts += len(dead)
            chains.revive(dead)
            if stationary is not convergence.energy:  # carried chains: one now starts at w*
                stationary = convergence.energy
                energy = functools.reduce(stationary.update, parts, stationary.init())
            continue
        alive = np.isfinite(values["llc"]).all(axis=1)
        if not alive.any():
            break
        distance = ((state.position - params.center) ** 2).sum(1).double().cpu().numpy()
        spread = convergence.spread.update(spread, distance)
        if not adaptive:
            continue
        params, a = _adapt(chains, kernel, params, state, a, alive, flags)
        converged = (
            len(parts) >= min_windows
            and (a.steps.settled or not flags[1])
            and stationary.final(energy)
            and convergence.spread.final(spread)
        )
    bar.close()
    if flags[2]:  # for the final step and metric (a restart may have halved the step)
        params, heating = _compensated(kernel, params, a.noise)
        a = a._replace(heating=heating)
    return WarmupResult(
        state=state,
        params=params,
        llc_trace=np.concatenate(parts, axis=1) if parts else np.zeros((chains.num_chains, 0)),
        num_steps=total,
        converged=converged or not adaptive,
        restarts=restarts,
        step_sizes=a.steps.history,
        minibatch_heating=a.heating,
    )


def _stiffest(kappa: torch.Tensor, alive: torch.Tensor) -> float:
    """The largest curvature over the live chains (all chains when none is alive): the
    stiffest chain sets the step (a median rule let single chains run into regions where it
    was unstable: quartic potentials have near-zero curvature at w*)."""
    return (kappa[alive] if bool(alive.any()) else kappa).max().item()


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() >= deadline


def _start(chains, kernel, params, state, adapt_step: bool, step_cap: float, probe: bool):
    """The initial step (from the curvature when adapted) and the adaptation states."""
    gen, pos = chains.randomness.aux, state.position
    vecs = torch.randn(pos.shape, generator=gen, device=pos.device, dtype=pos.dtype)
    if adapt_step and not probe:
        precond = kernel.preconditioner(state, params)
        kappa, vecs = top_curvature(chains, params, pos, precond, vecs, iters=10)
        k = max(_stiffest(kappa, chains.alive()), params.localization, 1e-12)
        steps = step_size.init(kernel.stable_step_size(k), step_cap)
    elif adapt_step:
        eps0, vecs = initial_step_size(chains, kernel, params, vecs, gen)
        steps = step_size.init(eps0, step_cap)
    else:
        steps = step_size.init(params.step_size)
    params = replace(params, step_size=step_size.final(steps))
    return params, _Adapting(steps, metric.init(pos.shape[1], pos.device), noise.init(), vecs)


def _compensated(kernel, params, noise_acc):
    scale, heating = noise.final(noise_acc, kernel.minibatch_heating, params)
    if scale is None:
        return params, heating
    return replace(params, noise_scale=scale.to(params.center.dtype)), heating


def spread(
    chains: Chains,
    warm: WarmupResult,
    *,
    max_windows: int,
    compensate: bool = True,
    deadline: float | None = None,
    progress: bool = False,
) -> WarmupResult:
    """Carry the chains out along the flat directions by underdamped Langevin dynamics.

    Continues from an SGLD warm-up ``warm``: its metric is the mass, the step is re-set from the
    curvature at the chains' points after every window (``h = ½/√κ̂``), and the phase ends when
    both convergence tests pass or at ``max_windows``. The result's ``state`` holds the kernel
    state of :mod:`llc.kernels.underdamped`; the caller warms SGLD up again from its positions.
    """
    kernel = KERNELS["underdamped"]
    p = warm.params
    params = kernel.params(
        step_size=FALLBACK_H, localization=p.localization, nbeta=p.nbeta, center=p.center,
        metric=getattr(p, "metric", None),
    )  # fmt: skip
    state = kernel.init(warm.state.position, chains.randomness.noise(), params)
    return warmup(
        chains, kernel, params, state, adapt_step=True, adapt_metric=False,
        compensate=compensate, max_windows=max_windows, probe_start=False, deadline=deadline,
        progress=progress, desc="spreading",
    )  # fmt: skip


def kron_warmup(
    chains: Chains,
    kernel: Kernel,
    params,
    state,
    *,
    max_windows: int,
    step_cap: float = math.inf,
    num_steps: int | None = None,
    fixed_step: bool = False,
    deadline: float | None = None,
    progress: bool = False,
) -> WarmupResult:
    """Warm-up of :mod:`llc.kernels.kron_sgld`: the transport, then the settling at the draws'
    step.

    κ̂ is the largest curvature at the start in the metric's units (power iteration). The chains
    move at ``ε_T = 0.04/κ̂`` until both convergence tests pass (after at least
    :data:`KRON_MIN_WINDOWS` windows of 100 steps) or at ``max_windows``, then settle at the
    draws' ``ε_D = 0.005/κ̂`` (at most ``step_cap``; the transport's step keeps the ratio) for
    :data:`KRON_SETTLE` steps and on until the energy has no trend (at most
    :data:`KRON_SETTLE_MAX_WINDOWS` windows): the transport's larger step leaves the chains hot
    by its O(ε) bias; a phase stopped at its cap leaves the warm-up not converged (the
    estimator warns). Nothing else is adapted: the metric follows the chains by construction.
    With ``num_steps`` the transport runs that many steps and the settling
    :data:`KRON_SETTLE`; with ``fixed_step`` both phases keep ``params.step_size``.
    """
    pos = state.position
    if fixed_step:
        eps_t = eps_d = params.step_size
    else:
        eps_d = min(kron_sgld.draw_step_size(_metric_curvature(chains, params, pos)), step_cap)
        eps_t = eps_d * kron_sgld.TRANSPORT_FACTOR / kron_sgld.DRAW_FACTOR
    moved = warmup(
        chains, kernel, replace(params, step_size=eps_t), state, adapt_step=False,
        num_steps=num_steps, min_windows=KRON_MIN_WINDOWS,
        max_windows=max(max_windows, KRON_MIN_WINDOWS), deadline=deadline, progress=progress,
        desc="transport",
    )  # fmt: skip
    settled = warmup(
        chains, kernel, replace(params, step_size=eps_d), moved.state, adapt_step=False,
        num_steps=KRON_SETTLE if num_steps is not None else None, carried=True,
        min_windows=KRON_SETTLE // 100, max_windows=KRON_SETTLE_MAX_WINDOWS, deadline=deadline,
        progress=progress, desc="settling",
    )  # fmt: skip
    record = {
        "kind": "kron_sgld", "steps": moved.num_steps, "converged": moved.converged,
        "settling_steps": settled.num_steps, "settled": settled.converged,
        "step_size": eps_t, "distance_before": round(mean_distance(pos, params.center), 4),
        "distance_after": round(mean_distance(moved.state.position, params.center), 4),
    }  # fmt: skip
    return replace(
        settled, converged=moved.converged and settled.converged, step_sizes=(eps_t, eps_d),
        transport=record,
        earlier=(replace(moved, state=None),),
    )  # fmt: skip


def _metric_curvature(chains, params, position) -> float:
    """The stiffest chain's κ̂ in kron_sgld's metric units, at ``position``."""
    gen = chains.randomness.aux
    vecs = torch.randn(position.shape, generator=gen, device=position.device, dtype=position.dtype)
    m = kron_sgld.metric(position, params)
    kappa, _ = scaled_curvature(
        chains, params, position, lambda v: apply_power(m, params.layers, v, -0.5), vecs, 20
    )
    return max(_stiffest(kappa, chains.alive()), 1e-12)
