"""The local learning coefficient estimator: potential, kernel, warm-up and draws composed."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import fields, replace

import torch
from torch import nn

from ._advice import emit
from ._assemble import assemble
from ._budget import TIMED_BLOCK, Limits
from ._budget import limits as budget_limits
from ._carry import Carry, carried_positions, hand_over
from ._data import LossFn
from ._distributed import check_across_processes
from ._memory import PeakMemory, format_bytes, plan_chain_batch
from ._precision import check_precision
from ._precision import matmul_precision as precision_context
from .adaptation import draws
from .kernels import Kernel, evaluation_dtype, get_kernel
from .observables import LLCTrace, LossTrace, MALATrace
from .potential import Potential
from .result import LLCResult
from .sampling import Chains, progress_bar, run, values
from .settings import DEFAULT_BATCH, DEFAULT_LOCALIZATION, LLCSettings
from .streaming import Streamed, StreamedPotential, check_streamed_settings
from .transport import transport
from .warmup import WarmupResult, kron_warmup, spread, warmup

__all__ = ["DEFAULT_BATCH", "DEFAULT_LOCALIZATION", "LLCSettings", "estimate_llc"]

BACKENDS = ("llc", "devinterp")
MAX_DRAW_RESTARTS = 3  # warm-ups repeated at half the step after chains diverge in the draws
FALLBACK_STEP = 1e-4  # initial step when warm-up sets it from the curvature anyway
METRIC_INPUTS = 2048  # samples whose layer inputs give kron_sgld's input factors
CARRIED_WINDOWS = 4  # least warm-up windows for chains carried over from an earlier estimate
FIRST_WINDOWS = 10  # SGLD windows before the spreading phase: metric, step and noise scale
FIRST_TIMED_BLOCK = 100  # draws before the first look at the clock, with a time budget


def _kernel_params(kernel: Kernel, s: LLCSettings, nbeta: float, chains: Chains):
    gamma = DEFAULT_LOCALIZATION if s.localization is None else s.localization
    extra = {"scheme": s.scheme} if "scheme" in {f.name for f in fields(kernel.params)} else {}
    if kernel.name == "kron_sgld":
        extra.update(layers=chains.potential.layers, inputs=_metric_inputs(chains))
    step = s.step_size or FALLBACK_STEP
    center = chains.potential.center
    return kernel.params(step_size=step, localization=gamma, nbeta=nbeta, center=center, **extra)


def _metric_inputs(chains: Chains) -> torch.Tensor:
    """Up to ``METRIC_INPUTS`` samples' inputs, drawn once from the seed, for kron_sgld."""
    pot = chains.potential
    if not pot.layers:
        raise ValueError(
            "sampler='kron_sgld' needs a plain MLP (an nn.Sequential of nn.Linear layers and "
            "activations, every parameter sampled); this model takes the generic path"
        )
    gen = chains.randomness.aux
    idx = torch.randperm(pot.n, generator=gen, device=gen.device)[:METRIC_INPUTS]
    return pot.inputs[idx.to(pot.inputs.device)]


def _draw(chains, kernel, warm: WarmupResult, s, limits, retry, observables, plan_from):
    """Draw blocks until the draw-count rule is met (or a chain diverges, when ``retry``), at
    most ``limits.max_draws``, and with a time budget none after ``limits.draw_until``.

    The number is planned from ``plan_from`` (a previous estimate's trace) when given, else
    from the warm-up trace."""
    obs = [LLCTrace(), LossTrace(), MALATrace(), *observables]
    trace = warm.llc_trace if plan_from is None else plan_from
    plan = draws.init(trace, max_draws=limits.max_draws, num_draws=s.num_draws)
    state, accs, first = warm.state, None, chains.steps_done
    timed = limits.draw_until is not None and plan.adaptive
    # the bar's total is the draws planned so far; it grows when the rule asks for more
    bar = progress_bar(plan.next, "draws", s.progress)
    rate = None  # steps per second of the last timed block
    while plan.next:
        block = _block(plan.next, timed, rate, limits.draw_until)
        began = time.perf_counter()
        state, accs = run(
            chains, kernel, warm.params, state, block, obs,
            stop_on_divergence=retry, accs=accs, bar=bar,
        )  # fmt: skip
        rate = block / max(time.perf_counter() - began, 1e-9)
        llc = values(chains, obs[:1], accs[:1], first)["llc"]
        plan = draws.update(plan, llc[:, plan.total :])
        bar.total = plan.total + plan.next
        bar.refresh()
        if (retry and chains.diverged()) or (timed and time.perf_counter() >= limits.draw_until):
            break
    bar.close()
    return state, values(chains, obs, accs, first)


