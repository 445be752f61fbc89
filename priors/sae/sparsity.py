"""The sparsity term of an SAE loss, derived from a prior over latent activations.

A prior ``p`` gives the penalty ``pen = −log p`` (:func:`priors.penalty`); this module turns it
into a torch module that an SAE training loss adds to its reconstruction error, optionally
weighting every latent by the norm of its decoder row as SAELens does for L1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._checks import as_penalty, check_activations, check_nonnegative

__all__ = ["SparsityPenalty", "l0_penalty"]


def l0_penalty():
    r"""The L0 penalty ``pen(a) = 1[a ≠ 0]`` as a :class:`priors.Penalty`.

    No proper prior has it (``exp(−pen)`` does not integrate), but its prox is the hard
    threshold ``v·1[|v| > √(2t)]``, so :class:`ProxActivation` of it is JumpReLU and
    :class:`SparsityPenalty` of it counts active latents (its gradient is 0 almost everywhere:
    train the threshold through the activation's pseudo-derivative).

    Examples
    --------
    >>> from priors.sae import l0_penalty
    >>> l0_penalty().expr
    Piecewise((0, Eq(a, 0)), (1, True))
    """
    import sympy as sp

    from ..penalty import Penalty

    a = sp.Symbol("a", real=True)
    return Penalty(sp.Piecewise((0, sp.Eq(a, 0)), (1, True)), a)


class SparsityPenalty(nn.Module):
    r"""``coefficient · mean over rows of Σ pen(latents)``, from a prior.

    Parameters
    ----------
    prior : priors.Prior, priors.Penalty or priors.FitReport
        Catalog, fitted, joint or user-defined prior, or a penalty written directly (an L0
        penalty, for instance, has no proper prior).  Joint priors of dimension ``k`` act on
        consecutive blocks of ``k`` latents.
    coefficient : float
        λ, the weight of the penalty.
    decoder_norm : bool
        Penalise ``f_i·‖W_dec,i‖`` instead of ``f_i`` (requires ``W_dec`` in :meth:`forward`).
    params : dict, optional
        Values of the prior's free parameters.

    Notes
    -----
    With ``f`` of shape ``(..., d_sae)`` (leading axes are rows) and ``k`` the prior's
    dimension,

    .. math::

        \mathcal{L}_{\text{sparsity}} = \lambda \,\frac{1}{N}\sum_{\text{rows}}
        \sum_{g=1}^{d_{sae}/k} \mathrm{pen}\big(a_{g,1},\dots,a_{g,k}\big),
        \qquad a_i = f_i \lVert W_{dec,i}\rVert \text{ (decoder_norm) or } f_i .

    Scaling the argument, not the value, keeps the objective invariant under
    ``f_i → f_i/c, W_dec,i → c·W_dec,i`` for every penalty; for L1 (Laplace, ``b = 1``) it is
    SAELens' ``l1_coefficient · ‖f ⊙ ‖W_dec‖‖₁`` averaged over rows.

    Raises
    ------
    TypeError, ValueError
        A prior of another type, an improper prior (:class:`priors.ImproperPriorError` names
        the condition that fails), free parameters left unbound, a negative coefficient;
        in :meth:`forward`, latents that are not finite floating point, a latent count that is
        not a multiple of ``k``, or ``decoder_norm`` without a ``W_dec`` of shape
        ``(d_sae, d_in)``.

    Examples
    --------
    >>> import torch, priors
    >>> from priors.sae import SparsityPenalty
    >>> l1 = SparsityPenalty(priors.get("laplace", b=1), coefficient=0.5)
    >>> float(l1(torch.tensor([[1.0, -2.0], [0.0, 3.0]])))   # 0.5 · mean(3, 3)
    1.5
    """

    def __init__(
        self,
        prior: Any,
        *,
        coefficient: float = 1.0,
        decoder_norm: bool = False,
        params: dict | None = None,
    ):
        super().__init__()
        check_nonnegative("coefficient", coefficient)
        if not isinstance(decoder_norm, bool):
            raise TypeError(f"decoder_norm must be a bool, got {type(decoder_norm).__name__}")
        self.penalty = as_penalty(prior, params)
        self.coefficient = float(coefficient)
        self.decoder_norm = decoder_norm
        self._pen = self.penalty.to_torch()

    @property
    def group_size(self) -> int:
        """``k``: the number of latents one penalty term couples (1 when separable)."""
        return self.penalty.dim

    def per_group(self, f: torch.Tensor, W_dec: torch.Tensor | None = None) -> torch.Tensor:
        """``pen`` of every group of latents, shape ``(..., d_sae / k)`` (no coefficient)."""
        f = check_activations(f, "f")
        k = self.group_size
        if f.shape[-1] % k:
            raise ValueError(
                f"f: the number of latents ({f.shape[-1]}) must be a multiple of the prior's "
                f"dimension k = {k}"
            )
        if self.decoder_norm:
            f = f * _decoder_norms(W_dec, f.shape[-1]).to(f.dtype)
        elif W_dec is not None:
            raise ValueError("W_dec: given, but decoder_norm=False; pass decoder_norm=True")
        if k == 1:
            return self._pen(f)
        return self._pen(f.unflatten(-1, (-1, k)))

    def forward(self, f: torch.Tensor, W_dec: torch.Tensor | None = None) -> torch.Tensor:
        """The sparsity loss, a scalar: ``coefficient`` × mean over rows of the summed penalty."""
        per_row = self.per_group(f, W_dec).sum(-1)
        return self.coefficient * per_row.mean()

    def extra_repr(self) -> str:
        return (
            f"pen={self.penalty.expr}, k={self.group_size}, coefficient={self.coefficient}, "
            f"decoder_norm={self.decoder_norm}"
        )


def _decoder_norms(W_dec: object, d_sae: int) -> torch.Tensor:
    if W_dec is None:
        raise ValueError(
            "W_dec: decoder_norm=True needs the decoder weights W_dec of shape (d_sae, d_in); "
            "the model has no decoder to take norms from"
        )
    if not isinstance(W_dec, torch.Tensor) or W_dec.ndim != 2 or W_dec.shape[0] != d_sae:
        shape = tuple(W_dec.shape) if isinstance(W_dec, torch.Tensor) else type(W_dec).__name__
        raise ValueError(f"W_dec must be a tensor of shape ({d_sae}, d_in), got {shape}")
    return W_dec.norm(dim=1)
