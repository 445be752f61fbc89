"""Sparse autoencoders with penalties and activations derived from priors.

- :class:`SparsityPenalty`: the sparsity term ``λ Σ pen(f)`` of an SAE loss, from a prior.
- :class:`ProxActivation`: the encoder nonlinearity ``prox_{t·pen}``, with learnable weights.
- :func:`l0_penalty`: the L0 penalty, whose prox activation is JumpReLU.
- :mod:`priors.sae.training`: a plain SAE trainer (:func:`train_sae`) and its metrics.
- :mod:`priors.sae.saelens`: a SAELens ``TrainingSAE`` with these parts, and a trainer for any
  SAELens SAE on in-memory activations (the ``sae`` extra).
- :mod:`priors.sae.dictionary_learning`: a trainer in dictionary_learning's protocol.
- :mod:`priors.sae.charlm`: real activations without downloads, from a character-level
  transformer trained on the Python standard library's source.

Examples
--------
>>> import torch, priors
>>> from priors.sae import ProxActivation, SparsityPenalty, train_sae
>>> pen = SparsityPenalty(priors.get("laplace", b=1), coefficient=0.1)
>>> act = ProxActivation(priors.get("laplace", b=1), d_sae=16, t=0.1)
>>> sae = train_sae(torch.randn(256, 8), pen, n_latents=16, steps=10, activation=act)
"""

from .activation import ProxActivation
from .sparsity import SparsityPenalty, l0_penalty
from .training import SparseAutoencoder, sae_metrics, train_sae

__all__ = [
    "ProxActivation",
    "SparseAutoencoder",
    "SparsityPenalty",
    "l0_penalty",
    "sae_metrics",
    "train_sae",
]