def _block(planned: int, timed: bool, rate: float | None, until: float | None) -> int:
    """Draws in the next block: all planned, or with a time budget at most what fits in the
    time left at the last block's rate (the first block is short: the rate is not known yet)."""
    if not timed:
        return planned
    if rate is None:
        return min(planned, FIRST_TIMED_BLOCK)
    fits = int(rate * (until - time.perf_counter()))
    return min(planned, TIMED_BLOCK, max(FIRST_TIMED_BLOCK, fits))


def _warm_params(params, start: Carry | None):
    """The previous metric and noise scale for the first warm-up window (both are re-learned
    after every window; the step is re-measured, see docs/design.md)."""
    if start is None:
        return params
    keep = {
        f.name: getattr(start.params, f.name)
        for f in fields(params)
        if f.name in ("metric", "noise_scale")
    }
    return replace(params, **keep)


def _sample(chains: Chains, kernel: Kernel, s: LLCSettings, nbeta: float, observables, start=None):
    """Warm-up and draws; repeated at half the step when a chain diverges in the draws.

    With ``start`` (a carry from an estimate at a nearby w*) warm-up begins with the previous
    metric and noise scale, the draws are planned from the previous trace, and the chains start
    where the previous ones ended when they fit the new potential (:mod:`llc._carry`); else at
    w*."""
    pot, rand = chains.potential, chains.randomness
    params = _warm_params(_kernel_params(kernel, s, nbeta, chains), start)
    carried, shift = carried_positions(start, chains, params)
    record = {"carried": carried is not None, "carry_shift_sd": shift}  # for the config
    begin = pot.center.expand(chains.num_chains, -1).clone() if carried is None else carried
    state = kernel.init(begin, rand.noise(), params)
    limits = budget_limits(
        chains.num_chains, rand.batch_size, pot.dim, budget=s.budget, max_draws=s.max_draws
    )
    cap, restarts = math.inf, 0
    while True:
        spreads = restarts == 0 and carried is None and _spreads(kernel, s)
        short = restarts == 0 and carried is not None  # a short warm-up for carried chains
        warm = _warm_up(chains, kernel, params, state, s, limits, cap, spreads, short)
        retry = s.adaptive and restarts < MAX_DRAW_RESTARTS
        plan_from = start.llc_trace if start is not None and restarts == 0 else None
        state, drawn = _draw(chains, kernel, warm, s, limits, retry, observables, plan_from)
        dead = chains.diverged()
        if not (dead and retry):
            return warm, drawn, restarts, state, record
        # a chain found a region stiffer than warm-up had seen: warm up again with the step at
        # most half as large (dead chains restart at w*, where the check left them), draw afresh
        params, cap, restarts = warm.params, 0.5 * warm.params.step_size, restarts + 1
        chains.revive(dead)


def _spreads(kernel: Kernel, s: LLCSettings) -> bool:
    """Whether warm-up has a spreading phase: SGLD with its step and metric adapted."""
    return s.spread and kernel.name == "sgld" and s.adaptive and s.precondition


