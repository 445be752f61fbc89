"""Bounds on the local learning coefficient: dimension, Hessian rank and ReLU symmetries.

>>> from llc.bounds import bounds
>>> b = bounds(model, (inputs, targets))      # doctest: +SKIP
>>> b.lower, b.upper, b.lower_source, b.upper_source  # doctest: +SKIP

Every bound assumes that w* (the model's current weights) is a true parameter, a minimum of the
population loss; then ``K(w) = L(w) − L(w*)`` and ``0 ≤ λ(w*) ≤ d/2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ._bounds_checks import check_dtype, check_finite_model, check_seed, model_applies
from ._data import prepare_data
from ._hessian import Curvature, default_rtol, lanczos_spectrum, non_finite_message
from .potential import Potential, selected_parameters

__all__ = ["Bounds", "bounds", "dimension_bound", "hessian_bounds", "symmetry_bound"]

METHODS = ("gauss_newton", "hessian")


@dataclass(frozen=True)
class Bounds:
    """An interval ``lower ≤ λ ≤ upper`` for the LLC at w*, each end labelled with its source.

    Attributes
    ----------
    lower, upper : float
    lower_source, upper_source : str
        Which bound gives each end ("dimension", "hessian", "symmetry").
    d : int
        Number of parameters considered.
    rank : int or None
        Rank r of the curvature matrix (Hessian bounds).
    spectrum : ndarray or None
        Its eigenvalues, descending (all of them, or the leading ones found by Lanczos).
    threshold : float or None
        τ: eigenvalues with ``|μ| > τ`` count towards the rank.
    rtol : float or None
        ``τ = rtol · |μ_max|``.
    free_directions : int or None
        k of the symmetry bound.
    parts : tuple of Bounds
        The individual bounds that were combined (empty for a single bound).
    config : dict
        Settings: method, matrix ("dense" / "lanczos"), n, whether the Lanczos rank is complete.
    """

    lower: float
    upper: float
    lower_source: str
    upper_source: str
    d: int
    rank: int | None = None
    spectrum: np.ndarray | None = None
    threshold: float | None = None
    rtol: float | None = None
    free_directions: int | None = None
    parts: tuple[Bounds, ...] = ()
    config: dict = field(default_factory=dict)

    @property
    def width(self) -> float:
        return self.upper - self.lower

    def contains(self, value: float, tol: float = 0.0) -> bool:
        """``lower − tol ≤ value ≤ upper + tol``."""
        return self.lower - tol <= value <= self.upper + tol

    def _curvature(self) -> Bounds | None:
        if self.spectrum is not None:
            return self
        return next((p for p in self.parts if p.spectrum is not None), None)

    def plot(self, values: dict[str, float] | None = None):
        """The curvature spectrum with the rank threshold, and the intervals of every source.

        Parameters
        ----------
        values : dict, optional
            Labelled values to mark on the interval panel, e.g. ``{"exact λ": 6.5}``.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        curv = self._curvature()
        fig, axes = plt.subplots(1, 2 if curv is not None else 1, figsize=(10 if curv else 5, 3.6))
        axes = np.atleast_1d(axes)
        if curv is not None:
            ax = axes[0]
            mu = np.abs(curv.spectrum)
            floor = max(mu.max() * 1e-18, 1e-300)
            ax.semilogy(np.arange(1, mu.size + 1), np.maximum(mu, floor), "o", ms=3)
            ax.axhline(
                curv.threshold,
                color="r",
                ls="--",
                label=f"τ = {curv.rtol:.2g}·μ_max → rank {curv.rank}",
            )
            ax.set_xlabel("index")
            ax.set_ylabel(f"|eigenvalue| ({curv.config.get('method', '')})")
            ax.legend(fontsize=8)
        ax = axes[-1]
        items = list(self.parts) + [self] if self.parts else [self]
        for i, b in enumerate(items):
            name = "combined" if b is self and self.parts else b.upper_source
            ax.plot([b.lower, b.upper], [i, i], lw=6, solid_capstyle="butt", alpha=0.7)
            ax.text(b.upper, i, f"  {name} [{b.lower:.3g}, {b.upper:.3g}]", va="center", fontsize=8)
        for j, (label, v) in enumerate((values or {}).items()):
            ax.axvline(v, color=f"C{j + 3}", ls=":", label=label)
        if values:
            ax.legend(fontsize=8, loc="lower right")
        ax.set_yticks([])
        ax.set_xlabel("λ")
        ax.set_xlim(
            left=min(0.0, ax.get_xlim()[0]), right=1.35 * max(b.upper for b in items) + 1e-9
        )
        fig.tight_layout()
        return fig


