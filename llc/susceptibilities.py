"""Susceptibilities: how a component's posterior expectation responds to a shift in the data.

>>> chi = llc.susceptibilities(model, tokens, loss="next_token",             # doctest: +SKIP
...                            components=llc.param_masks(model, heads=True),
...                            shifts={"code": code_tokens, "legal": legal_tokens})
>>> chi.matrix.shape, chi.svd()[1]                                          # doctest: +SKIP

For a component C (a set of weights, as ``params=`` of :func:`llc.estimate_llc`) and a data
shift q → (1 − h) q + h q_s, the susceptibility [1]_ is the first-order response of the
component's observable, ``χ = (1/nβ) d E_h[φ_C] / dh = −Cov(φ_C, ΔL_s)``, with:

- ``φ_C(w) = L_R(w) − L_R(w*)``, sampled under the posterior restricted to C (the other
  weights frozen at w*, the localized observable of [1]_): one run of the estimator per
  component, all with the same seed;
- ``ΔL_s(w) = L_s(w) − L_R(w)``, the mean loss on the shift's samples minus that on the
  reference samples R (default: ``data``, the distribution the posterior is built on).

So ``χ = Var(L_R) − Cov(L_R, L_s)``: positive when the shift's loss moves less with the
component's weights than the data's own. Per-token (``loss="next_token"``) each predicted token
j of a shift has its contribution ``−Cov(φ_C, ℓ_j − L_R)``, whose weighted mean (each
sequence's counted tokens, each sequence alike) is the matrix entry (appendix C.4 of [1]_).

References
----------
.. [1] G. Baker, G. Wang, J. Hoogland, D. Murfet, "Structural inference: interpreting small
   language models with susceptibilities", arXiv:2504.18274.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import _matrix_result as mr
from ._posterior_cov import (
    CovarianceStats,
    LossCovariance,
    posterior,
    prepare_probe,
    record_every,
    sample,
    with_groups,
)
from .language import IGNORE

__all__ = ["Susceptibilities", "susceptibilities"]


@dataclass(frozen=True)
class Susceptibilities:
    """The response matrix ``χ[C, s] = −Cov(φ_C, ΔL_s)`` of components to data shifts.

    Attributes
    ----------
    matrix : ndarray, shape (component, shift)
    mcse : ndarray, shape (component, shift)
        Monte Carlo standard error per entry from the spread of the G chain groups of each
        component's run (``dof = G − 1``).
    components, shifts : tuple of str
        Row and column names.
    per_token : dict of str to ndarray, or None
        With ``per_token=True``: per shift, the contributions of its predicted tokens, shape
        ``(component, sequence, seq − 1)`` (NaN at ignored positions).
    per_token_mcse : dict of str to ndarray, or None
    count : ndarray of int, shape (component,)
        Draws (over all chains) of each component's run.
    dof : int
    llc : dict of str to LLCResult
        Each component's run (its restricted λ̂, diagnostics and settings).
    """

    matrix: np.ndarray
    mcse: np.ndarray
    components: tuple
    shifts: tuple
    per_token: dict | None
    per_token_mcse: dict | None
    count: np.ndarray
    dof: int
    llc: dict

    def svd(self):
        """``(U, S, Vᵀ)`` of ``matrix``: the columns of U weigh components, the rows of Vᵀ
        shifts (leading pairs first)."""
        return np.linalg.svd(self.matrix, full_matrices=False)

    def plot(self, axes=None):
        """The matrix as a heatmap and the components on the two leading singular vectors
        (``U_k S_k``, labelled); returns the figure."""
        import matplotlib.pyplot as plt

        if axes is None:
            fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        else:
            fig = axes[0].figure
        mr.heatmap(self.matrix, "susceptibilities χ = −Cov(φ_C, ΔL)", "shift", "component",
                   axes[0])  # fmt: skip
        axes[0].set_xticks(range(len(self.shifts)), self.shifts, rotation=45, ha="right")
        axes[0].set_yticks(range(len(self.components)), self.components)
        u, s, _ = self.svd()
        coords = u[:, :2] * s[:2]
        y = coords[:, 1] if coords.shape[1] > 1 else np.zeros(len(coords))
        axes[1].scatter(coords[:, 0], y)
        for name, a, b in zip(self.components, coords[:, 0], y):
            axes[1].annotate(name, (a, b), fontsize=8)
        axes[1].set_xlabel("U₁ S₁")
        axes[1].set_ylabel("U₂ S₂")
        axes[1].set_title("components on the leading singular vectors")
        fig.tight_layout()
        return fig

    def to_xarray(self):
        """``matrix`` and ``mcse`` as an :class:`xarray.Dataset` (dims ``component``, ``shift``,
        labelled), with each component's λ̂ in ``attrs``."""
        attrs = {f"llc_{k}": v.mean for k, v in self.llc.items()}
        ds = mr.to_dataset({"matrix": self.matrix, "mcse": self.mcse}, ("component", "shift"),
                           attrs)  # fmt: skip
        return ds.assign_coords(component=list(self.components), shift=list(self.shifts))


def _named(what: str, value) -> dict:
    if isinstance(value, dict):
        if not value:
            raise ValueError(f"{what} must not be empty")
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list | tuple) and value:
        return {str(i): v for i, v in enumerate(value)}
    raise TypeError(f"{what} must be a non-empty dict of name -> {what[:-1]} (or a list)")