def _warm_up(
    chains, kernel, params, state, s, limits: Limits, cap: float, spreads: bool, carried=False
):
    """Warm-up; with ``spreads``: SGLD for at most ``FIRST_WINDOWS`` windows (metric, step and
    noise scale), then the underdamped spreading phase, then SGLD again from where it left the
    chains (see :func:`llc.warmup.spread`); with ``carried``: the short warm-up of chains carried
    over from an earlier estimate (:func:`llc.warmup.warmup`)."""
    if kernel.name == "kron_sgld":
        return kron_warmup(
            chains, kernel, params, state, max_windows=limits.max_windows, step_cap=cap,
            num_steps=s.num_burnin, fixed_step=s.step_size is not None,
            deadline=limits.warm_until, progress=s.progress,
        )  # fmt: skip
    kw = dict(
        adapt_step=s.step_size is None, adapt_metric=s.precondition,
        compensate=s.compensate_noise, step_cap=cap, progress=s.progress,
    )  # fmt: skip
    if not spreads:
        until = limits.warm_until if s.num_burnin is None else None
        if carried:
            kw.update(carried=True, min_windows=CARRIED_WINDOWS)
        return warmup(chains, kernel, params, state, num_steps=s.num_burnin,
                      max_windows=limits.max_windows, deadline=until, **kw)  # fmt: skip
    first = warmup(
        chains, kernel, params, state, max_windows=FIRST_WINDOWS, deadline=limits.spread_until,
        **kw,
    )  # fmt: skip
    moved = spread(
        chains, first, max_windows=limits.max_windows, compensate=s.compensate_noise,
        deadline=limits.spread_until, progress=s.progress,
    )  # fmt: skip
    start = kernel.init(moved.state.position, chains.randomness.noise(), first.params)
    last = warmup(
        chains, kernel, first.params, start, max_windows=limits.max_windows, probe_start=False,
        deadline=limits.warm_until, **kw,
    )  # fmt: skip
    phases = (first, moved)
    pot = chains.potential
    if s.orbit_moves and pot.links:
        # from SGLD's relaxed chains (the spreading phase leaves them hot, and a move keeps a
        # chain's excess energy), then SGLD re-warmed where the moves left them
        carried = transport(
            last.state.position, pot.links, pot.center, last.params.localization,
            chains.randomness.aux, deadline=limits.warm_until, progress=s.progress,
        )  # fmt: skip
        start = kernel.init(carried.position, chains.randomness.noise(), last.params)
        phases += (last,)
        last = warmup(
            chains, kernel, last.params, start, max_windows=limits.max_windows, carried=True,
            min_windows=CARRIED_WINDOWS, deadline=limits.warm_until, **kw,
        )  # fmt: skip
        last = replace(last, transport=carried.record())
    # the earlier phases' states are spent: keep their records, not their (chain, D) tensors
    return replace(last, earlier=tuple(replace(e, state=None) for e in phases))


