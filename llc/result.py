"""The result of an LLC estimate, with its diagnostics and the settings that produced it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._advice import advice
from ._memory import format_bytes

__all__ = ["LLCResult"]


def _mean_or_na(values: np.ndarray) -> str:
    finite = np.asarray(values)[np.isfinite(values)]
    return f"{finite.mean():.3f}" if finite.size else "n/a"


@dataclass(frozen=True)
class LLCResult:
    """An LLC estimate ``λ̂ = nβ (E[L_n(w)] − L_n(w*))``.

    Attributes
    ----------
    mean : float
        λ̂, the mean of ``per_chain`` over the chains that did not diverge.
    std : float
        Standard deviation of ``per_chain`` across those chains.
    mcse : float
        Monte Carlo standard error of ``mean`` from the pooled trace and its bulk ESS.
    per_chain : ndarray, shape (chain,)
        Each chain's estimate (NaN for a diverged chain).
    loss_trace : ndarray, shape (chain, draw)
        Minibatch loss ``L_B(w_t)`` at each kept draw.
    llc_trace : ndarray, shape (chain, draw)
        ``nβ (L_B(w_t) − L_B(w*))``, the control-variate draws whose mean is λ̂.
    init_loss : float
        ``L_n(w*)`` on the full data.
    nbeta, step_size, localization : float
        Hyperparameters actually used.
    batch_size, num_chains, num_draws, num_burnin : int
    sampler, scheme : str
    r_hat : float
        Rank-normalised split-R̂ of ``llc_trace``.
    ess : float
        Bulk effective sample size of ``llc_trace``.
    mala_acceptance : ndarray, shape (chain,)
        Mean MALA acceptance probability per chain (a step-size diagnostic).
    diverged : ndarray of bool, shape (chain,)
    warmup_llc : ndarray, shape (chain, step)
        ``nβ (L_B − L_B(w*))`` during warm-up, kept to show equilibration.
    config : dict
        Every setting of the call and how each default was chosen.
    observables : dict
        The values of the observables passed to :func:`llc.estimate_llc`, by name, over the
        kept draws.
    mala_trace : ndarray, shape (chain, draw), or None
        The MALA acceptance probability of each paired step (NaN between pairs).
    peak_memory : int or None
        Bytes the process added at its peak over what was in use when warm-up began (CUDA:
        torch's allocator; CPU: the C allocator's bytes in use, or the resident set; None where
        neither can be read). Process-wide: estimates running in other threads count too.
        ``config["memory"]`` says what was read and, with ``max_memory``, how ``chain_batch``
        was chosen.
    """

    mean: float
    std: float
    mcse: float
    per_chain: np.ndarray
    loss_trace: np.ndarray
    llc_trace: np.ndarray
    init_loss: float
    nbeta: float
    step_size: float
    localization: float
    batch_size: int
    num_chains: int
    num_draws: int
    num_burnin: int
    sampler: str
    scheme: str
    r_hat: float
    ess: float
    mala_acceptance: np.ndarray
    diverged: np.ndarray
    warmup_llc: np.ndarray
    config: dict = field(default_factory=dict)
    observables: dict = field(default_factory=dict)
    mala_trace: np.ndarray | None = None
    peak_memory: int | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        """What looks wrong with this estimate, each with what to try (empty: nothing).

        Checks: R-hat above 1.05; a negative λ̂; a trace still drifting (:func:`llc.diagnostics.
        drift`, second half against first, ``|z| > 4``); mean MALA acceptance below 0.5 (the
        step is too large for the posterior; well-tuned Langevin steps give 0.9 or more);
        warm-up that stopped at its cap without passing its tests; chains that diverged.
        """
        return tuple(advice(self))

    def summary(self) -> str:
        """A short text report of the estimate and its diagnostics."""
        ok = int((~self.diverged).sum())
        lines = [
            f"LLC estimate  λ̂ = {self.mean:.4g} ± {self.std:.3g} (sd over {ok} chains), "
            f"MCSE {self.mcse:.3g}",
            f"  nβ = {self.nbeta:.4g}, step size {self.step_size:.3g}, "
            f"localization γ = {self.localization:.3g}, batch {self.batch_size}",
            f"  sampler {self.sampler} ({self.scheme}), {self.num_chains} chains × "
            f"{self.num_draws} draws after {self.num_burnin} warm-up steps",
            f"  R-hat {self.r_hat:.3f}, bulk ESS {self.ess:.0f}, "
            f"MALA acceptance {_mean_or_na(self.mala_acceptance)}, "
            f"L_n(w*) = {self.init_loss:.4g}",
        ]
        if self.peak_memory is not None:
            lines.append(f"  peak memory of the chains {format_bytes(self.peak_memory)}")
        if self.diverged.any():
            lines.append(f"  diverged chains: {np.flatnonzero(self.diverged).tolist()}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_datatree(self):
        """The draws in ArviZ's labelled form, an :class:`xarray.DataTree`.

        Groups, over the chains that did not diverge (coordinate ``chain`` keeps their indices):

        - ``posterior``: ``llc`` and ``loss``, dims ``(chain, draw)``, and every trace-shaped
          observable;
        - ``sample_stats``: ``acceptance_rate`` (MALA, NaN between pairs) and ``diverging``
          (all False: diverged chains are left out, listed in ``attrs["diverged_chains"]``);
        - ``warmup_posterior``: the warm-up trace ``llc``;
        - one group per probe-loss observable: ``mean`` ``(sample,)``, ``covariance``
          ``(sample, sample2)``, ``chain_mean`` ``(chain, sample)``.

        ``attrs`` hold λ̂, its errors and the settings. ArviZ's summaries and plots work on it
        and, computed on the same chains, agree with ``r_hat`` and ``ess``.
        """
        import xarray as xr

        keep = ~self.diverged
        chains = np.flatnonzero(keep)

        def group(arrays: dict) -> xr.Dataset:
            data = {k: (("chain", "draw"), np.asarray(v)[keep]) for k, v in arrays.items()}
            return xr.Dataset(data, coords={"chain": chains})

        posterior = {"llc": self.llc_trace, "loss": self.loss_trace}
        groups = {}
        for name, value in self.observables.items():
            if isinstance(value, np.ndarray) and value.shape == self.llc_trace.shape:
                posterior[name] = value
            elif hasattr(value, "chain_mean"):  # ProbeLossStats
                groups[name] = xr.Dataset(
                    {
                        "mean": (("sample",), value.mean),
                        "chain_mean": (("chain", "sample"), value.chain_mean[keep]),
                        **(
                            {"covariance": (("sample", "sample2"), value.covariance)}
                            if value.covariance is not None
                            else {}
                        ),
                    },
                    coords={"chain": chains},
                ).assign_attrs(count=value.count)
        stats = {"diverging": np.zeros(self.llc_trace.shape, dtype=bool)}
        if self.mala_trace is not None:
            stats["acceptance_rate"] = self.mala_trace
        tree = xr.DataTree.from_dict(
            {
                "posterior": group(posterior),
                "sample_stats": group(stats),
                "warmup_posterior": group({"llc": self.warmup_llc}),
                **groups,
            }
        )
        tree.attrs.update(
            llc_mean=self.mean, llc_std=self.std, llc_mcse=self.mcse, r_hat=self.r_hat,
            ess=self.ess, nbeta=self.nbeta, step_size=self.step_size,
            localization=self.localization, sampler=self.sampler, scheme=self.scheme,
            diverged_chains=np.flatnonzero(self.diverged).tolist(),
            **({"peak_memory": self.peak_memory} if self.peak_memory is not None else {}),
        )  # fmt: skip
        return tree

    def __str__(self) -> str:
        return self.summary()

    def plot(self, ax=None):
        """Trace figure: ``nβ(L_B − L_B(w*))`` per chain through warm-up and draws, with λ̂.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(8, 4))
        else:
            fig = ax.figure
        warm = self.warmup_llc.shape[1]
        for c in range(self.llc_trace.shape[0]):
            full = np.concatenate([self.warmup_llc[c], self.llc_trace[c]])
            ax.plot(np.arange(full.size), full, lw=0.6, alpha=0.7, label=f"chain {c}")
        ax.axvline(warm, color="k", ls=":", lw=1, label="end of warm-up")
        ax.axhline(self.mean, color="k", lw=1.5, label=f"λ̂ = {self.mean:.3g}")
        ax.set_xlabel("step")
        ax.set_ylabel("nβ (L_B(w) − L_B(w*))")
        ax.set_title(f"LLC λ̂ = {self.mean:.3g} ± {self.std:.2g}, R-hat {self.r_hat:.3f}")
        if self.llc_trace.shape[0] <= 8:
            ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        return fig