def _weights(targets: torch.Tensor, per_token: bool) -> np.ndarray:
    """Weights turning a shift's recorded losses into its mean loss L_s."""
    if not per_token:
        return np.full(targets.shape[0], 1.0 / targets.shape[0])
    counted = (targets[:, 1:] != IGNORE).double()
    per_seq = counted / counted.sum(1, keepdim=True).clamp(min=1)
    return (per_seq / targets.shape[0]).reshape(-1).numpy()


def _responses(stats: CovarianceStats, weights: list[np.ndarray]):
    """Pooled and per-group ``−Cov(L_R, b_j − L_R)`` per entry j, and per shift."""
    entry = stats.var_a[0] - stats.covariance[0]  # (m_b,)
    group_entry = stats.group_var_a[:, :1] - stats.group_covariance[:, 0]  # (G, m_b)
    bounds = np.cumsum([0, *[len(w) for w in weights]])
    per_shift = [entry[a:b] @ w for a, b, w in zip(bounds, bounds[1:], weights)]
    group_shift = np.stack(
        [group_entry[:, a:b] @ w for a, b, w in zip(bounds, bounds[1:], weights)], 1
    )
    return entry, group_entry, np.array(per_shift), group_shift, bounds


def _spread(groups: np.ndarray, ok: np.ndarray) -> np.ndarray:
    if ok.sum() < 2:
        return np.full(groups.shape[1:], np.nan)
    return groups[ok].std(0, ddof=1) / np.sqrt(ok.sum())


def susceptibilities(
    model,
    data,
    *,
    components,
    shifts,
    reference=None,
    per_token: bool = False,
    groups: int | None = None,
    every: int | None = None,
    **kw,
) -> Susceptibilities:
    """The susceptibility of each component to each data shift (see the module notes).

    Parameters
    ----------
    model, data
        As for :func:`llc.estimate_llc`: the posterior is the one it samples.
    components : dict of name to parameter selection (or a list)
        Each as ``params=`` of :func:`llc.estimate_llc`: names, a predicate, modules, or
        ``{name: mask}`` (:func:`llc.param_masks` builds them for heads and layers).
    shifts : dict of name to data (or a list)
        Each shift's samples, of the type and input shape of ``data``.
    reference : data, optional
        The samples R of the reference loss ``L_R`` (default: ``data``); evaluated at every
        record, so pass a subset for large data.
    per_token : bool
        With ``loss="next_token"``: also each predicted token's contribution.
    groups, every : int, optional
        As for :func:`llc.loss_kernel`.
    **kw
        Any other keyword argument of :func:`llc.estimate_llc` (``loss``, ``seed``, ``nbeta``,
        ``localization``, ``num_chains``, ``num_draws``, ...), same defaults, for every run.

    Returns
    -------
    Susceptibilities

    Raises
    ------
    ValueError, TypeError
        For a component that selects no parameter (naming ``components[name]``), a shift of
        another type or input shape than ``data`` (naming ``shifts[name]``), ``params=``
        (components set it), and every argument :func:`llc.estimate_llc` refuses.

    Notes
    -----
    Memory per run: ``8·G·(shift samples or tokens)`` bytes; time: one estimator run per
    component, each recording the losses on R and on every shift every ``every`` steps.
    """
    if "params" in kw:
        raise TypeError("params cannot be passed to susceptibilities: components set it")
    comps, shift_data = _named("components", components), _named("shifts", shifts)
    rows, group_rows, counts, dof, runs = [], [], [], None, {}
    tok_rows, tok_group_rows = [], []
    for name, selection in comps.items():
        try:
            pot, settings = posterior(model, data, {**kw, "params": selection})
        except (ValueError, TypeError) as exc:
            if "params" not in str(exc):
                raise
            raise type(exc)(f"components[{name!r}]: {exc}") from None
        sets = [prepare_probe(f"shifts[{k!r}]", v, pot, per_token) for k, v in shift_data.items()]
        obs = LossCovariance(
            prepare_probe("reference", reference, pot, False),
            b_sets=tuple(sets),
            reduce_a=True,
            every=record_every(every),
            per_token=per_token,
            name="susceptibility",
        )
        result, stats = sample(pot, settings, with_groups(obs, groups, settings))
        weights = [_weights(t, per_token) for _, t in sets]
        entry, group_entry, per_shift, group_shift, bounds = _responses(stats, weights)
        ok = stats.group_count >= 2
        rows.append(per_shift)
        group_rows.append(_spread(group_shift, ok))
        if per_token:
            tok_rows.append([entry[a:b] for a, b in zip(bounds, bounds[1:])])
            spread = _spread(group_entry, ok)
            tok_group_rows.append([spread[a:b] for a, b in zip(bounds, bounds[1:])])
        counts.append(stats.count)
        dof = stats.dof if dof is None else min(dof, stats.dof)
        runs[name] = result
    tokens = tokens_mcse = None
    if per_token:
        tokens, tokens_mcse = {}, {}
        for s, (shift, (_, targets)) in enumerate(zip(shift_data, sets)):
            shape = (len(comps), targets.shape[0], targets.shape[1] - 1)
            ignored = (targets[:, 1:] == IGNORE).numpy()
            for out, source in ((tokens, tok_rows), (tokens_mcse, tok_group_rows)):
                values = np.stack([row[s] for row in source]).reshape(shape)
                out[shift] = np.where(ignored[None], np.nan, values)
    return Susceptibilities(
        matrix=np.array(rows),
        mcse=np.array(group_rows),
        components=tuple(comps),
        shifts=tuple(shift_data),
        per_token=tokens,
        per_token_mcse=tokens_mcse,
        count=np.array(counts),
        dof=int(dof),
        llc=runs,
    )
