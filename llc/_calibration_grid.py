"""Sampling a calibration grid: cells × chains as the chains of one batch, per-chain settings."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields

import numpy as np
import torch
from tqdm.auto import tqdm

from ._randomness import ChainRandomness
from .diagnostics import drift, ess, mcse, rhat
from .observables import LLCTrace, MALATrace, _mask, _stack
from .potential import Potential
from .sampling import Chains, run, values

__all__ = ["BATCHED_SAMPLERS", "METRICS", "GridSampler", "kernel_params"]

WINDOW = 100  # burn-in steps per call, as the estimator's warm-up windows (same random streams)
# per-chain parameters need the Langevin update; other kernels sample one cell at a time
BATCHED_SAMPLERS = ("sgld", "rmsprop_sgld")
METRICS = ("llc", "mcse", "sd", "mala", "r_hat", "ess", "divergences", "drift")


def kernel_params(kernel, step, gamma, nbeta, center):
    """The kernel's parameters (floats, or per-chain tensors of shape (chain, 1))."""
    extra = {"scheme": "leimkuhler_matthews"} if "scheme" in {
        f.name for f in fields(kernel.params)} else {}  # fmt: skip
    return kernel.params(step_size=step, localization=gamma, nbeta=nbeta, center=center, **extra)


def _per_chain(values: np.ndarray, pot: Potential) -> torch.Tensor:
    dtype = torch.float32 if pot.device.type == "mps" else torch.float64  # MPS has no float64
    return torch.tensor(values, dtype=dtype, device=pot.device).reshape(-1, 1)


class GridSampler:
    """Samples cells of a grid: each group of cells one :class:`Chains`, per-chain settings.

    Parameters
    ----------
    pot : Potential
    kernel : Kernel
    seeds : list of int
        From :func:`llc._randomness.chain_seeds`: every cell's chain c uses ``seeds[c]``, as
        chain c of :func:`llc.estimate_llc` with the same seed does (common random numbers).
    num_chains, batch_size, num_burnin, num_draws : int
    start : Tensor (num_chains, d), optional
        Where chain c of every cell starts (default: w*).
    """

    def __init__(self, pot, kernel, seeds, num_chains, batch_size, num_burnin, num_draws,
                 start=None):  # fmt: skip
        self.pot, self.kernel, self.k, self.seeds = pot, kernel, num_chains, seeds
        self.batch, self.burnin, self.draws = batch_size, num_burnin, num_draws
        self.start = pot.center.expand(num_chains, -1) if start is None else start

    def run(self, cells: np.ndarray, progress: bool) -> list[dict]:
        """Per cell (rows of ``cells``: nβ, γ, ε) its draws and diagnostics: all cells in one
        batch for the Langevin kernels, one cell at a time otherwise."""
        batched = self.kernel.name in BATCHED_SAMPLERS
        groups = [cells] if batched else [cells[c : c + 1] for c in range(len(cells))]
        total = (self.burnin + self.draws) * len(cells)
        with tqdm(total=total, desc="calibration", disable=not progress, leave=False) as bar:
            return [cell for group in groups for cell in self.group(group, bar)]

    def chains(self, cells: int) -> Chains:
        seeds = self.seeds[: self.k] * cells + self.seeds[self.k :]
        rand = ChainRandomness(
            seeds, cells * self.k, n=self.pot.n, batch_size=self.batch, dim=self.pot.dim,
            device=self.pot.device, dtype=self.pot.dtype,
        )  # fmt: skip
        return Chains(self.pot, rand)

    def group(self, settings: np.ndarray, bar) -> list[dict]:
        """Sample cells ``settings`` (cell, 3: nβ, γ, ε); per cell its draws and diagnostics."""
        pot, kernel, k = self.pot, self.kernel, self.k
        if len(settings) == 1:
            nb, gamma, eps = map(float, settings[0])
        else:
            nb, gamma, eps = (_per_chain(np.repeat(settings[:, m], k), pot) for m in range(3))
        params = kernel_params(kernel, eps, gamma, nb, pot.center)
        with self.chains(len(settings)) as chains:
            rand = chains.randomness
            begin = self.start.repeat(len(settings), 1)
            state = kernel.init(begin, rand.noise(), params)
            trace, burn = _ExcessTrace(nbeta=settings[:, 0].repeat(k)), []
            while chains.steps_done < self.burnin:
                first = chains.steps_done
                num = min(WINDOW, self.burnin - first)
                state, accs = run(chains, kernel, params, state, num, [trace])
                burn.append(values(chains, [trace], accs, first)["llc"])
                bar.update(num * len(settings))
            first, obs = chains.steps_done, [trace, MALATrace()]
            state, accs = run(chains, kernel, params, state, self.draws, obs)
            bar.update(self.draws * len(settings))
            drawn = values(chains, obs, accs, first)
            dead = np.array([d is not None for d in chains.diverged_at])
        burnin = np.concatenate(burn, 1) if burn else np.zeros((chains.num_chains, 0))
        return [
            _cell(drawn["llc"][sl], burnin[sl], drawn["mala_acceptance"][sl], dead[sl])
            for sl in (slice(c * k, (c + 1) * k) for c in range(len(settings)))
        ]


@dataclass(frozen=True, eq=False)
class _ExcessTrace(LLCTrace):
    """:class:`llc.observables.LLCTrace` with each chain's own nβ (``nbeta``, shape (chain,))."""

    nbeta: np.ndarray | None = None

    def finalize(self, acc, invalid, num_steps: int) -> np.ndarray:
        num_chains, loss, center, _ = acc
        excess = (_stack(loss, num_chains) - _stack(center, num_chains)).cpu().numpy()
        return _mask(np.asarray(self.nbeta, dtype=np.float64)[:, None] * excess, invalid)


def _cell(llc: np.ndarray, burnin: np.ndarray, acc: np.ndarray, dead: np.ndarray) -> dict:
    """One cell's λ̂ and diagnostics, as :func:`llc.estimate_llc` computes them."""
    good = llc[~dead]
    per_chain = good.mean(axis=1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mala = np.nanmean([np.nanmean(a) for a in acc[~dead] if np.isfinite(a).any()] or [np.nan])
    ok = good.shape[0] > 0
    return {
        "llc": float(per_chain.mean()) if ok else math.nan,
        "mcse": mcse(good) if ok else math.nan,
        "sd": float(np.std(good, ddof=1)) if good.size > 1 else math.nan,
        "mala": float(mala),
        "r_hat": rhat(good) if ok else math.nan,
        "ess": ess(good) if ok else math.nan,
        "divergences": int(dead.sum()),
        "drift": drift(good) if ok else math.nan,
        "trace": llc,
        "burnin": burnin,
    }
