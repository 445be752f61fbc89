r"""Natural-latent errors of an explicit discrete joint distribution.

A joint distribution is an n-d array (numpy or torch, any device) with one axis per variable;
roles are given by axis numbers: ``observables`` is a list of blocks (an axis or a tuple of axes,
a block is treated as one variable) and ``latent`` an axis (or a tuple of axes).  Axes named in
no role are summed out.

Definitions (Wentworth & Lorell), for blocks :math:`X_1, \dots, X_m` and latent :math:`\Lambda`:

* mediation  :math:`\varepsilon_{med} = D_{KL}(P[X,\Lambda]\,\|\,P[\Lambda]\prod_i P[X_i|\Lambda])
  = \sum_i H(X_i|\Lambda) - H(X|\Lambda)` (two blocks: :math:`I(X_1;X_2|\Lambda)`);
* stochastic redundancy :math:`\varepsilon_{red,i} = D_{KL}(P[X,\Lambda]\,\|\,P[X]P[\Lambda|X_i])
  = I(\Lambda; X_{-i} | X_i)`;
* deterministic redundancy :math:`\varepsilon_{red,i} = H(\Lambda | X_i)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from ._info import (
    _log_base,
    cond_entropy_nats,
    cond_mutual_info_nats,
    normalize_roles,
    total_correlation_nats,
    validate_joint,
)

__all__ = [
    "NaturalLatentReport",
    "IsomorphismBound",
    "mediation_error",
    "redundancy_errors",
    "natural_latent_errors",
    "isomorphism_bound",
]

Kind = Literal["stochastic", "deterministic"]


def _check_kind(kind: str) -> str:
    if kind not in ("stochastic", "deterministic"):
        raise ValueError(f"kind must be 'stochastic' or 'deterministic'; got {kind!r}")
    return kind


def _unit_name(base: float | str) -> str:
    lb = _log_base(base)
    if abs(lb - 1.0) < 1e-15:
        return "nats"
    if abs(lb - math.log(2.0)) < 1e-15:
        return "bits"
    return f"log base {math.exp(lb):g}"


@dataclass(frozen=True)
class NaturalLatentReport:
    """Mediation and redundancy errors of one candidate latent.

    Attributes
    ----------
    mediation : float
        :math:`\\varepsilon_{med}`.
    redundancy : tuple of float
        One :math:`\\varepsilon_{red,i}` per observable block, of the given ``kind``.
    kind : str
        ``"stochastic"`` or ``"deterministic"`` redundancy.
    units : str
        ``"nats"``, ``"bits"`` or ``"log base b"``.
    observables, latent : tuples of axes
        The roles that produced the report (normalised axis numbers).
    """

    mediation: float
    redundancy: tuple[float, ...]
    kind: str
    units: str
    observables: tuple[tuple[int, ...], ...] = ()
    latent: tuple[int, ...] = ()

    @property
    def max_redundancy(self) -> float:
        """:math:`\\max_i \\varepsilon_{red,i}` (the ε_red of the theorem)."""
        return max(self.redundancy)

    @property
    def epsilon(self) -> float:
        """``mediation + 2 max_redundancy``: the theorem's bound when both latents share it."""
        return self.mediation + 2.0 * self.max_redundancy

    def plot(self, ax: Any = None) -> Any:
        """Bar chart of ε_med and each ε_red,i; returns the matplotlib Figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(4, 3))
        else:
            fig = ax.figure
        labels = ["mediation"] + [f"red. X{i + 1}" for i in range(len(self.redundancy))]
        vals = [self.mediation, *self.redundancy]
        finite = [v if math.isfinite(v) else 0.0 for v in vals]
        ax.bar(labels, finite, color=["C0"] + ["C1"] * len(self.redundancy))
        ax.set_ylabel(f"error ({self.units})")
        ax.set_title(f"natural-latent errors ({self.kind})")
        fig.tight_layout()
        return fig


def _prepare(joint: Any, observables: Any, latents: list[tuple[Any, str]], normalize: bool,
             atol: float):
    p = validate_joint(joint, "joint", normalize=normalize, atol=atol)
    blocks, lats = normalize_roles(p.ndim, observables, latents)
    return p, blocks, lats


def _mediation_nats(p, blocks, lat) -> float:
    return total_correlation_nats(p, blocks, lat)


def _redundancy_nats(p, blocks, lat, kind) -> tuple[float, ...]:
    out = []
    for i, blk in enumerate(blocks):
        if kind == "deterministic":
            out.append(cond_entropy_nats(p, lat, blk))
        else:
            rest = tuple(a for j, b in enumerate(blocks) if j != i for a in b)
            out.append(cond_mutual_info_nats(p, lat, rest, blk))
    return tuple(out)


def mediation_error(joint: Any, observables: list, latent: Any, *, base: float | str = math.e,
                    normalize: bool = False, atol: float = 1e-8) -> float:
    r"""Mediation error :math:`\varepsilon_{med}` of ``latent`` over the observable blocks.

    Parameters
    ----------
    joint : array_like or torch.Tensor, shape (k_0, ..., k_{n-1})
        Joint probability table, one axis per variable.  Axes in no role are summed out.
    observables : list of int or tuple of int
        At least two disjoint blocks of axes.
    latent : int or tuple of int
        Axis (or axes) of the latent Λ.
    base : float or {"nats", "bits"}
        Logarithm base (default e: nats).
    normalize : bool
        Rescale ``joint`` to sum 1 instead of raising when it does not.
    atol : float
        Tolerance on the total mass and on negative rounding noise: a finite number >= 0 (NaN or
        inf would switch the check off and are refused).

    Returns
    -------
    float
        :math:`\varepsilon_{med} \ge 0`.

    Notes
    -----
    .. math:: \varepsilon_{med} = D_{KL}\big(P[X,\Lambda] \,\|\, P[\Lambda]\textstyle\prod_i
              P[X_i|\Lambda]\big) = \sum_i H(X_i|\Lambda) - H(X|\Lambda),

    evaluated as :math:`E \log[p(x,\lambda) p(\lambda)^{m-1} / \prod_i p(x_i,\lambda)]` over the
    support (so zeros are safe); rounding below 0 is returned as 0.

    References
    ----------
    Wentworth & Lorell, "Natural Latents: The Math" (2023); arXiv:2509.03780.
    """
    p, blocks, (lat,) = _prepare(joint, observables, [(latent, "latent")], normalize, atol)
    return _mediation_nats(p, blocks, lat) / _log_base(base)


def redundancy_errors(joint: Any, observables: list, latent: Any, kind: Kind = "stochastic", *,
                      base: float | str = math.e, normalize: bool = False,
                      atol: float = 1e-8) -> tuple[float, ...]:
    r"""Redundancy errors :math:`\varepsilon_{red,i}`, one per observable block.

    Parameters are as in :func:`mediation_error`; ``kind`` selects the definition.

    Returns
    -------
    tuple of float
        One value per block, in the order of ``observables``.

    Notes
    -----
    Stochastic: :math:`\varepsilon_{red,i} = D_{KL}(P[X,\Lambda]\,\|\,P[X]P[\Lambda|X_i])
    = I(\Lambda; X_{-i} | X_i)`.  Deterministic: :math:`\varepsilon_{red,i} = H(\Lambda|X_i)`.
    The stochastic error is never larger than the deterministic one.

    References
    ----------
    Wentworth & Lorell, "Natural Latents: The Math" (2023); arXiv:2509.03780.
    """
    kind = _check_kind(kind)
    p, blocks, (lat,) = _prepare(joint, observables, [(latent, "latent")], normalize, atol)
    lb = _log_base(base)
    return tuple(v / lb for v in _redundancy_nats(p, blocks, lat, kind))


def natural_latent_errors(joint: Any, observables: list, latent: Any, kind: Kind = "stochastic",
                          *, base: float | str = math.e, normalize: bool = False,
                          atol: float = 1e-8) -> NaturalLatentReport:
    r"""Mediation and redundancy errors of ``latent`` in one report.

    Parameters are as in :func:`mediation_error` and :func:`redundancy_errors`.

    Returns
    -------
    NaturalLatentReport
        ``.mediation`` (float) and ``.redundancy`` (tuple, one per block).

    Notes
    -----
    Λ is an exact natural latent when :math:`\varepsilon_{med} = 0` and every
    :math:`\varepsilon_{red,i} = 0`.  See :func:`mediation_error`, :func:`redundancy_errors`.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.zeros((2, 2, 2)); p[0, 0, 0] = p[1, 1, 1] = 0.5   # X1 = X2 = Λ
    >>> r = natural_latent_errors(p, [0, 1], 2, base=2)
    >>> r.mediation, r.redundancy
    (0.0, (0.0, 0.0))
    """
    kind = _check_kind(kind)
    p, blocks, (lat,) = _prepare(joint, observables, [(latent, "latent")], normalize, atol)
    lb = _log_base(base)
    return NaturalLatentReport(
        mediation=_mediation_nats(p, blocks, lat) / lb,
        redundancy=tuple(v / lb for v in _redundancy_nats(p, blocks, lat, kind)),
        kind=kind, units=_unit_name(base), observables=blocks, latent=lat,
    )


@dataclass(frozen=True)
class IsomorphismBound:
    """Both sides of the isomorphism theorem ``H(Λ'|Λ) ≤ ε_med(Λ) + 2 ε_red(Λ')``.

    Attributes
    ----------
    conditional_entropy : float
        Left side :math:`H(\\Lambda'|\\Lambda)`.
    mediation : float
        :math:`\\varepsilon_{med}` of the mediator Λ (``latent``).
    redundancy : tuple of float
        Deterministic :math:`H(\\Lambda'|X_i)` of the redund Λ' (``other_latent``), per block.
    bound : float
        Right side ``mediation + 2 max(redundancy)``.
    sharp_bound : float
        ``mediation`` plus the two smallest redundancies (also implied by the proof; ≤ ``bound``).
    holds : bool
        ``conditional_entropy <= bound + tol``.
    """

    conditional_entropy: float
    mediation: float
    redundancy: tuple[float, ...]
    bound: float
    sharp_bound: float
    holds: bool
    units: str
    tol: float

    @property
    def slack(self) -> float:
        """``bound - conditional_entropy`` (≥ −tol when the theorem holds)."""
        return self.bound - self.conditional_entropy


def isomorphism_bound(joint: Any, observables: list, latent: Any, other_latent: Any, *,
                      base: float | str = math.e, normalize: bool = False, atol: float = 1e-8,
                      tol: float = 1e-9) -> IsomorphismBound:
    r"""Check the natural-latent isomorphism theorem on a joint distribution.

    Parameters
    ----------
    joint : array_like or torch.Tensor
        Joint table over the observables and both latents (one axis each).
    observables : list of int or tuple of int
        At least two disjoint blocks.
    latent : int or tuple of int
        Λ, used as the mediator.
    other_latent : int or tuple of int
        Λ', used as the (deterministic) redund.
    base, normalize, atol : see :func:`mediation_error`.
    tol : float
        Numerical tolerance of ``holds``.

    Returns
    -------
    IsomorphismBound

    Notes
    -----
    For any joint :math:`P[X_1..X_m, \Lambda, \Lambda']`,

    .. math:: H(\Lambda'|\Lambda) \le \varepsilon_{med}(\Lambda) + H(\Lambda'|X_1) + H(\Lambda'|X_2)
              \le \varepsilon_{med}(\Lambda) + 2 \max_i H(\Lambda'|X_i),

    because :math:`H(\Lambda'|\Lambda) \le H(\Lambda'|X_1) + I(\Lambda';X_1|\Lambda)` and
    :math:`I(\Lambda';X_1|\Lambda) \le I(X_1;X_{-1}|\Lambda) + H(\Lambda'|X_{-1})` with
    :math:`I(X_1;X_{-1}|\Lambda) \le \varepsilon_{med}`.  The redundancy here is the
    deterministic one: with stochastic redundancy the inequality is false in general (an
    independent coin Λ' has zero stochastic redundancy but :math:`H(\Lambda'|\Lambda) > 0`).
    Applying it both ways shows two natural latents determine each other up to that error.

    References
    ----------
    Wentworth & Lorell, "Natural Latents: The Math" (2023); arXiv:2509.03780.
    """
    p, blocks, (lat, other) = _prepare(
        joint, observables, [(latent, "latent"), (other_latent, "other_latent")], normalize, atol
    )
    lb = _log_base(base)
    med = _mediation_nats(p, blocks, lat) / lb
    red = tuple(v / lb for v in _redundancy_nats(p, blocks, other, "deterministic"))
    lhs = cond_entropy_nats(p, other, lat) / lb
    bound = med + 2.0 * max(red)
    sharp = med + sum(sorted(red)[:2])
    return IsomorphismBound(conditional_entropy=lhs, mediation=med, redundancy=red, bound=bound,
                            sharp_bound=sharp, holds=bool(lhs <= bound + tol),
                            units=_unit_name(base), tol=tol)
