"""An exact Gibbs sampler for the localised tempered posterior of a deep linear network.

For ``f(x) = W_L ⋯ W_1 x`` with the squared-error loss, the loss is quadratic in each layer
given the others, and so is the localisation; each layer's conditional is therefore Gaussian and
can be drawn exactly. Sweeping over the layers samples the posterior the LLC estimator targets,
with no step size and no discretisation error, and it crosses the network's symmetry orbits in a
few sweeps where SGLD needs ~10⁴ steps. It gives the finite-n value ``E[nβ (L_n(w) − L_n(w*))]``
of a network with thousands of parameters, where quadrature (:mod:`theory.free_energy`) cannot
go: an independent reference for :func:`llc.estimate_llc`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from arviz_stats.base import array_stats
from torch import nn
from tqdm.auto import tqdm

__all__ = ["GibbsResult", "ObservedMoments", "dln_gibbs_llc"]


@dataclass(frozen=True)
class ObservedMoments:
    """Posterior mean and covariance of an observed vector ``v(w)`` over the kept sweeps.

    Attributes
    ----------
    mean : ndarray, shape (k,)
    covariance : ndarray, shape (k, k)
        Pooled over chains and sweeps (unbiased).
    mcse : ndarray, shape (k, k)
        Per entry, the spread of the chains' own covariances over ``√chains`` (chains − 1
        degrees of freedom).
    count : int
        Draws (chains × kept sweeps).
    """

    mean: np.ndarray
    covariance: np.ndarray
    mcse: np.ndarray
    count: int


def _moments(sums: dict, num_chains: int) -> ObservedMoments:
    """Finish the running sums of :func:`dln_gibbs_llc`'s ``observe`` (shifted by ``k``)."""
    n_c, s1, s2 = sums["count"], sums["s1"], sums["s2"]  # per chain: N, Σd, Σddᵀ
    n = n_c * num_chains
    tot = s1.sum(0)
    cov = (s2.sum(0) - np.outer(tot, tot) / n) / (n - 1)
    per_chain = (s2 - s1[:, :, None] * s1[:, None, :] / n_c) / (n_c - 1)
    if num_chains > 1:
        spread = per_chain.std(0, ddof=1) / math.sqrt(num_chains)
    else:
        spread = np.full_like(cov, np.nan)
    return ObservedMoments(sums["k"] + tot / n, cov, spread, int(n))