def dimension_bound(model: nn.Module, *, params=None) -> Bounds:
    """``0 ≤ λ ≤ d/2``, d the number of (selected) parameters.

    Parameters
    ----------
    model : nn.Module
    params : optional
        As in :func:`llc.estimate_llc` (weight-refined LLC): count only these parameters.
    """
    d = sum(p.numel() for _, p in selected_parameters(model, params))
    return Bounds(0.0, d / 2, "dimension", "dimension", d, config={"method": "dimension"})


def hessian_bounds(
    model: nn.Module,
    data,
    *,
    loss="mse",
    rtol: float | None = None,
    method: str = "gauss_newton",
    params=None,
    max_dense: int = 3000,
    divergence: str = "mse",
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> Bounds:
    """Hessian-rank bounds ``r/2 ≤ λ ≤ r/2 + (d − r)/4``.

    Parameters
    ----------
    model : nn.Module
        At w*, a true parameter. Not modified.
    data : (inputs, targets), TensorDataset or DataLoader; inputs alone for ``"behavioral"``
    loss : {"mse", "cross_entropy", "behavioral"} or callable
        As in :func:`llc.estimate_llc`; a callable maps ``(outputs, targets)`` to per-sample
        losses of shape ``(batch,)`` and must be twice differentiable in the outputs.
    rtol : float, optional
        Eigenvalues ``|μ| > rtol · |μ_max|`` count towards the rank. Default
        ``max(1/√n, 100·d·eps)`` (see Notes).
    method : {"gauss_newton", "hessian"}
        ``"gauss_newton"`` (default): ``G = (1/n) Σ J_iᵀ H_i J_i`` (``H_i`` the Hessian of the loss
        in the outputs: the identity for MSE, the Fisher information of the softmax for
        cross-entropy). ``"hessian"``: the Hessian of L_n itself.
    params : optional
        Weight-refined: the parameters to consider, as in :func:`llc.estimate_llc`.
    max_dense : int
        Up to this many parameters the matrix is formed (``torch.func``) and diagonalised
        exactly; beyond, Lanczos (``scipy.sparse.linalg.eigsh``) on matrix-vector products.
    divergence : {"mse", "kl"}
        The divergence of ``loss="behavioral"``.
    dtype : torch.float32 or torch.float64
        Precision of the computation (float64 default; on the model's device).
    seed : int
        Starting vector of Lanczos (a non-negative int).

    Returns
    -------
    Bounds
        With ``rank``, ``spectrum`` (descending), ``threshold`` and ``rtol``.

    Raises
    ------
    ValueError
        A parameter or buffer of the model, the loss at w* or the curvature matrix is not
        finite (the message names which); a bad ``method``, ``rtol``, ``max_dense``; a negative
        ``seed``; ``dtype`` not float32/float64 (float16 and bfloat16 have no eigen-solver).
    TypeError
        ``dtype`` not a torch.dtype; ``seed`` not an int.

    Notes
    -----
    With ``r = rank ∇²K(w*)``, ``r/2 ≤ λ ≤ r/2 + (d − r)/4`` [1]_: by the splitting lemma K is a
    sum of r squares plus a function of the other d − r coordinates vanishing to order ≥ 4.

    *Why Gauss–Newton.* At a true parameter ``∇²K = E[Jᵀ H J]`` (the residual term
    ``E[(y − f) ∇²f]`` vanishes), so the population Hessian is the Fisher/Gauss–Newton matrix.
    The Hessian of L_n carries an extra ``(1/n) Σ r_i ∇²f(x_i)`` with O(n^{-1/2}) entries in every
    direction, which lifts the zero eigenvalues and inflates the rank. The empirical G has none:
    a direction with ``J(x)v = 0`` for almost every x gives ``J_i v = 0`` for every sample, so
    degenerate directions of the population are exactly null for G at a true parameter.

    *Threshold.* At a trained network ŵ (an empirical minimiser, not exactly w*), the noise fitted
    along degenerate directions moves ŵ by O(n^{-1/4}) in factorised coordinates (a product of two
    factors fits an O(n^{-1/2}) signal), giving eigenvalues O(n^{-1/2})·μ_max there; the
    population's nonzero eigenvalues are O(μ_max). The default ``rtol = 1/√n`` separates the two
    when the true nonzero eigenvalues exceed ``μ_max/√n``; ``100·d·eps`` keeps rounding out.
    Check ``Bounds.plot()``: a clear gap at the threshold means the rank is well defined.

    *Large models.* Beyond ``max_dense`` parameters the leading eigenvalues are computed by
    Lanczos with k = 32, 64, … Ritz values until the smallest is below τ; the rank estimate is the
    number of Ritz values above τ (exact for the converged ones, ``config["complete"]`` true).
    If k reaches d − 1 first, the rank is a lower bound and ``complete`` is false. When the
    matrix is exactly zero (e.g. a deep linear network at W = 0), both paths give rank 0,
    ``threshold = 0`` and a zero spectrum (Lanczos cannot start on a zero operator; a zero
    product of the random starting vector is taken as the zero matrix, which holds with
    probability one).

    References
    ----------
    .. [1] L. Bushnaq, "The Hessian rank bounds the learning coefficient", LessWrong, 2024.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if rtol is not None and (
        isinstance(rtol, bool)
        or not isinstance(rtol, int | float)
        or not math.isfinite(rtol)
        or not 0 < rtol < 1
    ):
        raise ValueError(f"rtol must be a number in (0, 1), got {rtol!r}")
    if isinstance(max_dense, bool) or not isinstance(max_dense, int) or max_dense < 1:
        raise ValueError(f"max_dense must be a positive integer, got {max_dense!r}")
    dtype, seed = check_dtype(dtype), check_seed(seed)
    check_finite_model(model)
    with model_applies():
        pot = Potential(model, data, loss=loss, params=params, divergence=divergence, dtype=dtype)
    flat = pot.flat_model
    n, d = pot.n, pot.dim
    rtol = default_rtol(n, dtype, d) if rtol is None else float(rtol)
    curv = Curvature(flat, pot.inputs, pot.targets, pot.loss_fn)
    if d <= max_dense:
        mat = curv.dense(method)
        if not bool(torch.isfinite(mat).all()):
            raise ValueError(non_finite_message(method, dtype))
        spectrum = torch.linalg.eigvalsh(mat).cpu().double().numpy()
        spectrum = spectrum[np.argsort(-np.abs(spectrum))]
        tau = rtol * float(np.abs(spectrum[0])) if spectrum.size else 0.0
        complete, kind = True, "dense"
    else:
        spectrum, tau, complete = lanczos_spectrum(
            curv.matvec(method),
            d,
            like=flat.center,
            rtol=rtol,
            psd=method == "gauss_newton",
            seed=seed,
            name=method,
        )
        kind = "lanczos"
    r = int((np.abs(spectrum) > tau).sum()) if tau > 0 else 0
    return Bounds(
        lower=r / 2,
        upper=r / 2 + (d - r) / 4,
        lower_source="hessian",
        upper_source="hessian",
        d=d,
        rank=r,
        spectrum=spectrum,
        threshold=tau,
        rtol=rtol,
        config={
            "method": method,
            "matrix": kind,
            "n": n,
            "complete": complete,
            "params": list(flat.names),
        },
    )


def _hidden_layers(model: nn.Module) -> list[tuple[nn.Linear, nn.Linear | None]]:
    """(Linear followed by ReLU, the next Linear or None) for an nn.Sequential of Linear/ReLU."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(
            f"model must be an nn.Sequential of Linear and ReLU layers, got {type(model).__name__}"
        )
    layers = list(model)
    for m in layers:
        if not isinstance(m, nn.Linear | nn.ReLU):
            raise TypeError(
                f"model must contain only nn.Linear and nn.ReLU layers, found {type(m).__name__}"
            )
    out = []
    for i, m in enumerate(layers):
        if isinstance(m, nn.Linear) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU):
            nxt = next((z for z in layers[i + 1 :] if isinstance(z, nn.Linear)), None)
            out.append((m, nxt))
    return out


