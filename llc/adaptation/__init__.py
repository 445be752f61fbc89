"""Warm-up adaptation as small parts, each ``(init, update, final)`` and apart from sampling.

- :mod:`~llc.adaptation.step_size`: ε from the largest curvature of the potential.
- :mod:`~llc.adaptation.metric`: a fixed diagonal metric from the mean squared ``∂U``.
- :mod:`~llc.adaptation.noise`: the noise scale that cancels minibatch heating.
- :mod:`~llc.adaptation.convergence`: the stationarity and spread tests that end warm-up.
- :mod:`~llc.adaptation.draws`: how many draws reach the target Monte Carlo error.
- :mod:`~llc.adaptation.orbit_scale`: the scale of the moves along symmetry orbits.

Each part is a module with pure functions ``init``, ``update`` and ``final`` over an immutable
state (the two convergence tests are :class:`Part` objects of one module; the step size also has
``halve``, for a divergence); :mod:`llc.warmup` composes them. The rules tried and rejected
while choosing them are in ``docs/design.md``.
"""

from __future__ import annotations

from . import convergence, draws, metric, noise, orbit_scale, step_size
from ._part import Part

__all__ = ["Part", "convergence", "draws", "metric", "noise", "orbit_scale", "step_size"]
