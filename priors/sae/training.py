"""Sparse autoencoders trained with a penalty on their latents: what a derived penalty is for.

A penalty from :func:`priors.penalty` (``.to_torch()``), or any elementwise torch function, is
used as the sparsity term of a sparse autoencoder (SAE) trained by Adam on activations ``x``:

.. math::

    \\text{loss} = s\\,\\lVert x - \\hat x \\rVert^2 + \\lambda \\sum_i \\mathrm{pen}(f_i),
    \\qquad f = \\mathrm{act}\\big((x - b_{dec}) W_{enc} + b_{enc}\\big),
    \\qquad \\hat x = f W_{dec} + b_{dec},

averaged over a minibatch, with the decoder rows renormalised to unit length after every step
(so the penalty cannot be lowered by shrinking ``f`` and growing ``W_dec``). With
``s = 1/(2σ²)`` and ``λ = 1`` this is the MAP objective of the prior under Gaussian observation
noise of standard deviation σ.

>>> import torch, priors
>>> from priors.sae import train_sae
>>> x = torch.randn(512, 8)
>>> sae = train_sae(x, torch.abs, n_latents=16, coefficient=0.1, steps=20)   # L1
>>> f, x_hat = sae(x)

Names follow SAELens (``W_enc`` of shape ``(d_in, d_sae)``, ``W_dec`` of shape
``(d_sae, d_in)``, ``b_enc``, ``b_dec``), and ``activation`` is any elementwise torch function,
so an encoder nonlinearity built from a proximal operator can replace the ReLU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ._checks import check_count as _count
from ._checks import check_nonnegative as _nonnegative
from ._checks import generator as _generator
from .sparsity import SparsityPenalty

__all__ = ["SparseAutoencoder", "sae_metrics", "train_sae"]

Penalty = Callable[[torch.Tensor], torch.Tensor]


class SparseAutoencoder(nn.Module):
    """A one-layer SAE with a tied initialisation and unit-norm decoder rows.

    Parameters
    ----------
    d_in : int
        Dimension of the activations.
    d_sae : int
        Number of latents.
    activation : callable, optional
        Elementwise encoder nonlinearity, default ``torch.relu``.
    seed : int or torch.Generator
        Draws the decoder rows (uniform on the unit sphere); ``W_enc = W_decᵀ``, zero biases.
        torch's global RNG is not used.
    dtype : torch.dtype

    Raises
    ------
    TypeError, ValueError
        For sizes that are not positive integers, or a non-callable ``activation``.
    """

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        seed: int | torch.Generator = 0,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        _count("d_in", d_in)
        _count("d_sae", d_sae)
        if activation is not None and not callable(activation):
            raise TypeError(f"activation must be callable, got {type(activation).__name__}")
        w = torch.randn(d_sae, d_in, generator=_generator(seed)).to(dtype)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w.clone())
        self.W_enc = nn.Parameter(w.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(d_sae, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(d_in, dtype=dtype))
        self.activation = torch.relu if activation is None else activation

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents ``f = act((x − b_dec) W_enc + b_enc)``, shape ``(n, d_sae)``."""
        return self.activation((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``f W_dec + b_dec``, shape ``(n, d_in)``."""
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f, x̂)``: the latents and the reconstruction."""
        f = self.encode(x)
        return f, self.decode(f)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder row to unit length."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)


def _check_data(x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of activations, got {type(x).__name__}")
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"x must have shape (n, d_in) with n >= 1, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be floating point, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values")
    return x


def train_sae(
    x: torch.Tensor,
    penalty: Penalty,
    *,
    n_latents: int,
    coefficient: float = 1.0,
    steps: int = 1000,
    batch_size: int = 512,
    lr: float = 3e-3,
    reconstruction_scale: float = 1.0,
    activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
    seed: int | torch.Generator = 0,
) -> SparseAutoencoder:
    """Train a :class:`SparseAutoencoder` on ``x`` with ``penalty`` on its latents.

    Parameters
    ----------
    x : Tensor (n, d_in)
        Activations; the SAE takes their dtype and device.
    penalty : SparsityPenalty or callable
        A :class:`priors.sae.SparsityPenalty` (its own coefficient and decoder-norm option
        apply, and multiply ``coefficient``), or an elementwise penalty on the latents, e.g.
        ``priors.penalty(prior).to_torch()`` or
        ``torch.abs`` (L1); summed over latents, averaged over the batch.
    n_latents : int
        Dictionary size.
    coefficient : float
        λ, the weight of the penalty.
    steps, batch_size : int
        Adam steps, each on ``batch_size`` rows drawn with replacement.
    lr : float
        Adam's learning rate.
    reconstruction_scale : float
        s, the weight of the squared error summed over dimensions (``1/(2σ²)`` for MAP).
    activation : callable, optional
        Encoder nonlinearity (default ReLU).
    seed : int or torch.Generator
        One generator draws the initialisation and then the minibatches; the global RNG is
        not used.

    Returns
    -------
    SparseAutoencoder
        In training mode, with gradients enabled on its parameters.

    Raises
    ------
    TypeError, ValueError
        For ``x`` not a finite floating-point ``(n, d_in)`` tensor, a non-callable ``penalty``,
        or counts and weights out of range (each names the argument).
    """
    x = _check_data(x)
    if not callable(penalty):
        raise TypeError(f"penalty must be callable, got {type(penalty).__name__}")
    for name, value in (("n_latents", n_latents), ("steps", steps), ("batch_size", batch_size)):
        _count(name, value)
    _nonnegative("coefficient", coefficient)
    _nonnegative("lr", lr, strict=True)
    _nonnegative("reconstruction_scale", reconstruction_scale, strict=True)
    gen = _generator(seed)
    sae = SparseAutoencoder(x.shape[1], n_latents, activation=activation, seed=gen, dtype=x.dtype)
    sae.to(x.device)
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    for _ in range(steps):
        xb = x[torch.randint(len(x), (batch_size,), generator=gen).to(x.device)]
        f, x_hat = sae(xb)
        rec = ((xb - x_hat) ** 2).sum(1).mean()
        loss = reconstruction_scale * rec + coefficient * _sparsity(penalty, f, sae)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                "the SAE loss became non-finite: lower lr or coefficient, or check the penalty "
                "at the latents' values"
            )
        opt.zero_grad()
        loss.backward()
        opt.step()
        sae.normalize_decoder()
    return sae


def _sparsity(penalty, f: torch.Tensor, sae: SparseAutoencoder) -> torch.Tensor:
    if isinstance(penalty, SparsityPenalty):
        return penalty(f, sae.W_dec if penalty.decoder_norm else None)
    return penalty(f).sum(1).mean()


@torch.no_grad()
def sae_metrics(
    sae: SparseAutoencoder, x: torch.Tensor, true_directions: torch.Tensor | None = None
) -> dict[str, float]:
    """Reconstruction, sparsity and (with the truth) feature recovery of ``sae`` on ``x``.

    Parameters
    ----------
    sae : SparseAutoencoder
    x : Tensor (n, d_in)
        Held-out activations.
    true_directions : Tensor (m, d_in), optional
        Ground-truth feature directions.

    Returns
    -------
    dict
        ``nmse``: ``Σ‖x − x̂‖² / Σ‖x − x̄‖²``; ``l0``: mean number of non-zero latents per row;
        with ``true_directions`` also ``mmcs``, the mean over true features of the largest
        cosine similarity to a decoder row, and ``rec>0.9``, the fraction of true features
        with such a cosine above 0.9.
    """
    x = _check_data(x)
    f, x_hat = sae(x)
    out = {
        "nmse": float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()),
        "l0": float((f != 0).float().sum(1).mean()),
    }
    if true_directions is not None:
        unit = nn.functional.normalize
        cos = unit(true_directions.to(sae.W_dec), dim=1) @ unit(sae.W_dec, dim=1).T
        best = cos.max(dim=1).values
        out["mmcs"] = float(best.mean())
        out["rec>0.9"] = float((best > 0.9).float().mean())
    return out