@torch.no_grad()
def symmetry_bound(model: nn.Sequential, data) -> Bounds:
    """``λ ≤ (d − k)/2`` from k free directions of a ReLU network on the given inputs.

    Parameters
    ----------
    model : nn.Sequential of nn.Linear and nn.ReLU
        At w*, a true parameter.
    data : inputs, or (inputs, targets)
        Decides which hidden units are dead (pre-activation < 0 on every input).

    Returns
    -------
    Bounds
        ``lower = 0``, ``upper = (d − k)/2``, ``free_directions = k``; ``config`` lists the dead
        and active units per hidden layer.

    Notes
    -----
    If the zero set of K contains a k-dimensional manifold through w*, ``λ ≤ (d − k)/2`` [1]_.
    The manifold used: (i) a dead unit (pre-activation < 0 on all inputs, so for all nearby
    weights) frees its incoming weights and bias; (ii) a unit whose output is zero on every input
    frees its outgoing weights; (iii) every other hidden unit has the rescaling symmetry
    ``(w_in, b, w_out) → (α w_in, α b, w_out/α)``, α > 0, one direction if its rescaling vector is
    nonzero outside the coordinates freed in (i)–(ii). k is the number of coordinates freed plus
    the number of such rescalings (their supports are disjoint, so the directions are independent).

    References
    ----------
    .. [1] S. Watanabe, *Algebraic Geometry and Statistical Learning Theory*, 2009; L. Bushnaq et
       al., arXiv:2405.10927 (free directions of ReLU networks).
    """
    hidden = _hidden_layers(model)
    first = next(iter(model.parameters()), None)
    if first is None:
        raise ValueError("model has no parameters")
    check_finite_model(model)
    if isinstance(data, list | tuple) and len(data) == 2:
        data = data[0]
    x, _ = prepare_data(data, device=first.device, dtype=first.dtype, require_targets=False)
    free = {id(p): torch.zeros_like(p, dtype=torch.bool) for p in model.parameters()}
    zero_out: dict[int, torch.Tensor] = {}
    dead: dict[int, torch.Tensor] = {}
    h = x
    for m in model:
        with model_applies():
            h = m(h)
        if isinstance(m, nn.Linear) and any(m is lin for lin, _ in hidden):
            pre = h.reshape(-1, m.out_features)
            dead[id(m)] = pre.max(0).values < 0
            zero_out[id(m)] = pre.max(0).values <= 0
    for lin, nxt in hidden:
        dd, zz = dead[id(lin)], zero_out[id(lin)]
        free[id(lin.weight)][dd, :] = True
        if lin.bias is not None:
            free[id(lin.bias)][dd] = True
        if nxt is not None:
            free[id(nxt.weight)][:, zz] = True
    k = int(sum(int(f.sum()) for f in free.values()))
    rescalings = 0
    summary = []
    for lin, nxt in hidden:
        dd = dead[id(lin)]
        count = 0
        if nxt is not None:  # no rescaling without a following layer to compensate
            for j in torch.nonzero(~dd).flatten().tolist():
                parts = [
                    lin.weight[j][~free[id(lin.weight)][j]],
                    nxt.weight[:, j][~free[id(nxt.weight)][:, j]],
                ]
                if lin.bias is not None and not free[id(lin.bias)][j]:
                    parts.append(lin.bias[j : j + 1])
                if any(bool((p != 0).any()) for p in parts):
                    count += 1
        rescalings += count
        summary.append({"units": lin.out_features, "dead": int(dd.sum()), "rescalings": count})
    d = sum(p.numel() for p in model.parameters())
    k_total = k + rescalings
    return Bounds(
        lower=0.0,
        upper=(d - k_total) / 2,
        lower_source="dimension",
        upper_source="symmetry",
        d=d,
        free_directions=k_total,
        config={
            "method": "symmetry",
            "layers": summary,
            "freed_coordinates": k,
            "rescalings": rescalings,
        },
    )