def estimate_llc(
    model: nn.Module,
    data,
    *,
    loss: str | LossFn = "mse",
    nbeta: float | None = None,
    step_size: float | None = None,
    localization: float | None = None,
    num_chains: int = 8,
    num_draws: int | None = None,
    num_burnin: int | None = None,
    batch_size: int | None = None,
    sampler: str = "sgld",
    seed: int | torch.Generator = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
    chain_batch: int | None = None,
    scheme: str = "leimkuhler_matthews",
    params=None,
    max_draws: int | None = None,
    divergence: str = "mse",
    precondition: bool = True,
    compensate_noise: bool = True,
    observables: Sequence = (),
    backend: str = "llc",
    vectorize: bool | str | None = None,
    num_threads: int | None = None,
    spread: bool = True,
    orbit_moves: bool = False,
    budget: float | None = None,
    matmul_precision: str | None = None,
    max_memory: int | str | None = None,
) -> LLCResult:
    """Estimate the local learning coefficient of ``model`` at its current weights w*.

    Parameters
    ----------
    model : nn.Module
        The network at w*. It is called through :func:`torch.func.functional_call`; its
        parameters, buffers, ``requires_grad`` flags and train/eval mode are left untouched.
    data : (inputs, targets) tuple, TensorDataset, DataLoader or Streamed
        The n training samples (a DataLoader's dataset is read once into memory; wrapped in
        :class:`llc.Streamed`, batches are read one at a time and shared by all chains:
        :mod:`llc.streaming`). Inputs may be
        a dict of tensors, passed to the model as keyword arguments. With ``loss="next_token"``:
        token ids ``(n, seq)``, or ``{"input_ids": ..., "attention_mask": ...}``.
    loss : {"mse", "cross_entropy", "next_token", "behavioral"} or callable
        Per-sample loss (see :class:`llc.Potential`). ``"mse"`` is ``½‖y − f(x)‖²`` summed over
        output dimensions; ``"next_token"`` a language model's mean next-token cross-entropy
        per sequence, padding not counted (:mod:`llc.language`); a callable maps
        ``(outputs, targets)`` to per-sample losses of shape ``(batch,)``. ``"behavioral"`` is
        the divergence of the outputs from the reference network's outputs ``f_{w*}(x)``;
        ``data`` may then be inputs alone. ``"cross_entropy"`` takes logits ``(n, C)`` and
        class indices ``(n,)`` in ``[0, C)`` of any integer dtype (or class probabilities
        shaped like the logits). Torch's ignore index −100 is refused: every sample counts in n
        (``nβ = n / log n``), so unlabelled samples must be left out of ``data`` instead.
    nbeta : float, optional
        Inverse temperature times n. Default ``n / log n`` (n the number of samples).
    step_size : float, optional
        The kernel's step (ε for SGLD). Default: adapted in warm-up (see Notes).
    localization : float, optional
        γ, default 0.3 (see Notes).
    num_chains : int
        Independent chains, all advanced in one batched computation.
    num_draws, num_burnin : int, optional
        Draws kept per chain and warm-up steps. Default: chosen adaptively (see Notes). A given
        ``num_burnin`` runs exactly that many warm-up steps at the initial step size (from the
        curvature at and around w*, or ``step_size``), without adapting anything.
    batch_size : int, optional
        Minibatch size, default ``min(n, 512)``.
    sampler : {"sgld", "rmsprop_sgld", "sgnht", "kron_sgld"}
        The kernel (:mod:`llc.kernels`). ``"kron_sgld"`` moves each layer of a plain MLP with
        a Kronecker metric built from the other layers (:mod:`llc.kernels.kron_sgld`): it
        crosses the funnel of a deep network's posterior that SGLD cannot (on
        ``python -m llc validate --large``, seed 0: +0.6 to +2.6 % against the exact λ_n on
        four DLNs where SGLD is −1.4 to −9.2 %), at 3–5× the cost per step, in float64. It
        is an option: its calls take 2.5–7 minutes there, against under one minute for SGLD.
        Its warm-up is :func:`llc.warmup.kron_warmup`.
    seed : int or torch.Generator
        Seeds one generator per chain (minibatches and noise). Same seed, same result.
    device, dtype : optional
        Where and in what precision to sample (default: the model's; float64 with
        ``sampler="kron_sgld"``: a deep network's posterior can be narrower than float32's
        spacing in its stiff directions, and float32 evaluations there heat the chains).
    progress : bool
        Show tqdm progress bars.
    chain_batch : int, optional
        Chains per vectorised call (default all; halved automatically on out-of-memory).
        Results do not depend on it.
    scheme : {"leimkuhler_matthews", "euler"}
        Noise discretisation of the Langevin kernels (:mod:`llc.kernels.sgld`).
    params : optional
        Weight-refined LLC: the parameters to sample (names, a predicate ``(name, p) -> bool``,
        modules or parameter tensors), or ``{name: boolean mask}`` over entries (one attention
        head: :func:`llc.param_masks`); the rest stays frozen at w*. A name that matches no
        parameter raises, listing the model's names and the closest one. Default: every
        parameter, including those with ``requires_grad=False`` (a training flag, not part of
        the model's function; a warning says so when only some are frozen). To sample the
        trainable ones only, pass ``params=lambda name, p: p.requires_grad``.
    max_draws : int, optional
        Upper bound on the adaptive number of draws. Default: a fixed amount of work,
        ``8·10¹⁰ / (chains · batch · d)`` draws, clipped to [4000, 25000] (cheap models run
        longer). The same amount of work, clipped to [2000, 10000] steps, caps each phase
        of warm-up. With ``budget`` the default is 10⁶ draws, out of reach: time ends them.
    divergence : {"mse", "kl"}
        With ``loss="behavioral"``: ``½‖f_w(x) − f_{w*}(x)‖²`` or
        ``KL(softmax f_{w*}(x) ‖ softmax f_w(x))`` (classifiers: at least two outputs; checked
        whatever the loss).
    precondition : bool
        With ``sampler="sgld"``, learn a fixed diagonal metric ``G_i ∝ 1/E[(∂_i U)²]`` during
        warm-up (frozen for the draws, so the target is unchanged); False samples with ``G = 1``.
    compensate_noise : bool
        With ``sampler="sgld"``, measure the minibatch gradient noise during warm-up and lower the
        injected noise by as much, so that minibatches do not heat the chains (see Notes).
    observables : sequence of observables, optional
        Further quantities to record over the draws (:mod:`llc.observables`), returned in
        ``result.observables`` by name.
    backend : {"llc", "devinterp"}
        ``"llc"``: this package's batched engine. ``"devinterp"``: devinterp's ``SGMCMC``
        optimizer, one chain after another (the reference implementation, and the path for
        models the batched engine cannot vectorise); needs the ``devinterp`` extra. See
        :mod:`llc.devinterp_backend`.
    vectorize : bool or "timed", optional
        Evaluate all chains in one vmapped pass (True) or one after another with plain
        autograd (False). Default: decided from the model and the batch size, one after another
        for a model on the generic path that, on the CPU, calls a convolution (batched, a
        convolution becomes a grouped one, 1.5–2× slower) or attention on large tensors (over
        ``llc._execution.ATTENTION_CALL_SIZE`` elements per call; batched, attention is written
        out as matmuls, up to 1.35× slower than torch's fused kernel one chain at a time),
        batched otherwise; the observables' probe losses follow the same rule.
        ``config["execution"]`` says which and why. ``"timed"``: time both ways on the first
        steps and keep the faster; the two differ
        in float rounding only, so a timed run is reproducible up to rounding, not bitwise.
    num_threads : int, optional
        Torch's intra-op threads while sampling, in the calling thread only (restored after).
        Default on the CPU: batched, every half second the cores that other processes left
        free over the last half second, at most ``torch.get_num_threads()`` (on a shared
        machine a parallel operation waits for its descheduled threads: a 288-parameter DLN
        beside four busy processes ran 4.6× slower on two threads than on one); one chain after
        another, ``torch.get_num_threads()`` (convolutions round differently with the count,
        and the bits must not depend on the load). ``config["num_threads"]`` lists the counts
        used.
    spread : bool
        With ``sampler="sgld"`` and an adapted step, metric and warm-up length, give warm-up a
        spreading phase of underdamped Langevin dynamics (see Notes). False: SGLD throughout,
        as in earlier releases (λ̂ of deep networks up to 6 % lower; ``docs/design.md``).
    orbit_moves : bool
        With the spreading phase, on a plain MLP with consecutive linear layers joined by the
        identity (a deep linear network): after SGLD's warm-up, carry the chains along the
        orbits on which the loss is constant (``W_l → A W_l``, ``W_{l+1} → W_{l+1} A⁻¹``;
        :mod:`llc.transport`), then warm SGLD up again where they arrive. It reduces the low
        bias of deep networks (DLN 60x6 and 70x7: −4.8 % and −5.9 % against λ_n, −6.1 % and
        −9.2 % without), but the chains then disagree (R-hat up to 1.9 on the validation
        suite), and sampled in each chain's own frame the same chains give the value from
        before the moves, so the gain is not understood; it is not the default
        (``docs/design.md``). No effect on other models.
    budget : float, optional
        Seconds for warm-up and draws together, in place of the work cap (see ``max_draws``):
        the spreading phase may run to a third of it, warm-up to two thirds, the draws to the
        end, each phase stopping earlier when its tests pass (draws: the MCSE and R-hat rule).
        A faster device then runs more steps, so the result depends on its speed as well as
        on the seed; ``config["num_burnin"]`` and the result's step counts say what ran.
        Default: the work cap, which depends on the seed alone.
    matmul_precision : {"highest", "high", "medium"}, optional
        torch's float32 matmul precision (:func:`torch.set_float32_matmul_precision`) during
        the call's evaluations, restored after each: strict fp32, TF32 on CUDA (where the
        hardware has it), or bf16 products with fp32 accumulation (CUDA, and CPUs with bf16
        matrix units). Default: the caller's setting, untouched. Parameters, losses, their
        differences and the update stay in ``dtype``. Precision matters most in the control
        variate ``L_B(w) − L_B(w*)``: two nearly equal numbers, each with a relative rounding
        error of about 2⁻⁸ per bf16 product (2⁻¹¹ for TF32), so that the draws' λ̂ carries
        ``nβ`` times the part of that error that does not cancel between w and w*.
        ``config["matmul_precision"]`` records it.
    max_memory : int or str, optional
        A budget in bytes, or a size such as ``"2GiB"``, for the chains evaluated at once: the
        largest ``chain_batch`` whose gradient and Hessian-vector product (forward and backward
        of that many chains on a minibatch) create at most this much, measured before sampling
        at one and at two chains; too small for one chain raises. What the chains hold between
        evaluations (positions, the kernel's state, noise buffers: tens of ``(chain, D)``
        tensors) is not chunked and comes on top; ``peak_memory`` in the result is the whole.
        Not with ``chain_batch``. A model that draws dropout masks then depends on the chosen
        ``chain_batch``, as it does on a given one.

    Returns
    -------
    LLCResult

    Raises
    ------
    ValueError, TypeError
        For an argument out of range or of the wrong type, naming it: data the model cannot be
        called on, targets that do not fit the loss, a device that is not available here,
        BatchNorm in train mode (call ``model.eval()``).
    RuntimeError
        If every chain diverges.

    Notes
    -----
    The model is never changed, even while a call runs: it is evaluated through a private view
    of its module tree (sharing its tensors), so calls from several threads on one model give
    the results of the same calls made one after another. A model that draws from torch's
    global RNG (dropout in train mode) is sampled by one thread at a time.

    The estimator [1]_ is ``λ̂ = nβ (E_w[L_n(w)] − L_n(w*))`` under the localized tempered
    posterior ``p(w) ∝ exp(−nβ L_n(w) − (γ/2)‖w − w*‖²)``. Each draw uses the control variate
    ``nβ (L_B(w) − L_B(w*))`` on the chain's own minibatch B, an unbiased estimate of
    ``nβ (L_n(w) − L_n(w*))`` whose minibatch noise largely cancels.

    Defaults (none needs tuning; :mod:`llc.warmup` and :mod:`llc.adaptation`): the step starts
    from the largest curvature κ̂ of the potential (SGLD: ``ε = ½/κ̂``) and is re-set after every
    100-step warm-up window at the chains' current points. With ``precondition=True`` a fixed
    diagonal metric is learned. Warm-up ends when the step has settled, the trace shows no trend
    and the chains' distance from w* has levelled off, or at the work cap. With ``spread=True``
    warm-up has three phases: SGLD for at most 10 windows (step, metric, noise scale), then
    underdamped Langevin dynamics with that metric as its mass (:mod:`llc.kernels.underdamped`,
    ``h = ½/√κ̂`` re-set every window, friction 5) until its own tests pass or the cap, then SGLD
    again from where it left the chains, until the tests pass or the cap. Along a direction
    held only by the localization SGLD relaxes in about ``1/(εγ)`` steps, underdamped dynamics
    in about ``ζ/(hγ)``: hundreds of times fewer on deep networks, whose posterior spreads far
    along such directions (DLN 20×6: ``‖w − w*‖ ≈ 52`` under the exact Gibbs sampler, 12 after
    SGLD's capped warm-up, 25 after the spreading phase). The draws are SGLD's: wherever the
    chains are, its stiff directions equilibrate within a few steps. The draws continue
    until the Monte Carlo standard error is 1 % of λ̂ and R-hat ≤ 1.01, up to ``max_draws``.

    Minibatch noise heats the chain by ``h_i = ε nβ² G_i Var(∂_i L_B) / 4`` along coordinate i.
    With ``compensate_noise=True`` warm-up measures ``Var(∇L_B)`` and injects ``√(1 − h_i)``
    times the noise (h capped at 0.5; its mean is ``config["minibatch_heating"]``).

    Diverging chains: a chain that diverges in warm-up restarts at w* with the step halved. One that
    diverges in the draws with an adapted step has met a region stiffer than warm-up saw: the
    draws stop, warm-up is repeated with the step at most half as large and the draws start
    afresh (at most 3 times, counted in ``config["draw_restarts"]``). A chain that still diverges
    is reported with a warning and left out; if every chain diverges, the call raises. Every
    step's loss is checked: no chain with a non-finite draw enters the statistics.

    References
    ----------
    .. [1] E. Lau, Z. Furman, G. Wang, D. Murfet, S. Wei, "The Local Learning Coefficient: A
       Singularity-Aware Complexity Measure", arXiv:2308.12108.
    """
    s = LLCSettings(
        nbeta, step_size, localization, num_chains, num_draws, num_burnin, batch_size, sampler,
        seed, progress, chain_batch, scheme, max_draws, precondition, compensate_noise,
        vectorize, num_threads, spread, orbit_moves, budget, max_memory,
    )  # fmt: skip
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    check_precision(matmul_precision)
    if backend == "devinterp":
        from .devinterp_backend import estimate_devinterp

        with precision_context(matmul_precision):  # devinterp's own steps too
            result = estimate_devinterp(
                model, data, s, loss=loss, params=params, device=device, dtype=dtype,
                observables=observables, divergence=divergence,
                matmul_precision=matmul_precision,
            )  # fmt: skip
        emit(result)
        return result
    dtype = evaluation_dtype(s.sampler, dtype)
    if isinstance(data, Streamed):
        check_streamed_settings(batch_size, observables)
        pot = StreamedPotential(
            model, data, loss=loss, params=params, device=device, dtype=dtype,
            matmul_precision=matmul_precision,
        )  # fmt: skip
    else:
        pot = Potential(
            model, data, loss=loss, params=params, divergence=divergence, device=device,
            dtype=dtype, matmul_precision=matmul_precision,
        )  # fmt: skip
    if params is None:
        _warn_frozen(model)
    return _estimate(pot, s, tuple(observables))[0]


