r"""Gács–Körner common part of two (blocks of) discrete variables.

The common part :math:`K` of :math:`A` and :math:`B` is the finest variable that is a function of
:math:`A` alone and of :math:`B` alone: the connected component of the bipartite graph whose
vertices are the values of :math:`A` and of :math:`B`, with an edge ``a — b`` whenever
:math:`p(a, b) > 0`.  Its entropy :math:`H(K)` is the Gács–Körner common information, and
:math:`H(K) \le I(A;B)`.  An exact deterministic natural latent over :math:`(A, B)` exists iff
:math:`H(K) = I(A;B)`, and then :math:`K` is one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ._info import (
    _log_base,
    check_tolerance,
    cond_mutual_info_nats,
    normalize_roles,
    validate_joint,
)
from .discrete import NaturalLatentReport, _unit_name, natural_latent_errors

__all__ = ["CommonPart", "common_part"]


@dataclass(frozen=True)
class CommonPart:
    """The Gács–Körner common variable of two blocks and its diagnostics.

    Attributes
    ----------
    labels_a : ndarray of int, shape = the shape of block ``a``
        Component (value of K) of each value of A.  Values of zero probability get label −1.
    labels_b : ndarray of int, shape = the shape of block ``b``
        Same for B.
    probabilities : ndarray, shape (n_components,)
        Distribution of K.
    entropy : float
        :math:`H(K)`, the Gács–Körner common information.
    mutual_information : float
        :math:`I(A;B)`.
    is_natural_latent : bool
        ``mutual_information - entropy <= tol``: K is then an exact deterministic natural latent.
    joint : ndarray, shape (*shape_a, *shape_b, n_components)
        :math:`P[A, B, K]`, with ``observables`` and ``latent`` the roles in it.
    """

    labels_a: np.ndarray
    labels_b: np.ndarray
    probabilities: np.ndarray
    entropy: float
    mutual_information: float
    is_natural_latent: bool
    joint: np.ndarray
    observables: tuple[tuple[int, ...], tuple[int, ...]]
    latent: int
    units: str
    tol: float

    @property
    def n_components(self) -> int:
        """Number of values of K with positive probability."""
        return int(self.probabilities.size)

    def errors(self, kind: str = "deterministic", *,
               base: float | str = math.e) -> NaturalLatentReport:
        """Natural-latent errors of K over (A, B); redundancy is 0, mediation I(A;B) − H(K)."""
        return natural_latent_errors(self.joint, list(self.observables), self.latent, kind,
                                     base=base)


def common_part(joint: Any, a: Any, b: Any, *, base: float | str = math.e,
                normalize: bool = False, atol: float = 1e-8, tol: float = 1e-9) -> CommonPart:
    r"""Gács–Körner common part of blocks ``a`` and ``b`` of a joint distribution.

    Parameters
    ----------
    joint : array_like or torch.Tensor
        Joint probability table, one axis per variable; other axes are summed out.
    a, b : int or tuple of int
        Disjoint axes (blocks) of the two variables.
    base : float or {"nats", "bits"}
        Logarithm base of ``entropy`` and ``mutual_information``.
    normalize, atol : as in :func:`theory.natural_latents.mediation_error`.
    tol : float
        Tolerance of ``is_natural_latent``.

    Returns
    -------
    CommonPart

    Notes
    -----
    K is the connected component of the support graph of :math:`p(a, b)` (scipy's
    ``connected_components`` on the bipartite adjacency).  Since K is a function of A and of B,
    :math:`H(K|A) = H(K|B) = 0` and :math:`I(A;B|K) = I(A;B) - H(K)`, so K is an exact
    (deterministic) natural latent iff :math:`H(K) = I(A;B)`.

    References
    ----------
    Gács & Körner, "Common information is far less than mutual information" (1973);
    Wentworth & Lorell, arXiv:2509.03780.
    """
    tol = check_tolerance(tol, "tol")
    p = validate_joint(joint, "joint", normalize=normalize, atol=atol)
    (ax_a, ax_b), _ = normalize_roles(p.ndim, [a, b], [])
    drop = tuple(i for i in range(p.ndim) if i not in ax_a + ax_b)
    pab = p.sum(axis=drop) if drop else p
    # Reorder remaining axes to (a..., b...) and flatten each block to one index.
    remaining = [i for i in range(p.ndim) if i not in drop]
    order = [remaining.index(i) for i in ax_a + ax_b]
    pab = np.transpose(pab, order)
    shape_a = pab.shape[: len(ax_a)]
    shape_b = pab.shape[len(ax_a):]
    na, nb = int(np.prod(shape_a)), int(np.prod(shape_b))
    m = pab.reshape(na, nb)

    rows, cols = np.nonzero(m > 0)
    adj = coo_matrix((np.ones(rows.size), (rows, na + cols)), shape=(na + nb, na + nb))
    _, comp = connected_components(adj, directed=False)
    pa, pb = m.sum(axis=1), m.sum(axis=0)
    lab_a = np.where(pa > 0, comp[:na], -1)
    lab_b = np.where(pb > 0, comp[na:], -1)
    # Relabel the components carrying mass as 0..K-1 in order of first appearance.
    used = np.unique(lab_a[lab_a >= 0])
    relabel = {int(c): k for k, c in enumerate(used)}
    lab_a = np.array([relabel.get(int(c), -1) for c in lab_a], dtype=np.int64)
    lab_b = np.array([relabel.get(int(c), -1) for c in lab_b], dtype=np.int64)
    ncomp = len(used)

    pabk = np.zeros((na, nb, max(ncomp, 1)))
    if rows.size:
        pabk[rows, cols, lab_a[rows]] = m[rows, cols]
    probs = pabk.sum(axis=(0, 1))[:ncomp]

    lb = _log_base(base)
    q = probs[probs > 0]
    h_k = float(max(0.0, -(q * np.log(q)).sum())) / lb
    mi = cond_mutual_info_nats(m, (0,), (1,)) / lb
    joint_abk = pabk.reshape(*shape_a, *shape_b, pabk.shape[-1])
    la, lbk = len(shape_a), len(shape_b)
    return CommonPart(
        labels_a=lab_a.reshape(shape_a), labels_b=lab_b.reshape(shape_b), probabilities=probs,
        entropy=h_k, mutual_information=mi, is_natural_latent=bool(mi - h_k <= tol),
        joint=joint_abk, observables=(tuple(range(la)), tuple(range(la, la + lbk))),
        latent=la + lbk, units=_unit_name(base), tol=tol,
    )