def bounds(
    model: nn.Module,
    data,
    *,
    loss="mse",
    rtol: float | None = None,
    method: str = "gauss_newton",
    params=None,
    **kwargs,
) -> Bounds:
    """The tightest interval from :func:`dimension_bound`, :func:`hessian_bounds` and, for ReLU
    networks (``nn.Sequential`` of Linear and ReLU, all parameters), :func:`symmetry_bound`.

    Parameters
    ----------
    model, data, loss, rtol, method, params
        As in :func:`hessian_bounds`.
    **kwargs
        Passed to :func:`hessian_bounds` (``max_dense``, ``divergence``, ``dtype``, ``seed``).

    Returns
    -------
    Bounds
        ``lower = max`` and ``upper = min`` over the parts, with ``lower_source`` and
        ``upper_source`` naming the winners; ``parts`` holds each bound.
    """
    parts = [dimension_bound(model, params=params)]
    parts.append(
        hessian_bounds(model, data, loss=loss, rtol=rtol, method=method, params=params, **kwargs)
    )
    relu = isinstance(model, nn.Sequential) and all(
        isinstance(m, nn.Linear | nn.ReLU) for m in model
    )
    if relu and params is None:
        parts.append(symmetry_bound(model, data))
    lo = max(parts, key=lambda b: b.lower)
    hi = min(parts, key=lambda b: b.upper)
    hess = parts[1]
    return Bounds(
        lower=lo.lower,
        upper=hi.upper,
        lower_source=lo.lower_source if lo.lower > 0 else "dimension",
        upper_source=hi.upper_source,
        d=parts[0].d,
        rank=hess.rank,
        threshold=hess.threshold,
        rtol=hess.rtol,
        free_directions=parts[-1].free_directions if relu and params is None else None,
        parts=tuple(parts),
        config={"method": method, "sources": [p.upper_source for p in parts]},
    )