def _warn_frozen(model: nn.Module, stacklevel: int = 3) -> None:
    """Some but not all parameters frozen: say that they are sampled all the same."""
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    if frozen and len(frozen) < len(list(model.parameters())):
        shown = ", ".join(frozen[:3]) + (", …" if len(frozen) > 3 else "")
        warnings.warn(
            f"{len(frozen)} parameters have requires_grad=False ({shown}) and are sampled like "
            "the others (params=None samples every parameter); to sample the trainable ones "
            "only, pass params=lambda name, p: p.requires_grad",
            UserWarning,
            stacklevel=stacklevel,
        )


def _estimate(
    pot: Potential, s: LLCSettings, observables=(), start=None, stacklevel: int = 4, hand=False
):
    """``(LLCResult, Carry or None)`` for the potential; ``start`` warm-starts from a nearby
    estimate, and with ``hand`` the result comes with what the next one needs."""
    kernel = get_kernel(s.sampler)
    nb = s.nbeta or (pot.n / math.log(pot.n) if pot.n > 1 else 1.0)
    batch = s.batch_size or getattr(pot, "batch_size", None) or min(pot.n, DEFAULT_BATCH)
    chains = Chains.from_seed(
        pot, s.num_chains, seed=s.seed, batch_size=batch, chain_batch=s.chain_batch,
        vectorize=s.vectorize, num_threads=s.num_threads,
    )  # fmt: skip
    if chains.shards is not None:
        check_across_processes(s.budget, s.vectorize)
    # a model with dropout draws from the global RNG: fork it, and seed it from `seed`
    with pot.model_rng(chains.randomness.aux.initial_seed()), chains:
        memory = _plan_memory(chains, s)
        began = time.perf_counter()
        with PeakMemory(pot.device) as meter:
            warm, drawn, restarts, last, record = _sample(chains, kernel, s, nb, observables, start)
        record["sampling_seconds"] = time.perf_counter() - began
        carry = hand_over(chains, warm.params, drawn["llc"], last.position) if hand else None
    record["memory"] = {"peak": format_bytes(meter.peak), "measure": meter.measure, **memory}
    result = assemble(chains, kernel, s, nb, warm, drawn, restarts, record, meter.peak)
    emit(result, stacklevel=stacklevel)  # warnings point at the caller's line
    return result, carry


def _plan_memory(chains: Chains, s: LLCSettings) -> dict:
    """Set ``chain_batch`` under ``max_memory`` (if given); how it was chosen, for the config."""
    if s.max_memory is None:
        return {}
    plan = plan_chain_batch(chains, s.max_memory)
    chains.chain_batch = plan.chain_batch
    return plan.describe()
