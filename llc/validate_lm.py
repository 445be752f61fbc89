"""Checks of the LLC on transformers, which have no exact λ.

Run by ``python -m llc validate --transformers``:


- **Unembedding** (:func:`unembedding_check`): with everything but the readout fixed, the model
  is a multinomial logistic regression on the readout's inputs. Trained to its minimum on a
  Markov language (every next token has positive probability) with features of full rank r,
  it is regular: λ = (V − 1)·r/2. At finite nβ and localization γ a perfect sampler returns
  the slightly smaller ``½ Σ nβh/(nβh + γ)`` over the Hessian's eigenvalues h
  (:func:`llc.zoo.regular_llc`), also reported.
- **Independent sampler** (:func:`devinterp_agreement`): the same SGLD (Euler, no metric, no
  noise compensation, same ε, γ, nβ, batch, chains and steps) run by devinterp's
  ``SGMCMC.sgld`` optimizer, one chain after another (``backend="devinterp"``, see
  :mod:`llc.devinterp_backend`); both estimates of ``nβ E[L_B(w) − L_B(w*)]`` must agree within
  their Monte Carlo error.
- **Stability** (:func:`stability_check`): the default call on a trained tiny GPT-2, two seeds.
- **Heads** (:func:`heads_check`): an attention-only transformer trained with one head's output
  projection zeroed and frozen; that head's refined LLC against the active heads'.
"""

from __future__ import annotations

import math
import time

import torch

from .diagnostics import mcse
from .estimator import estimate_llc
from .masks import param_masks
from .zoo import (
    TinyTransformer,
    fit_unembedding,
    markov_tokens,
    regular_llc,
    tiny_gpt2,
    train_next_token,
)

__all__ = [
    "devinterp_agreement",
    "heads_check",
    "readout_posterior_llc",
    "stability_check",
    "unembedding_check",
]

VOCAB = 16


