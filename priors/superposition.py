"""A toy model of superposition whose feature activations follow a chosen sparse prior.

``m`` ground-truth features are random unit directions ``W`` (m, d) in ``d < m`` dimensions.
Each feature is active with probability π, and an active feature's magnitude is drawn from a
scipy distribution (the slab), so the activations follow the spike-and-slab prior
``(1 − π) δ₀ + π g``. Observations are ``x = a W + σ ε`` with standard normal ε. It is the test
bed of :mod:`priors.sae`: the truth is known, so an SAE's decoder can be scored against ``W``.

>>> from priors.superposition import superposition_toy
>>> toy = superposition_toy(m=64, d=32, pi=0.05, slab="lomax", slab_params={"c": 3.0, "scale": 2.0})
>>> a, x = toy.sample(1000, seed=1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .sae._checks import generator as _generator

__all__ = ["SuperpositionToy", "superposition_toy"]


@dataclass(frozen=True)
class SuperpositionToy:
    """Ground truth: feature directions ``w`` (m, d), P(active) ``pi``, the slab, noise σ.

    Attributes
    ----------
    w : Tensor (m, d)
        Unit feature directions (rows).
    pi : float
        Probability that a feature is active.
    slab : str
        Name of a ``scipy.stats`` distribution for active magnitudes.
    slab_params : dict
        Its parameters.
    sigma : float
        Standard deviation of the observation noise.
    """

    w: torch.Tensor
    pi: float
    slab: str
    slab_params: dict = field(default_factory=dict)
    sigma: float = 0.05

    def sample(self, n: int, seed: int | torch.Generator = 0):
        """Activations ``a`` (n, m) and observations ``x`` (n, d), float32.

        Magnitudes come from the slab's inverse CDF at torch uniforms, so one torch generator
        (``seed``) fixes everything; torch's global RNG is not used.
        """
        from scipy import stats

        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        gen = _generator(seed)
        m = self.w.shape[0]
        active = torch.rand(n, m, generator=gen) < self.pi
        u = torch.rand(n, m, generator=gen, dtype=torch.float64)
        dist = getattr(stats, self.slab)(**self.slab_params)
        mags = torch.as_tensor(dist.ppf(u.numpy()), dtype=torch.float32)
        a = torch.where(active, mags, 0.0)
        x = a @ self.w + self.sigma * torch.randn(n, self.w.shape[1], generator=gen)
        return a, x


def superposition_toy(
    m: int = 64,
    d: int = 32,
    pi: float = 0.05,
    slab: str = "lomax",
    slab_params: dict | None = None,
    sigma: float = 0.05,
    seed: int = 0,
) -> SuperpositionToy:
    """A :class:`SuperpositionToy` with directions drawn from ``seed``.

    Parameters
    ----------
    m, d : int
        Number of features and observed dimension.
    pi : float
        P(feature active), in (0, 1].
    slab : str
        A continuous ``scipy.stats`` distribution with non-negative support (``"lomax"``,
        ``"expon"``, ...).
    slab_params : dict, optional
        Its parameters (default ``{"c": 3.0, "scale": 2.0}`` for Lomax, else none).
    sigma : float
        Observation noise, >= 0.
    seed : int
        The directions are drawn from ``torch.Generator().manual_seed(10_000 + seed)``.

    Raises
    ------
    ValueError
        For sizes below 1, π outside (0, 1], σ < 0, or an unknown ``slab``.
    """
    from scipy import stats

    for name, value in (("m", m), ("d", d)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not 0 < pi <= 1:
        raise ValueError(f"pi must be in (0, 1], got {pi}")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be >= 0 and finite, got {sigma}")
    if not isinstance(getattr(stats, str(slab), None), stats.rv_continuous):
        raise ValueError(f"slab must name a continuous scipy.stats distribution, got {slab!r}")
    if slab_params is None:
        slab_params = {"c": 3.0, "scale": 2.0} if slab == "lomax" else {}
    gen = torch.Generator().manual_seed(10_000 + seed)
    w = torch.randn(m, d, generator=gen)
    return SuperpositionToy(w / w.norm(dim=1, keepdim=True), pi, slab, dict(slab_params), sigma)
