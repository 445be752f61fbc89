"""devinterp as a backend of :func:`llc.estimate_llc`: its ``SGMCMC`` optimizer, chain by chain.

>>> res = llc.estimate_llc(model, (x, y), backend="devinterp")  # doctest: +SKIP

``backend="devinterp"`` runs the chains as devinterp's users do: one chain after another, each on
its own deep copy of the model, with devinterp's ``SGMCMC.sgld`` (or ``SGMCMC.rmsprop_sgld``)
optimizer stepping the copy's parameters after an ordinary ``loss.backward()``. It is the
reference implementation the batched engine is checked against, and the path for models whose
forward pass :func:`torch.func.vmap` cannot vectorise (the model is only ever called as a
module, on one minibatch at a time).

Data, n, the named losses, the parameter selection and ``L_n(w*)`` come from
:class:`llc.Potential`, so both backends read the same samples and evaluate the same loss.
The step size, warm-up length and number of draws are not adapted: devinterp's optimizer takes
a fixed step (see :func:`estimate_devinterp`).
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import torch
from tqdm.auto import tqdm

from ._data import take
from ._functional import model_output
from ._precision import describe_precision
from ._randomness import chain_seeds
from .diagnostics import ess, mcse, rhat
from .kernels import get_kernel
from .kernels.rmsprop_sgld import RMSpropSGLDParams
from .potential import Potential
from .result import LLCResult
from .sampling import CHECK_EVERY, Chains
from .settings import DEFAULT_BATCH, DEFAULT_LOCALIZATION, LLCSettings
from .warmup import initial_step_size

__all__ = [
    "DEFAULT_BURNIN",
    "DEFAULT_DRAWS",
    "SAMPLERS",
    "default_step_size",
    "estimate_devinterp",
]

DEFAULT_BURNIN = 1000  # burn-in steps per chain when num_burnin is not given
DEFAULT_DRAWS = 2000  # kept draws per chain when num_draws is not given
SAMPLERS = ("sgld", "rmsprop_sgld")
# RMSprop's decay and stability constant (devinterp's defaults, as llc.kernels.rmsprop_sgld's)
RMSPROP_ALPHA = RMSpropSGLDParams.alpha
RMSPROP_EPS = RMSpropSGLDParams.eps
INSTALL = 'pip install "slt-interp[devinterp]"'


def _sgmcmc():
    try:
        from devinterp.optim import SGMCMC
    except ImportError as exc:
        raise ImportError(
            f"backend='devinterp' needs the devinterp package, an optional extra: {INSTALL}"
        ) from exc
    return SGMCMC


class _LoopedChains(Chains):
    """:class:`llc.sampling.Chains` whose ``L_B``, ``∇L_B`` and Hessian-vector products are
    taken one chain at a time with plain autograd (no ``vmap``), so that the curvature rule of
    :mod:`llc.warmup` serves models the batched engine cannot vectorise."""

    def _loss(self, w: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        pot = self.potential
        x, y = take(pot.inputs, idx), pot.targets[idx]
        return pot.flat_model.per_sample_loss(w, x, y, pot.loss_fn).mean()

    def value_and_grad(self, position, idx):
        losses, grads = [], []
        for w, i in zip(position, idx):
            w = w.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = self._loss(w, i)
                (g,) = torch.autograd.grad(loss, w)
            losses.append(loss.detach())
            grads.append(g)
        return torch.stack(losses), torch.stack(grads)

    def hvp(self, position, vecs, idx):
        out = []
        for w, v, i in zip(position, vecs, idx):
            w = w.detach().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(self._loss(w, i), w, create_graph=True)
                (hv,) = torch.autograd.grad(g @ v, w)
            out.append(hv)
        return torch.stack(out)


def default_step_size(
    potential: Potential,
    *,
    nbeta: float,
    localization: float,
    num_chains: int = 8,
    batch_size: int | None = None,
    seed: int = 0,
    sampler: str = "sgld",
) -> tuple[float, float]:
    """The fixed step ε for devinterp's optimizer, and the curvature κ̂ it comes from.

    Parameters
    ----------
    potential : Potential
    nbeta, localization : float
        nβ and γ of the target.
    num_chains : int
        Power iterations run from this many random starts (the largest κ̂ counts).
    batch_size : int, optional
        Minibatch of the Hessian-vector products, default ``min(n, 512)``.
    seed : int
        Seeds the random starts and minibatches.
    sampler : {"sgld", "rmsprop_sgld"}

    Returns
    -------
    step_size, curvature : float

    Notes
    -----
    κ̂ is the largest eigenvalue of ``nβ ∇²L_B(w) + γ I`` over w* and points around it whose
    excess energy ``nβ (L − L*)`` is about d/4, typical of the posterior, found by power
    iteration, exactly as warm-up starts in :func:`llc.warmup.initial_step_size`. Hessian-vector
    products are taken one chain at a time with autograd, so any model the backend can run works.

    devinterp's step [1]_ ::

        Δw = −(ε/2) G (nβ ∇L_B(w) + γ (w − w*)) + √(ε G) ξ,   ξ ~ N(0, I)

    is the Euler step of :mod:`llc.kernels.sgld` with the same ε (G = 1 for ``"sgld"``). The
    rule is that kernel's ``ε = ½/κ̂``: the stiffest direction relaxes by ``εκ̂/2 = 1/4`` per
    step, far inside Euler's stability bound ``εκ̂ < 4``. RMSprop's metric
    ``G = 1/(eps + √V)`` is at most ``1/eps`` (10 for devinterp's ``eps = 0.1``) and is near it
    at w*, where the gradients vanish, so for ``"rmsprop_sgld"`` the step is ``eps·½/κ̂``.

    References
    ----------
    .. [1] E. Lau, Z. Furman, G. Wang, D. Murfet, S. Wei, "The Local Learning Coefficient: A
       Singularity-Aware Complexity Measure", arXiv:2308.12108.
    """
    kernel = get_kernel("sgld")
    params = kernel.params(
        step_size=1.0, localization=localization, nbeta=nbeta, center=potential.center,
        scheme="euler",
    )  # fmt: skip
    batch = batch_size or min(potential.n, DEFAULT_BATCH)
    with _LoopedChains.from_seed(potential, num_chains, seed=seed, batch_size=batch) as chains:
        gen, center = chains.randomness.aux, potential.center
        vecs = torch.randn(
            (num_chains, potential.dim), generator=gen, device=center.device, dtype=center.dtype
        )
        with potential.isolated_rng(seed):
            eps, _ = initial_step_size(chains, kernel, params, vecs, gen)
    kappa = kernel.stable_step_size(1.0) / eps
    if sampler == "rmsprop_sgld":
        eps *= RMSPROP_EPS
    return float(eps), float(kappa)


def _check(s: LLCSettings, observables) -> None:
    if s.sampler == "sgnht":
        raise ValueError(
            "the devinterp backend has no SGNHT: devinterp 2.0's SGMCMC.sgnht computes its "
            "thermostat term but never applies it (it steps as SGLD with scaled noise); use "
            f"sampler='sgnht' with backend='llc', or one of {SAMPLERS}"
        )
    if s.sampler not in SAMPLERS:
        raise ValueError(f"the devinterp backend's sampler must be one of {SAMPLERS}")
    if tuple(observables):
        raise ValueError(
            "observables are not supported by the devinterp backend (it records the loss and "
            "the LLC trace only); use backend='llc'"
        )
    if s.budget is not None:
        raise ValueError(
            "budget is not supported by the devinterp backend (its steps are fixed: pass "
            "num_burnin and num_draws); use backend='llc'"
        )
    if s.max_memory is not None:
        raise ValueError(
            "max_memory is not supported by the devinterp backend (it runs one chain at a "
            "time); use backend='llc'"
        )


def _module(model: torch.nn.Module, pot: Potential) -> tuple[torch.nn.Module, list, list | None]:
    """A deep copy of ``model`` on the potential's device and dtype, its selected parameters
    (the only ones that need gradients) and, for entry masks, one float mask per parameter."""
    chain = copy.deepcopy(model).to(device=pot.device, dtype=pot.dtype)
    named = dict(chain.named_parameters())
    chosen = set(pot.names)
    for name, p in named.items():
        p.requires_grad_(name in chosen)
    params = [named[name] for name in pot.names]
    entries = pot.flat_model.entries
    if not entries:
        return chain, params, None
    masks = []
    for name, p in zip(pot.names, params):
        mask = torch.ones(p.numel(), device=p.device)
        if name in entries:
            mask = torch.zeros_like(mask).index_fill_(0, entries[name].to(p.device), 1.0)
        masks.append(mask.view(p.shape))
    return chain, params, masks


def _optimizer(params, masks, s: LLCSettings, step: float, nbeta: float, gamma: float):
    SGMCMC = _sgmcmc()
    kw = dict(lr=step, nbeta=nbeta, localization=gamma, mask=masks)
    if s.sampler == "rmsprop_sgld":
        kw.update(alpha=RMSPROP_ALPHA, eps=RMSPROP_EPS)
    with warnings.catch_warnings():  # its warning about nβ = 1 (n = 1) is no news here
        warnings.filterwarnings("ignore", message="nbeta set to 1")
        return getattr(SGMCMC, s.sampler)(params, **kw)


def _run_chain(model, pot, s, step, nbeta, gamma, batch, steps, gen, bar):
    """One chain of ``steps`` steps from w*: ``(L_B(w_t), L_B(w*))`` per step, shape (steps,)
    each, NaN after a divergence, and ``(step, why)`` of the divergence or None."""
    module, params, masks = _module(model, pot)
    opt = _optimizer(params, masks, s, step, nbeta, gamma)
    dev = pot.device
    loss_t = torch.full((steps,), math.nan, dtype=torch.float64, device=dev)
    center_t = torch.full((steps,), math.nan, dtype=torch.float64, device=dev)
    full = torch.arange(pot.n, device=dev)
    diverged, start = None, 0
    for t in range(steps):
        idx = full if batch >= pot.n else torch.randint(pot.n, (batch,), generator=gen, device=dev)
        x = take(pot.inputs, idx)
        out = model_output(module(**x) if isinstance(x, dict) else module(x))
        loss = pot.loss_fn(out, pot.targets[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step(noise_generator=gen)
        loss_t[t] = loss.detach()
        center_t[t] = pot.center_losses[idx].mean()
        if (t + 1) % CHECK_EVERY == 0 or t + 1 == steps:
            diverged = _divergence(loss_t[start : t + 1], center_t[start : t + 1], nbeta, pot)
            bar.update(t + 1 - start)
            if diverged is not None:
                loss_t[start:] = math.nan
                diverged = (start, diverged)
                bar.update(steps - t - 1)
                break
            start = t + 1
    return loss_t.cpu().numpy(), center_t.cpu().numpy(), diverged


def _divergence(loss, center, nbeta: float, pot: Potential) -> str | None:
    """Why the chain diverged over these steps (as :meth:`llc.sampling.Chains.check`), or None."""
    if not bool(torch.isfinite(loss).all()):
        return "non-finite loss or parameters"
    # λ ≤ D/2, so an excess energy a hundredfold beyond that means the chain has run away
    if bool((nbeta * (loss - center) > 100.0 * pot.dim + 1e4).any()):
        return "loss ran away (nβ·(L − L*) > 100·d)"
    return None


def estimate_devinterp(
    model: torch.nn.Module,
    data,
    settings: LLCSettings,
    *,
    loss="mse",
    params=None,
    device=None,
    dtype=None,
    observables=(),
    divergence: str = "mse",
    matmul_precision: str | None = None,
) -> LLCResult:
    """The LLC from devinterp's ``SGMCMC`` optimizer, one chain after another.

    Called by :func:`llc.estimate_llc` with ``backend="devinterp"``; the arguments are its own.

    Parameters
    ----------
    model : nn.Module
        The network at w*. Each chain steps its own deep copy; the model, its ``requires_grad``
        flags, its train/eval mode and torch's global RNG state are left as they were.
    data, loss, params, device, dtype, divergence
        As :class:`llc.Potential` (``params`` may select parameters or, through devinterp's
        ``mask``, entries of them).
    settings : LLCSettings
        ``sampler`` ``"sgld"`` (``SGMCMC.sgld``) or ``"rmsprop_sgld"`` (``SGMCMC.rmsprop_sgld``,
        ``alpha = 0.99``, ``eps = 0.1``). Defaults: ``step_size`` from the curvature
        (:func:`default_step_size`), ``num_burnin`` 1000, ``num_draws`` 2000 (at most
        ``max_draws``), ``nbeta`` ``n / log n``, ``localization`` 0.3, ``batch_size``
        ``min(n, 512)``. ``scheme``, ``precondition``, ``compensate_noise`` and ``chain_batch``
        do not apply (devinterp's step is Euler's, without a learned metric or noise
        compensation, and chains run one at a time); ``config`` says so.
    observables : sequence
        Must be empty: this backend records the loss and the LLC trace only.

    Returns
    -------
    LLCResult
        With ``scheme="euler"``, ``mala_acceptance`` all NaN (no paired steps) and
        ``config["backend"] == "devinterp"``.

    Raises
    ------
    ImportError
        devinterp is not installed (``pip install "slt-interp[devinterp]"``).
    ValueError
        ``sampler="sgnht"`` (devinterp 2.0's SGNHT never applies its thermostat), or observables.
    RuntimeError
        Every chain diverged.

    Notes
    -----
    The estimator is the one of :func:`llc.estimate_llc`, ``λ̂ = nβ (E_w[L_n(w)] − L_n(w*))``
    under ``p(w) ∝ exp(−nβ L_n(w) − (γ/2)‖w − w*‖²)``. At each step t a chain draws a minibatch
    B_t (with replacement, from its own generator), evaluates ``L_{B_t}(w_t)``, and devinterp's
    optimizer moves it by ::

        w_{t+1} = w_t − (ε/2) G (nβ ∇L_{B_t}(w_t) + γ (w_t − w*)) + √(ε G) ξ_t

    (G = 1 for SGLD; ξ_t from the chain's generator through ``noise_generator``). The trace
    holds the control variate ``nβ (L_{B_t}(w_t) − L_{B_t}(w*))`` on the same minibatch, an
    unbiased estimate of ``nβ (L_n(w_t) − L_n(w*))``, as the batched engine records it (devinterp's
    own ``llc`` subtracts the full-data ``L_n(w*)`` instead, the same mean with more noise). λ̂ is
    the mean over the kept draws of every chain that did not diverge; MCSE, R-hat and ESS come
    from :mod:`llc.diagnostics`. With ``scheme="euler"``, ``precondition=False`` and
    ``compensate_noise=False`` the batched engine runs the same Markov chain, so both backends
    agree within Monte Carlo error (``tests/llc/test_devinterp_backend.py``).

    Seeds: :func:`llc._randomness.chain_seeds` gives one seed per chain (its minibatches and
    noise) and one for the step-size rule and the model's own random draws (dropout), which run
    inside :func:`torch.random.fork_rng`. Same seed, same result.

    A chain whose loss becomes non-finite, or whose excess energy ``nβ (L_B − L_B(w*))`` exceeds
    ``100·d + 10⁴`` (checked every 25 steps), is stopped, reported with a warning and left out;
    if every chain diverges the call raises.

    References
    ----------
    .. [1] E. Lau, Z. Furman, G. Wang, D. Murfet, S. Wei, "The Local Learning Coefficient: A
       Singularity-Aware Complexity Measure", arXiv:2308.12108.
    .. [2] M. Welling and Y. W. Teh, "Bayesian learning via stochastic gradient Langevin
       dynamics", ICML 2011.
    .. [3] devinterp, https://github.com/timaeus-research/devinterp (``devinterp.optim.SGMCMC``).
    """
    s = settings
    _check(s, observables)
    _sgmcmc()  # fail early, before any work, when devinterp is missing
    pot = Potential(
        model, data, loss=loss, params=params, divergence=divergence, device=device, dtype=dtype,
        matmul_precision=matmul_precision,
    )  # fmt: skip
    nbeta = s.nbeta or (pot.n / math.log(pot.n) if pot.n > 1 else 1.0)
    gamma = DEFAULT_LOCALIZATION if s.localization is None else s.localization
    batch = min(s.batch_size or DEFAULT_BATCH, pot.n)
    burnin = DEFAULT_BURNIN if s.num_burnin is None else s.num_burnin
    draws = s.num_draws or min(DEFAULT_DRAWS, s.max_draws or DEFAULT_DRAWS)
    seeds = chain_seeds(s.seed, s.num_chains)  # one per chain, and (from an int) one more
    aux = seeds[s.num_chains] if len(seeds) > s.num_chains else seeds[0] + 1
    kappa = None
    if s.step_size is None:
        step, kappa = default_step_size(
            pot, nbeta=nbeta, localization=gamma, num_chains=s.num_chains, batch_size=batch,
            seed=aux, sampler=s.sampler,
        )  # fmt: skip
    else:
        step = float(s.step_size)
    steps = burnin + draws
    losses = np.full((s.num_chains, steps), np.nan)
    centers = np.full((s.num_chains, steps), np.nan)
    dead: list = [None] * s.num_chains
    bar = tqdm(total=s.num_chains * steps, desc="devinterp chains", disable=not s.progress)
    with pot.isolated_rng(aux), bar:  # dropout, and anything else on the global RNG
        for c in range(s.num_chains):
            gen = torch.Generator(device=pot.device).manual_seed(seeds[c])
            bar.set_postfix(chain=c)
            losses[c], centers[c], dead[c] = _run_chain(
                model, pot, s, step, nbeta, gamma, batch, steps, gen, bar
            )
    trace = nbeta * (losses - centers)
    diverged = np.array([d is not None for d in dead])
    _warn(dead, step)
    config = _config(s, pot, step, kappa, batch, nbeta)
    ok = ~diverged
    llc_trace = trace[:, burnin:]
    per_chain = np.where(diverged, np.nan, np.nanmean(np.where(ok[:, None], llc_trace, 0.0), 1))
    good = llc_trace[ok]
    return LLCResult(
        mean=float(np.mean(per_chain[ok])),
        std=float(np.std(per_chain[ok], ddof=1)) if ok.sum() > 1 else float("nan"),
        mcse=mcse(good), per_chain=per_chain, loss_trace=losses[:, burnin:], llc_trace=llc_trace,
        init_loss=pot.center_loss_mean, nbeta=float(nbeta),
        step_size=step, localization=float(gamma), batch_size=batch, num_chains=s.num_chains,
        num_draws=draws, num_burnin=burnin, sampler=s.sampler, scheme="euler",
        r_hat=rhat(good), ess=ess(good), mala_acceptance=np.full(s.num_chains, np.nan),
        diverged=diverged, warmup_llc=trace[:, :burnin], config=config,
    )  # fmt: skip


def _warn(dead: list, step: float) -> None:
    if all(d is not None for d in dead):
        why = "; ".join(sorted({d[1] for d in dead}))
        raise RuntimeError(
            f"every chain diverged ({why}): the step size {step:.3g} is too large for this "
            "model; pass a smaller step_size, or a larger localization"
        )
    for c, d in enumerate(dead):
        if d is not None:
            warnings.warn(
                f"chain {c} diverged between steps {d[0]} and {d[0] + CHECK_EVERY} ({d[1]}) and is "
                f"left out of the estimate; try a smaller step_size than {step:.3g}",
                RuntimeWarning,
                stacklevel=4,
            )


def _config(s: LLCSettings, pot: Potential, step, kappa, batch, nbeta) -> dict:
    """Every setting of the call and how each default was chosen."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        dv_version = version("devinterp")
    except PackageNotFoundError:
        dv_version = "unknown"
    unused = "not used by the devinterp backend"
    if kappa is None:
        how = "given"
    else:
        scale = f"{RMSPROP_EPS}·" if s.sampler == "rmsprop_sgld" else ""
        how = f"ε = {scale}0.5/κ̂ from the curvature at and around w*, κ̂ = {kappa:.4g}"
    return {
        "backend": "devinterp",
        "devinterp_version": dv_version,
        "optimizer": f"SGMCMC.{s.sampler}"
        + (f" (alpha {RMSPROP_ALPHA}, eps {RMSPROP_EPS})" if s.sampler == "rmsprop_sgld" else ""),
        "n": pot.n,
        "d": pot.dim,
        "seed": s.seed if isinstance(s.seed, int) else "generator",
        "step_size": how,
        "num_burnin": "given" if s.num_burnin is not None else f"default {DEFAULT_BURNIN}",
        "num_draws": "given"
        if s.num_draws is not None
        else f"default {DEFAULT_DRAWS}" + (" capped by max_draws" if s.max_draws else ""),
        "localization": "given"
        if s.localization is not None
        else f"default {DEFAULT_LOCALIZATION}",
        "nbeta": "given" if s.nbeta is not None else "n / log n",
        "batch_size": "given" if s.batch_size is not None else f"min(n, {DEFAULT_BATCH})",
        "minibatches": "with replacement" if batch < pot.n else "full batch",
        "scheme": "euler (devinterp's update; scheme= not used)",
        "precondition": unused,
        "compensate_noise": unused,
        "noise_compensation": unused,
        "metric": "rmsprop (devinterp)" if s.sampler == "rmsprop_sgld" else "identity",
        "chain_batch": "not used: chains run one after another",
        "loss": pot.loss_name,
        "divergence": pot.divergence,
        "params": list(pot.names),
        "device": str(pot.device),
        "dtype": str(pot.dtype),
        "matmul_precision": describe_precision(pot.matmul_precision),
    }
