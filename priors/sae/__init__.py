"""Sparse autoencoders with penalties and activations derived from priors.

- :mod:`priors.sae.training`: a plain SAE trainer (:func:`train_sae`) and its metrics.

Examples
--------
>>> import torch
>>> from priors.sae import train_sae
>>> sae = train_sae(torch.randn(256, 8), torch.abs, n_latents=16, coefficient=0.1, steps=10)
"""

from .training import SparseAutoencoder, sae_metrics, train_sae

__all__ = ["SparseAutoencoder", "sae_metrics", "train_sae"]
