"""The loss kernel: the posterior covariance of per-sample losses over a probe set.

>>> k = llc.loss_kernel(model, (x, y), probe=(x[:50], y[:50]), seed=0)  # doctest: +SKIP
>>> k.matrix.shape, k.mcse.shape                                          # doctest: +SKIP
((50, 50), (50, 50))
>>> k.plot()                                                              # doctest: +SKIP

``K_ij = Cov_w(ℓ_i(w), ℓ_j(w))`` under the localized tempered posterior that
:func:`llc.estimate_llc` samples for ``(model, data, loss)`` [1]_: samples the network treats
alike move together under the posterior. See :mod:`llc._posterior_cov` for how it is streamed.

References
----------
.. [1] J. Adam, Z. Furman, J. Hoogland, "The loss kernel: a geometric probe for deep learning
   interpretability", 2025.
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

__all__ = ["LossKernel", "loss_kernel"]


@dataclass(frozen=True)
class LossKernel:
    """A loss kernel ``K_ij = Cov(ℓ_i, ℓ_j)`` (or the correlation) over a probe set.

    Attributes
    ----------
    matrix : ndarray, shape (probe, probe)
        Pooled over all kept draws of all chains (unbiased covariance).
    mcse : ndarray, shape (probe, probe)
        Monte Carlo standard error per entry: the spread of the G chain groups' estimates over
        ``√G`` (``dof = G − 1`` degrees of freedom; ``(matrix − truth) / mcse`` is about
        Student-t with ``dof`` degrees of freedom).
    mean : ndarray, shape (probe,)
        ``E_w[ℓ_i(w)]``.
    normalize : bool
        True: ``matrix`` is the correlation ``K_ij / √(K_ii K_jj)``.
    per_token : bool
        True: a probe entry is a predicted token, ``m·(seq − 1)`` of them, row-major.
    count : int
        Draws (over all chains) that entered the sums.
    dof : int
    llc : LLCResult
        The run that sampled the posterior: λ̂, diagnostics (R-hat, ESS, divergences) and
        settings (``llc.config``).
    """

    matrix: np.ndarray
    mcse: np.ndarray
    mean: np.ndarray
    normalize: bool
    per_token: bool
    count: int
    dof: int
    llc: LLCResult

    def plot(self, ax=None):
        """Heatmap of ``matrix``; returns the matplotlib figure."""
        what = "Corr" if self.normalize else "Cov"
        unit = "token" if self.per_token else "sample"
        title = f"loss kernel {what}(ℓ_i, ℓ_j), {self.count} draws"
        return mr.heatmap(self.matrix, title, f"probe {unit} j", f"probe {unit} i", ax)

    def to_xarray(self):
        """``matrix`` and ``mcse`` as an :class:`xarray.Dataset` (dims ``sample``, ``sample2``)
        with the sampling settings in ``attrs``."""
        attrs = dict(mr.settings(self.llc), normalize=int(self.normalize), count=self.count)
        ds = mr.to_dataset({"matrix": self.matrix, "mcse": self.mcse}, ("sample", "sample2"), attrs)
        return ds.assign(mean=("sample", self.mean))


def loss_kernel(
    model,
    data,
    *,
    probe=None,
    normalize: bool = False,
    per_token: bool = False,
    groups: int | None = None,
    every: int | None = None,
    **kw,
) -> LossKernel:
    """The loss kernel of ``model`` at its current weights over ``probe``.

    Parameters
    ----------
    model, data
        As for :func:`llc.estimate_llc`: the posterior is the one it samples.
    probe : (inputs, targets), TensorDataset or DataLoader, optional
        The probe samples (default: ``data``); inputs of the shape the model takes.
    normalize : bool
        Return the correlation instead of the covariance.
    per_token : bool
        With ``loss="next_token"``: one entry per predicted token instead of per sequence.
    groups : int, optional
        Chain groups for the Monte Carlo error (``groups − 1`` degrees of freedom); memory
        ``8·groups·probe²`` bytes. Default ``min(num_chains, 8)``, fewer (at least 2) where
        that would pass 2 GiB.
    every : int, optional
        Record every this many steps (default as :class:`llc.ProbeLosses`).
    **kw
        Any keyword argument of :func:`llc.estimate_llc` (``loss``, ``seed``, ``nbeta``,
        ``localization``, ``num_chains``, ``num_draws``, ``sampler``, ...), same defaults.

    Returns
    -------
    LossKernel

    Raises
    ------
    ValueError, TypeError
        For a probe set the model cannot take (naming ``probe``), ``per_token`` without
        ``loss="next_token"``, and every argument :func:`llc.estimate_llc` refuses.

    Notes
    -----
    The covariance is accumulated online (running sums per chain group, shifted by the first
    records' mean), never as a (chain, draw, sample) array. Same seed, same matrix.
    """
    pot, settings = posterior(model, data, kw)
    obs = LossCovariance(
        prepare_probe("probe", probe, pot, per_token),
        every=record_every(every),
        per_token=per_token,
        name="loss_kernel",
    )
    result, stats = sample(pot, settings, with_groups(obs, groups, settings))
    return LossKernel(
        matrix=stats.matrix(normalize),
        mcse=stats.mcse(normalize),
        mean=stats.mean_a,
        normalize=bool(normalize),
        per_token=per_token,
        count=stats.count,
        dof=stats.dof,
        llc=result,
    )
