"""The Bayesian influence function: how training samples and query samples covary under the
posterior.

>>> b = llc.bif(model, (x, y), query=(xq, yq), seed=0)  # doctest: +SKIP
>>> b.matrix.shape                                      # (n_train, n_query); doctest: +SKIP

``BIF(z_i, z_q) = −Cov_w(ℓ_i(w), ℓ_q(w))`` under the localized tempered posterior that
:func:`llc.estimate_llc` samples for ``(model, data, loss)`` [1]_: to first order, up-weighting
training sample i by δ changes the posterior expectation of the query loss by ``δ·nβ/n·BIF``
(the posterior being ``∝ exp(−nβ L_n)``, ``L_n`` the mean loss): like the classical influence
function, a negative entry means that sample i lowers the loss on q (they are learned
together), a positive one that it raises it. Streamed as :mod:`llc.loss_kernel` is (chain
groups, no (chain, draw, sample) array).

References
----------
.. [1] P. Kreer, W. Wu, M. Adam, Z. Furman, J. Hoogland, "Bayesian influence functions for
   Hessian-free data attribution", arXiv:2509.26544.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _matrix_result as mr
from ._posterior_cov import (
    LossCovariance,
    posterior,
    prepare_probe,
    record_every,
    sample,
    with_groups,
)
from .result import LLCResult

__all__ = ["BIFResult", "bif"]


@dataclass(frozen=True)
class BIFResult:
    """Bayesian influence ``−Cov(ℓ_i, ℓ_q)`` of training samples i on query samples q.

    Attributes
    ----------
    matrix : ndarray, shape (train, query)
        ``−Cov(ℓ_i, ℓ_q)`` pooled over all kept draws (or ``−Corr`` with ``normalize``).
    mcse : ndarray, shape (train, query)
        Monte Carlo standard error per entry from the spread of the G chain groups' estimates
        (``dof = G − 1`` degrees of freedom).
    train_mean, query_mean : ndarray
        Posterior mean losses ``E_w[ℓ_i]``, ``E_w[ℓ_q]``.
    normalize, per_token : bool
    count : int
        Draws (over all chains) that entered the sums.
    dof : int
    llc : LLCResult
        The run that sampled the posterior (diagnostics and settings).
    """

    matrix: np.ndarray
    mcse: np.ndarray
    train_mean: np.ndarray
    query_mean: np.ndarray
    normalize: bool
    per_token: bool
    count: int
    dof: int
    llc: LLCResult

    def plot(self, ax=None):
        """Heatmap of ``matrix`` (train × query); returns the matplotlib figure."""
        what = "Corr" if self.normalize else "Cov"
        unit = "token" if self.per_token else "sample"
        title = f"BIF −{what}(ℓ_i, ℓ_q), {self.count} draws"
        return mr.heatmap(self.matrix, title, f"query {unit} q", f"train {unit} i", ax)

    def to_xarray(self):
        """``matrix`` and ``mcse`` as an :class:`xarray.Dataset` (dims ``train``, ``query``)
        with the sampling settings in ``attrs``."""
        attrs = dict(mr.settings(self.llc), normalize=int(self.normalize), count=self.count)
        ds = mr.to_dataset({"matrix": self.matrix, "mcse": self.mcse}, ("train", "query"), attrs)
        means = {"train_mean": ("train", self.train_mean), "query_mean": ("query", self.query_mean)}
        return ds.assign(**means)


def bif(
    model,
    data,
    query,
    *,
    train=None,
    normalize: bool = False,
    per_token: bool = False,
    groups: int | None = None,
    every: int | None = None,
    **kw,
) -> BIFResult:
    """The Bayesian influence of ``train`` samples on ``query`` samples.

    Parameters
    ----------
    model, data
        As for :func:`llc.estimate_llc`: the posterior is the one it samples.
    query : (inputs, targets), TensorDataset or DataLoader
        The query samples (at least one).
    train : (inputs, targets), TensorDataset or DataLoader, optional
        The samples whose influence is measured (default: ``data``).
    normalize : bool
        ``−Corr(ℓ_i, ℓ_q)`` instead of ``−Cov``.
    per_token : bool
        With ``loss="next_token"``: one row/column per predicted token, ``m·(seq − 1)`` of
        them in row-major order (ignored positions have 0 loss, hence 0 influence).
    groups : int, optional
        Chain groups for the Monte Carlo error (``groups − 1`` degrees of freedom); memory
        ``8·groups·train·query`` bytes. Default ``min(num_chains, 8)``, fewer (at least 2)
        where that would pass 2 GiB.
    every : int, optional
        Record every this many steps (default as :class:`llc.ProbeLosses`).
    **kw
        Any keyword argument of :func:`llc.estimate_llc` (``loss``, ``seed``, ``nbeta``,
        ``localization``, ``num_chains``, ``num_draws``, ``sampler``, ...), same defaults.

    Returns
    -------
    BIFResult

    Raises
    ------
    ValueError, TypeError
        For query or train data the model cannot take or with no samples (naming ``query`` or
        ``train``), ``per_token`` without ``loss="next_token"``, and every argument
        :func:`llc.estimate_llc` refuses.

    Notes
    -----
    Only the (train, query) block is accumulated: memory grows with ``train·query``, not with
    ``(train + query)²``. Same seed, same matrix.
    """
    pot, settings = posterior(model, data, kw)
    obs = LossCovariance(
        prepare_probe("train", train, pot, per_token),
        prepare_probe("query", query, pot, per_token),
        every=record_every(every),
        per_token=per_token,
        name="bif",
    )
    result, stats = sample(pot, settings, with_groups(obs, groups, settings))
    return BIFResult(
        matrix=-stats.matrix(normalize),
        mcse=stats.mcse(normalize),
        train_mean=stats.mean_a,
        query_mean=stats.mean_b,
        normalize=bool(normalize),
        per_token=per_token,
        count=stats.count,
        dof=stats.dof,
        llc=result,
    )
