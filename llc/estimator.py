"""The local learning coefficient estimator."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from . import sampler as _sampler
from ._chains import ChainRunner
from ._data import LossFn, resolve_objective
from ._functional import FlatModel
from ._hessian import check_loss
from ._warmup import choose_num_draws, warmup
from .diagnostics import ess, mcse, rhat
from .result import LLCResult

__all__ = ["estimate_llc"]

_SAMPLERS = {"sgld": "identity", "rmsprop_sgld": "rmsprop"}
DEFAULT_LOCALIZATION = 0.3
DEFAULT_BATCH = 512
MAX_DRAW_RESTARTS = 3  # warm-ups repeated at half the step after chains diverge in the draws
# work (chains · batch · d · steps) that caps the default warm-up and draws: about 20 s on
# 2 CPU cores for d = 2000, 8 chains, batch 512
WORK = 8e10


def _check_count(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_positive(name: str, value: object, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or (value < 0 if allow_zero else value <= 0):
        raise ValueError(
            f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value}"
        )
    return float(value)


def _chain_seeds(seed: int | torch.Generator, num_chains: int) -> list[int]:
    if isinstance(seed, torch.Generator):
        return torch.randint(0, 2**62, (num_chains,), generator=seed).tolist()
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    ss = np.random.SeedSequence(seed)
    return [
        int(s.generate_state(2, np.uint64)[0] >> np.uint64(2)) for s in ss.spawn(num_chains + 1)
    ]


def _precise(parts, nbeta: float, rel: float = 0.01) -> bool:
    """Whether the draws so far give an MCSE below ``rel`` of |λ̂| and R-hat ≤ 1.01."""
    ex = torch.cat([nbeta * (p.loss - p.loss_center) for p in parts], dim=1).cpu().numpy()
    ex = ex[np.isfinite(ex).all(axis=1)]
    if ex.size == 0:
        return True
    err = mcse(ex)
    return bool(np.isfinite(err) and err <= rel * abs(ex.mean()) and rhat(ex) <= 1.01)


def _selector(params) -> Callable[[str, torch.Tensor], bool] | None:
    """Turn ``params=`` (names, a predicate, modules or parameters) into a name predicate."""
    if params is None:
        return None
    if callable(params) and not isinstance(params, nn.Module):
        return lambda name, p: bool(params(name, p))
    if isinstance(params, str | nn.Module | nn.Parameter):
        params = [params]
    if not isinstance(params, Iterable):
        raise TypeError(
            "params must be parameter names, a predicate (name, param) -> bool, or modules"
        )
    names, ids = set(), set()
    for item in params:
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, nn.Module):
            ids.update(id(p) for p in item.parameters())
        elif isinstance(item, torch.Tensor):
            ids.add(id(item))
        else:
            raise TypeError(
                f"params entries must be names, modules or parameters, got {type(item).__name__}"
            )
    return lambda name, p: (
        name in names or id(p) in ids or any(name.startswith(n + ".") for n in names)
    )


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
) -> LLCResult:
    """Estimate the local learning coefficient of ``model`` at its current weights w*.

    Parameters
    ----------
    model : nn.Module
        The network at w*. It is called through :func:`torch.func.functional_call`; its
        parameters, buffers, ``requires_grad`` flags and train/eval mode are left untouched.
    data : (inputs, targets) tuple, TensorDataset or DataLoader
        The n training samples (a DataLoader's dataset is read once into memory).
    loss : {"mse", "cross_entropy", "behavioral"} or callable
        Per-sample loss. ``"mse"`` is ``½‖y − f(x)‖²`` summed over output dimensions; a callable
        maps ``(outputs, targets)`` to per-sample losses of shape ``(batch,)``. ``"behavioral"``
        is the divergence of the outputs from the reference network's outputs ``f_{w*}(x)`` on the
        same inputs (computed once); ``data`` may then be inputs alone.
    nbeta : float, optional
        Inverse temperature times n. Default ``n / log n`` (n the number of samples).
    step_size : float, optional
        SGLD step ε. Default: adapted in warm-up (see Notes).
    localization : float, optional
        γ, default 0.3 (see Notes).
    num_chains : int
        Independent chains, all advanced in one batched computation.
    num_draws, num_burnin : int, optional
        Draws kept per chain and warm-up steps. Default: chosen adaptively (see Notes). A given
        ``num_burnin`` runs exactly that many warm-up steps at the initial step size (ε₀ from
        the curvature at and around w*, or ``step_size``), without the per-window adaptation of
        ε, the metric and the noise compensation.
    batch_size : int, optional
        Minibatch size, default ``min(n, 512)``.
    sampler : {"sgld", "rmsprop_sgld"}
    seed : int or torch.Generator
        Seeds one generator per chain (minibatches and noise). Same seed, same result.
    device, dtype : optional
        Where and in what precision to sample (default: the model's).
    progress : bool
        Show a tqdm progress bar.
    chain_batch : int, optional
        Chains per vectorised call (default all; halved automatically on out-of-memory).
        Results do not depend on it.
    scheme : {"leimkuhler_matthews", "euler"}
        Noise discretisation of :mod:`llc.sampler`.
    params : optional
        Weight-refined LLC: the parameters to sample (names, a predicate ``(name, p) -> bool``,
        modules or parameter tensors); the others stay frozen at w*.
    max_draws : int, optional
        Upper bound on the adaptive number of draws. Default: a fixed amount of work,
        ``8·10¹⁰ / (chains · batch · d)`` draws, clipped to [4000, 25000] (cheap models run
        longer). The same amount of work, clipped to [2000, 10000] steps, caps the warm-up.
    precondition : bool
        With ``sampler="sgld"``, learn a fixed diagonal metric ``G_i ∝ 1/E[(∂_i U)²]`` during
        warm-up (frozen for the draws, so the target is unchanged); False samples with ``G = 1``.
    compensate_noise : bool
        With ``sampler="sgld"``, measure the minibatch gradient noise during warm-up and lower the
        injected noise by as much, so that minibatches do not heat the chains (see Notes).
    divergence : {"mse", "kl"}
        With ``loss="behavioral"``: ``½‖f_w(x) − f_{w*}(x)‖²`` or
        ``KL(softmax f_{w*}(x) ‖ softmax f_w(x))`` (classifiers).

    Returns
    -------
    LLCResult

    Notes
    -----
    The estimator [1]_ is ``λ̂ = nβ (E_w[L_n(w)] − L_n(w*))`` under the localised tempered
    posterior ``p(w) ∝ exp(−nβ L_n(w) − (γ/2)‖w − w*‖²)``, sampled by SGLD (:mod:`llc.sampler`).
    Each draw uses the control variate ``L_B(w) − L_B(w*)`` on the chain's own minibatch B, an
    unbiased estimate of ``L_n(w) − L_n(w*)`` whose minibatch noise largely cancels.

    Defaults (none needs tuning): ε starts at ``½/κ̂`` and is re-set after every 100-step warm-up
    window, κ̂ the largest curvature of the potential over the chains' current points (power
    iteration with Hessian-vector products). With ``precondition=True`` a fixed diagonal metric
    ``G_i ∝ 1/E[(∂_i U)²]`` is learned in warm-up: at equilibrium ``E[(∂_i U)²] = E[∂_i² U]``, so
    G evens out the relaxation rates of stiff and nearly flat coordinates. Warm-up ends when ε has
    settled, the trace shows no trend and the chains' distance from w* has levelled off (see
    :mod:`llc._warmup`), or at the work cap (``max_draws`` below); ``num_draws`` is then set so
    the projected Monte Carlo error is 1 % of λ̂ (at least 500), and doubled while the measured
    error is above that or R-hat exceeds 1.01, up to ``max_draws``. With the Leimkuhler–Matthews
    noise the stationary law is exact for quadratic directions at any stable ε.

    Minibatch noise: the gradient of a minibatch adds noise to every step, which heats the chain
    by ``h_i = ε nβ² G_i Var(∂_i L_B) / 4`` along coordinate i; with label noise this reached
    +11 % on small models. With ``compensate_noise=True`` warm-up measures ``Var(∇L_B)`` from
    pairs of minibatches at the chains' points and injects ``√(1 − h_i)`` times the noise, which
    restores the stationary energy of quadratic directions (:mod:`llc.sampler`); ``h`` is capped
    at 0.5 and its mean is reported in ``config["minibatch_heating"]``.

    Divergence: a chain that diverges in warm-up restarts at w* with ε halved. One that diverges
    in the draws with an adapted ε has met a region stiffer than warm-up saw: the draws stop,
    warm-up is repeated with ε at most half as large and the draws start afresh (at most
    ``MAX_DRAW_RESTARTS`` = 3 times, counted in ``config["draw_restarts"]``). A chain that still
    diverges is reported with a warning and left out; if every chain diverges, the call raises.

    References
    ----------
    .. [1] E. Lau, Z. Furman, G. Wang, D. Murfet, S. Wei, "The Local Learning Coefficient: A
       Singularity-Aware Complexity Measure", arXiv:2308.12108.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    first = next(iter(model.parameters()), None)
    if first is None:
        raise ValueError("model has no parameters")
    num_chains = _check_count("num_chains", num_chains)
    if sampler not in _SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(_SAMPLERS)}, got {sampler!r}")
    if step_size is not None:
        step_size = _check_positive("step_size", step_size)
    nbeta_given = nbeta is not None
    if nbeta is not None:
        nbeta = _check_positive("nbeta", nbeta)
    if localization is not None:
        localization = _check_positive("localization", localization, allow_zero=True)
    if num_draws is not None:
        num_draws = _check_count("num_draws", num_draws, 4)
    if num_burnin is not None:
        num_burnin = _check_count("num_burnin", num_burnin, 0)
    if batch_size is not None:
        batch_size = _check_count("batch_size", batch_size)
    if chain_batch is not None:
        chain_batch = _check_count("chain_batch", chain_batch)
    if max_draws is not None:
        max_draws = _check_count("max_draws", max_draws, 4)
    device = torch.device(device) if device is not None else first.device
    dtype = dtype or (first.dtype if first.is_floating_point() else torch.float32)
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    loss_fn, x, y, behavioral = resolve_objective(
        loss, divergence, data, device=device, dtype=dtype
    )
    n = x.shape[0]
    if nbeta is None:
        nbeta = n / math.log(n) if n > 1 else 1.0
    flat = FlatModel.from_module(model, select=_selector(params), device=device, dtype=dtype)
    if behavioral:  # the reference outputs f_{w*}(x), computed once
        with (
            torch.no_grad(),
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
        ):
            y = torch.cat([flat.forward(flat.center, x[i : i + 8192]) for i in range(0, n, 8192)])

    seeds = _chain_seeds(seed, num_chains)
    gens = [torch.Generator(device=device).manual_seed(s) for s in seeds[:num_chains]]
    aux = torch.Generator(device=device).manual_seed(
        seeds[-1] if len(seeds) > num_chains else seeds[0] + 1
    )
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # a model with dropout draws from the global RNG
        with torch.no_grad():
            probe = flat.forward(flat.center, x[:8])
        check_loss(loss_fn, probe, y[:8])  # one differentiable value per sample
        loss_center = flat.losses_at(flat.center, x, y, loss_fn)
        if not torch.isfinite(loss_center).all():
            raise ValueError("the loss at the model's current weights is not finite")
        runner = ChainRunner(
            flat,
            x,
            y,
            loss_fn,
            loss_center,
            gens,
            batch_size=batch_size or min(n, DEFAULT_BATCH),
            chain_batch=chain_batch,
        )
        try:
            config = _sampler.SGLDConfig(
                step_size=step_size or 1e-4,
                localization=DEFAULT_LOCALIZATION if localization is None else localization,
                nbeta=nbeta,
                scheme=scheme,
                preconditioner=_SAMPLERS[sampler],
            )
            state = _sampler.init(
                flat.center.expand(num_chains, -1).clone(),
                flat.center,
                runner.draw_noise(),
                config,
            )
            work = WORK / (num_chains * runner.batch_size * flat.dim)  # steps per chain
            if max_draws is None:
                max_draws = int(min(max(work, 4000), 25000))
            adaptive = step_size is None and num_burnin is None
            eps_cap, draw_restarts = math.inf, 0
            while True:
                warm = warmup(
                    runner,
                    state,
                    config,
                    adapt_step=step_size is None,
                    adapt_metric=precondition and sampler == "sgld",
                    compensate=compensate_noise,
                    num_steps=num_burnin,
                    max_windows=int(min(max(work, 2000), 10000)) // 100,
                    eps_cap=eps_cap,
                    gen=aux,
                    progress=progress,
                )
                config = warm.config
                retry = adaptive and draw_restarts < MAX_DRAW_RESTARTS
                draws = num_draws or choose_num_draws(warm, max_draws=max_draws)
                state, trace = runner.run(
                    warm.state,
                    draws,
                    config,
                    progress=progress,
                    desc="SGLD draws",
                    stop_on_divergence=retry,
                )
                parts = [trace]
                while (
                    num_draws is None
                    and draws < max_draws
                    and bool(runner.alive().all() or not retry)
                    and not _precise(parts, nbeta)
                ):
                    extra = min(draws, max_draws - draws)  # double until the MCSE target is met
                    state, trace = runner.run(
                        state,
                        extra,
                        config,
                        progress=progress,
                        desc="SGLD draws",
                        stop_on_divergence=retry,
                    )
                    parts.append(trace)
                    draws += extra
                dead = [c for c, d in enumerate(runner.diverged_at) if d is not None]
                if not (dead and retry):
                    break
                # A chain found a region stiffer than warm-up had seen, where ε is unstable:
                # warm up again with ε at most half as large (dead chains restart at w*, as the
                # runner left them) and draw afresh.
                eps_cap = 0.5 * config.step_size
                draw_restarts += 1
                runner.revive(dead)
        finally:
            runner.close()
    loss_t, loss_c, log_acc = (
        torch.cat([getattr(p, f) for p in parts], dim=1).cpu().numpy()
        for f in ("loss", "loss_center", "log_accept")
    )
    llc_trace = nbeta * (loss_t - loss_c)
    diverged = np.array([d is not None for d in runner.diverged_at])
    if diverged.all():
        raise RuntimeError(
            "every chain diverged (" + "; ".join(sorted(set(runner.diverged_why))) + "): "
            f"the step size ε = {config.step_size:.3g} is too large for this model; pass a smaller "
            "step_size, or a larger localization"
        )
    for c in np.flatnonzero(diverged):
        warnings.warn(
            f"chain {c} diverged at step {runner.diverged_at[c]} ({runner.diverged_why[c]}) and is "
            f"left out of the estimate; try a smaller step_size than {config.step_size:.3g}",
            RuntimeWarning,
            stacklevel=2,
        )
    per_chain = np.where(
        diverged, np.nan, np.nanmean(np.where(diverged[:, None], 0.0, llc_trace), axis=1)
    )
    good = llc_trace[~diverged]
    acc = np.exp(log_acc)
    mala = np.array([np.nanmean(a) if np.isfinite(a).any() else np.nan for a in acc])
    return LLCResult(
        mean=float(np.mean(per_chain[~diverged])),
        std=float(np.std(per_chain[~diverged], ddof=1)) if (~diverged).sum() > 1 else float("nan"),
        mcse=mcse(good),
        per_chain=per_chain,
        loss_trace=loss_t,
        llc_trace=llc_trace,
        init_loss=float(loss_center.double().mean()),
        nbeta=float(nbeta),
        step_size=float(config.step_size),
        localization=float(config.localization),
        batch_size=runner.batch_size,
        num_chains=num_chains,
        num_draws=draws,
        num_burnin=warm.num_steps,
        sampler=sampler,
        scheme=scheme,
        r_hat=rhat(good),
        ess=ess(good),
        mala_acceptance=mala,
        diverged=diverged,
        warmup_llc=warm.llc_trace,
        config={
            "n": n,
            "d": flat.dim,
            "seed": seed if isinstance(seed, int) else "generator",
            "step_size": "given" if step_size is not None else "adapted in warm-up (ε = 1/κ̂)",
            "step_size_history": warm.step_sizes,
            "num_burnin": "given" if num_burnin is not None else "until stationary",
            "warmup_converged": warm.converged,
            "warmup_restarts": warm.restarts,
            "draw_restarts": draw_restarts,
            "minibatch_heating": warm.heating,
            "num_draws": "given"
            if num_draws is not None
            else "until MCSE ≤ 1% of λ̂ (max_draws cap)",
            "localization": "given"
            if localization is not None
            else f"default {DEFAULT_LOCALIZATION}",
            "nbeta": "given" if nbeta_given else "n / log n",
            "loss": loss if isinstance(loss, str) else "callable",
            "divergence": divergence if behavioral else None,
            "chain_batch": runner.chain_batch,
            "metric": "diagonal, learned in warm-up"
            if warm.state.metric is not None
            else "identity",
            "params": list(flat.names),
            "device": str(device),
            "dtype": str(dtype),
        },
    )