def _model(kind: str, seq_len: int, d_model: int, seed: int = 0):
    if kind == "gpt2":
        return tiny_gpt2(VOCAB, seq_len, n_layer=2, n_head=4, n_embd=d_model, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyTransformer(VOCAB, seq_len, d_model=d_model, n_heads=4, n_layers=2,
                               d_mlp=2 * d_model)  # fmt: skip


def _trained(kind: str, n: int, seq_len: int, d_model: int, steps: int, seed: int = 0):
    tokens, _ = markov_tokens(n, seq_len, VOCAB, seed=seed)
    model = _model(kind, seq_len, d_model, seed)
    train_next_token(model, tokens, steps=steps, seed=seed)
    return model.eval(), tokens


def unembedding_check(
    kind: str = "tiny", *, n: int = 256, seq_len: int = 8, d_model: int | None = None,
    train_steps: int = 300, seed: int = 0, progress: bool = False,
) -> dict:  # fmt: skip
    """The readout-refined λ̂ at the defaults against the regular ``(V − 1)·r/2``
    (``d_model`` 64 for GPT-2, 32 for the plain-torch transformer, by default)."""
    d_model = d_model or (64 if kind == "gpt2" else 32)
    model, tokens = _trained(kind, n, seq_len, d_model, train_steps)
    readout = model.lm_head if kind == "gpt2" else model.unembed
    fit = fit_unembedding(model, tokens, readout)
    name = "lm_head.weight" if kind == "gpt2" else "unembed.weight"
    start = time.perf_counter()
    res = estimate_llc(model, tokens, loss="next_token", params=[name], seed=seed,
                       progress=progress)  # fmt: skip
    target = regular_llc(fit["hessian_eigenvalues"], res.nbeta, res.localization)
    exact_n, exact_mcse, _ = readout_posterior_llc(fit, res.nbeta, res.localization, seed=seed)
    return {
        "model": kind, "d": readout.weight.numel(), "exact": fit["llc"], "rank": fit["rank"],
        "llc": res.mean, "mcse": res.mcse, "r_hat": res.r_hat,
        "rel_error": res.mean / fit["llc"] - 1, "quadratic": target,
        "vs_quadratic": res.mean / target - 1, "posterior": exact_n,
        "posterior_mcse": exact_mcse, "vs_posterior": res.mean / exact_n - 1,
        "seconds": time.perf_counter() - start,
    }  # fmt: skip


def readout_posterior_llc(
    fit: dict, nbeta: float, localization: float, *, num_chains: int = 8, num_steps: int = 3000,
    seed: int = 0,
) -> tuple[float, float, float]:  # fmt: skip
    """``E[nβ (L_n(w) − L_n(w*))]`` under the localized posterior of the fitted readout alone, by
    full-batch MALA preconditioned with ``(nβH + γ)⁻¹``: an exact sampler, independent of the
    estimator. Returns the mean over the second half of the chains, its MCSE and the
    acceptance rate."""
    x, y, weights, w_star = fit["problem"]
    shape, d = w_star.shape, w_star.numel()
    precision = nbeta * fit["hessian"] + localization * torch.eye(d, dtype=x.dtype)
    precision = 0.5 * (precision + precision.T)
    metric = torch.linalg.inv(precision)
    root = torch.linalg.cholesky(0.5 * (metric + metric.T))

    def losses(w):  # (chain, D) -> L_n (chain,)
        logits = torch.einsum("nd,cvd->cnv", x, w.view(-1, *shape))
        ce = (
            torch.logsumexp(logits, -1) - logits.gather(-1, y.expand(len(w), -1)[..., None])[..., 0]
        )
        return (ce * weights).sum(1)

    def energy(w):
        w = w.detach().requires_grad_(True)
        u = nbeta * losses(w) + 0.5 * localization * ((w - w_star.reshape(-1)) ** 2).sum(1)
        (g,) = torch.autograd.grad(u.sum(), w)
        return u.detach(), g

    gen = torch.Generator().manual_seed(seed)
    eps = 0.5 * d ** (-1 / 3)  # MALA's scaling with dimension
    w = w_star.reshape(-1).expand(num_chains, -1).clone()
    u, g = energy(w)
    base = losses(w_star.reshape(1, -1))[0]
    trace, accepted = [], 0.0
    for t in range(num_steps):
        noise = torch.randn(num_chains, d, generator=gen, dtype=x.dtype) @ root.T
        prop = w - 0.5 * eps * g @ metric + math.sqrt(eps) * noise
        u2, g2 = energy(prop)

        def log_q(a, b, gb):  # log q(a | b), up to a constant
            diff = a - b + 0.5 * eps * gb @ metric
            return -0.5 / eps * ((diff @ precision) * diff).sum(1)

        log_acc = u - u2 + log_q(w, prop, g2) - log_q(prop, w, g)
        accept = torch.rand(num_chains, generator=gen, dtype=x.dtype).log() < log_acc
        w, u, g = torch.where(accept[:, None], prop, w), torch.where(accept, u2, u), \
            torch.where(accept[:, None], g2, g)  # fmt: skip
        if t >= num_steps // 2:
            trace.append(nbeta * (losses(w) - base))
            accepted += accept.double().mean()
    trace = torch.stack(trace, 1).numpy()
    return float(trace.mean()), float(mcse(trace)), float(accepted / trace.shape[1])


def devinterp_agreement(
    *, seeds=(0, 1, 2), n: int = 256, seq_len: int = 8, d_model: int = 32, num_chains: int = 8,
    num_burnin: int = 300, num_draws: int = 1000, batch_size: int = 32, step_size: float = 1e-4,
    localization: float = 1.0,
) -> list[dict]:  # fmt: skip
    """This package and devinterp with the same SGLD: ``z = Δ / √(MCSE₁² + MCSE₂²)`` per seed."""
    model, tokens = _trained("tiny", n, seq_len, d_model, steps=300)
    nbeta = n / math.log(n)
    same = dict(step_size=step_size, localization=localization, nbeta=nbeta,
                batch_size=batch_size, num_chains=num_chains, num_burnin=num_burnin,
                num_draws=num_draws)  # fmt: skip
    rows = []
    for seed in seeds:
        ours = estimate_llc(
            model,
            tokens,
            loss="next_token",
            scheme="euler",
            precondition=False,
            compensate_noise=False,
            seed=seed,
            progress=False,
            **same,
        )
        theirs = estimate_llc(
            model, tokens, loss="next_token", backend="devinterp", seed=seed, progress=False,
            **same,
        )  # fmt: skip
        rows.append({
            "seed": seed, "ours": ours.mean, "ours_mcse": ours.mcse,
            "devinterp": theirs.mean, "devinterp_mcse": theirs.mcse,
            "z": (ours.mean - theirs.mean) / math.hypot(ours.mcse, theirs.mcse),
        })  # fmt: skip
    return rows


def stability_check(
    *, seeds=(0, 1), n: int = 128, seq_len: int = 8, d_model: int = 64, train_steps: int = 500,
    progress: bool = False,
) -> list[dict]:  # fmt: skip
    """The default call on a trained tiny GPT-2 (all parameters), one row per seed."""
    model, tokens = _trained("gpt2", n, seq_len, d_model, train_steps)
    rows = []
    for seed in seeds:
        start = time.perf_counter()
        res = estimate_llc(model, tokens, loss="next_token", seed=seed, progress=progress)
        rows.append({"seed": seed, "llc": res.mean, "mcse": res.mcse, "r_hat": res.r_hat,
                     "d": model.num_parameters(),
                     "seconds": time.perf_counter() - start})  # fmt: skip
    return rows


def heads_check(
    *, n: int = 128, seq_len: int = 8, d_model: int = 32, n_heads: int = 4, dead: int = 3,
    train_steps: int = 600, seed: int = 0, num_burnin: int | None = 1000,
    max_draws: int | None = 2000, progress: bool = False,
) -> list[dict]:  # fmt: skip
    """Per-head refined λ̂ of an attention-only model whose layer-1 head ``dead`` was trained
    with its output columns zeroed and frozen."""
    tokens, _ = markov_tokens(n, seq_len, VOCAB, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyTransformer(VOCAB, seq_len, d_model=d_model, n_heads=n_heads, n_layers=2,
                                d_mlp=None)  # fmt: skip
    out = model.blocks[1].attn.out_proj.weight
    cols = slice(dead * (d_model // n_heads), (dead + 1) * (d_model // n_heads))
    with torch.no_grad():
        out[:, cols] = 0.0
    hook = out.register_hook(lambda g: g.index_fill(1, torch.arange(cols.start, cols.stop), 0.0))
    try:
        train_next_token(model, tokens, steps=train_steps, seed=seed)
    finally:
        hook.remove()
    model.eval()
    rows = []
    for h in range(n_heads):
        res = estimate_llc(model, tokens, loss="next_token", params=param_masks(model, f"l1h{h}"),
                           seed=seed, num_burnin=num_burnin, max_draws=max_draws,
                           progress=progress)  # fmt: skip
        rows.append({"head": f"l1h{h}", "dead": h == dead, "llc": res.mean,
                     "mcse": res.mcse, "r_hat": res.r_hat})  # fmt: skip
    return rows