@dataclass(frozen=True)
class GibbsResult:
    """Draws of ``nβ (L_n(w) − L_n(w*))`` from the exact Gibbs sampler.

    Attributes
    ----------
    mean, mcse : float
        The estimate of ``E[nβ (L_n(w) − L_n(w*))]`` (after burn-in) and its Monte Carlo error.
    per_chain : ndarray, shape (chain,)
    trace : ndarray, shape (chain, sweep)
        One value per sweep, burn-in included.
    r_hat, ess : float
    nbeta, localization : float
    num_burnin : int
    observed : ObservedMoments or None
        The moments of ``observe(w)`` when ``observe`` was given.
    """

    mean: float
    mcse: float
    per_chain: np.ndarray
    trace: np.ndarray
    r_hat: float
    ess: float
    nbeta: float
    localization: float
    num_burnin: int
    observed: ObservedMoments | None = None

    def summary(self) -> str:
        return (
            f"Gibbs (exact conditionals): E[nβ(L − L*)] = {self.mean:.4g} ± {self.mcse:.2g} "
            f"(MCSE), R-hat {self.r_hat:.3f}, ESS {self.ess:.0f}, nβ = {self.nbeta:.4g}, "
            f"γ = {self.localization:.3g}"
        )

    def plot(self, ax=None):
        """The per-sweep trace of each chain with the burn-in marked; returns the figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(7, 3.5))
        else:
            fig = ax.figure
        for c, row in enumerate(self.trace):
            ax.plot(row, lw=0.6, alpha=0.7, label=f"chain {c}" if c < 8 else None)
        ax.axvline(self.num_burnin, color="k", ls=":", lw=1)
        ax.axhline(self.mean, color="k", lw=1)
        ax.set_xlabel("sweep")
        ax.set_ylabel("nβ (L_n(w) − L_n(w*))")
        ax.set_title("exact Gibbs sampler, deep linear network")
        return fig


def _weights(model) -> list[np.ndarray]:
    if isinstance(model, nn.Module):
        if not isinstance(model, nn.Sequential) or not all(
            type(m) is nn.Linear and m.bias is None for m in model
        ):
            raise TypeError(
                "model must be an nn.Sequential of bias-free nn.Linear layers (a deep linear "
                "network), or a sequence of weight matrices"
            )
        mats = [m.weight for m in model]
    elif isinstance(model, Sequence) and not isinstance(model, str):
        mats = list(model)
    else:
        raise TypeError(
            f"model must be a deep linear network or a sequence of weight matrices, got "
            f"{type(model).__name__}"
        )
    if not mats:
        raise ValueError("model has no layers")
    out = []
    for i, w in enumerate(mats):
        w = w.detach().cpu().double().numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
        if w.ndim != 2 or not np.isfinite(w).all():
            raise ValueError(f"layer {i} must be a finite 2-D weight matrix, got shape {w.shape}")
        if i and w.shape[1] != out[-1].shape[0]:
            raise ValueError(
                f"layer {i} takes {w.shape[1]} inputs but layer {i - 1} gives {out[-1].shape[0]}"
            )
        out.append(w.astype(np.float64))
    return out


def _data(data, d_in: int, d_out: int) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(data, list | tuple) or len(data) != 2:
        raise TypeError("data must be an (inputs, targets) pair of arrays")
    x, y = (
        t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, float)
        for t in data
    )
    if x.ndim != 2 or x.shape[1] != d_in or x.shape[0] == 0:
        raise ValueError(f"inputs must have shape (n, {d_in}) with n ≥ 1, got {x.shape}")
    if y.shape != (x.shape[0], d_out):
        raise ValueError(f"targets must have shape ({x.shape[0]}, {d_out}), got {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("data contain non-finite values")
    return x, y


def _positive(name: str, value, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and (value >= 0 if allow_zero else value > 0)):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return float(value)


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _product(mats: list[torch.Tensor]) -> torch.Tensor:
    """``M_k ⋯ M_1`` for stacked ``mats = [M_1, …, M_k]`` of shape (chain, ·, ·)."""
    out = mats[0]
    for m in mats[1:]:
        out = m @ out
    return out


def _draw_layer(ws, layer, center, sigma, cross, nb, gamma, gen, eyes) -> torch.Tensor:
    """One exact draw of ``W_layer`` from its Gaussian conditional (see :func:`dln_gibbs_llc`),
    stacked over chains."""
    c = ws[0].shape[0]
    b = _product(ws[:layer]) if layer else eyes[0].expand(c, *eyes[0].shape)
    later = ws[layer + 1 :]
    a = _product(later) if later else eyes[1].expand(c, *eyes[1].shape)
    at, bt = a.transpose(1, 2), b.transpose(1, 2)
    av, u = torch.linalg.eigh(at @ a)
    bv, v = torch.linalg.eigh(b @ sigma @ bt)
    prec = nb * av.clamp_min(0)[:, :, None] * bv.clamp_min(0)[:, None, :] + gamma
    rhs = nb * at @ cross @ bt + gamma * center
    mean = u.transpose(1, 2) @ rhs @ v / prec
    noise = torch.randn(mean.shape, generator=gen, dtype=mean.dtype, device=mean.device)
    return u @ (mean + noise / prec.sqrt()) @ v.transpose(1, 2)


def dln_gibbs_llc(
    model,
    data,
    *,
    nbeta: float | None = None,
    localization: float = 0.3,
    num_chains: int = 8,
    num_sweeps: int = 2000,
    num_burnin: int | None = None,
    seed: int | torch.Generator = 0,
    progress: bool = True,
    observe: Callable[[list[np.ndarray]], np.ndarray] | None = None,
    device: str | torch.device | None = None,
) -> GibbsResult:
    """The finite-n localised LLC of a deep linear network, by exact Gibbs sampling.

    Parameters
    ----------
    model : nn.Sequential of bias-free nn.Linear, or sequence of arrays
        The network at w* (``W_1`` first), e.g. :func:`theory.normal_form_teacher`.
    data : (inputs, targets)
        Shapes ``(n, H_0)`` and ``(n, H_L)``.
    nbeta : float, optional
        nβ, default ``n / log n`` as in :func:`llc.estimate_llc`.
    localization : float
        γ > 0 of the localising prior ``exp(−γ‖w − w*‖²/2)``.
    num_chains, num_sweeps : int
        Chains (started at w*) and sweeps per chain; a sweep updates every layer once.
    num_burnin : int, optional
        Sweeps left out of the estimate, default a fifth.
    seed : int or torch.Generator
        A non-negative int, or a generator (one draw from it seeds the sampler).
    progress : bool
    observe : callable, optional
        A function of the weights ``[W_1, …, W_L]``, each stacked over chains
        ``(chain, H_l, H_{l−1})``, returning an array ``(chain, k)``: its posterior mean and
        covariance over the kept sweeps are accumulated online (``result.observed``), e.g. the
        per-sample losses of a probe set for a loss kernel (NumPy arrays, copied to the
        CPU every sweep: slow for large networks on a GPU).
    device : str or torch.device, optional
        Where to sample, in float64 (default the CPU). A sweep costs two batched
        eigendecompositions per layer of its widths and is independent of n: on a GPU the
        exact target is within reach for 10⁶–10⁷ parameters. The same seed gives the same
        draws on one device; other devices draw other streams.

    Returns
    -------
    GibbsResult

    Notes
    -----
    With ``Σ = XᵀX/n``, ``C = YᵀX/n`` and ``P = A W_l B`` (``A = W_L ⋯ W_{l+1}``,
    ``B = W_{l−1} ⋯ W_1``), the potential ``nβ L_n + γ‖W_l − W_l*‖²/2`` in ``W_l`` is ::

        nβ [½ tr(AᵀA W_l BΣBᵀ W_lᵀ) − tr(W_lᵀ AᵀCBᵀ)] + γ‖W_l − W_l*‖²/2 + const.

    With ``AᵀA = U diag(a) Uᵀ`` and ``BΣBᵀ = V diag(b) Vᵀ`` the conditional of
    ``W̃ = Uᵀ W_l V`` is independent Gaussian with precision ``nβ a_i b_j + γ`` and mean
    ``(Uᵀ (nβ AᵀCBᵀ + γ W_l*) V)_ij / (nβ a_i b_j + γ)``. The estimate is the mean over draws of
    ``nβ (L_n(w) − L_n(w*))``, exactly the target of the SGLD estimator.
    """
    mats = _weights(model)
    x, y = _data(data, mats[0].shape[1], mats[-1].shape[0])
    n = x.shape[0]
    nb = (n / math.log(n) if n > 1 else 1.0) if nbeta is None else _positive("nbeta", nbeta)
    gamma = _positive("localization", localization)
    num_chains = _count("num_chains", num_chains, 1)
    num_sweeps = _count("num_sweeps", num_sweeps, 4)
    burn = num_sweeps // 5 if num_burnin is None else _count("num_burnin", num_burnin, 0)
    if burn > num_sweeps - 4:
        raise ValueError(f"num_burnin must leave at least 4 sweeps, got {burn} of {num_sweeps}")
    if isinstance(seed, torch.Generator):
        seed = int(torch.randint(2**62, (1,), generator=seed).item())
    elif isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be a non-negative int or a torch.Generator, got {seed!r}")
    elif seed < 0:
        raise ValueError(f"seed must be a non-negative int or a torch.Generator, got {seed}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} is not available here (no CUDA device)")
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    f64 = dict(dtype=torch.float64, device=dev)
    xt, yt = torch.as_tensor(x, **f64), torch.as_tensor(y, **f64)
    sigma, cross = xt.T @ xt / n, yt.T @ xt / n
    half_yy = 0.5 * float((yt * yt).sum(1).mean())
    centers = [torch.as_tensor(w, **f64) for w in mats]
    eye_in, eye_out = torch.eye(mats[0].shape[1], **f64), torch.eye(mats[-1].shape[0], **f64)

    def loss(ws):
        p = _product(ws)
        return 0.5 * ((p @ sigma) * p).sum((1, 2)) - (p * cross).sum((1, 2)) + half_yy

    if observe is not None and not callable(observe):
        raise TypeError(f"observe must be a function of the weights, got {type(observe).__name__}")
    ws = [w.expand(num_chains, *w.shape).clone() for w in centers]
    base = loss(ws)[0]
    sums = None
    trace = torch.empty((num_chains, num_sweeps), **f64)
    for s in tqdm(range(num_sweeps), desc="Gibbs sweeps", disable=not progress, leave=False):
        for layer in range(len(ws)):
            ws[layer] = _draw_layer(ws, layer, centers[layer], sigma, cross, nb, gamma, gen,
                                    (eye_in, eye_out))  # fmt: skip
        trace[:, s] = nb * (loss(ws) - base)
        if observe is not None and s >= burn:
            sums = _accumulate(sums, observe([w.cpu().numpy() for w in ws]), num_chains)
    trace = trace.cpu().numpy()

    kept = trace[:, burn:]
    axes = {"chain_axis": 0, "draw_axis": 1}
    return GibbsResult(
        mean=float(kept.mean()),
        mcse=float(array_stats.mcse(kept, method="mean", **axes)),
        per_chain=kept.mean(axis=1),
        trace=trace,
        r_hat=float(array_stats.rhat(kept, **axes)),
        ess=float(array_stats.ess(kept, method="bulk", **axes)),
        nbeta=nb,
        localization=gamma,
        num_burnin=burn,
        observed=None if sums is None else _moments(sums, num_chains),
    )


def _accumulate(sums: dict | None, value, num_chains: int) -> dict:
    """Add one sweep's ``observe`` value (chain, k) to the per-chain running sums."""
    v = np.asarray(value, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] != num_chains or not np.isfinite(v).all():
        raise ValueError(
            f"observe must return finite values of shape (chain={num_chains}, k), got {v.shape}"
        )
    if sums is None:  # shifted by the first draw's mean: the sums of deviations stay small
        k = v.shape[1]
        sums = dict(k=v.mean(0), count=0, s1=np.zeros((num_chains, k)))
        sums["s2"] = np.zeros((num_chains, k, k))
    d = v - sums["k"]
    sums["count"] += 1
    sums["s1"] += d
    sums["s2"] += d[:, :, None] * d[:, None, :]
    return sums
