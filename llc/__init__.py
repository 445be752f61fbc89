"""LLC estimators: a potential, sampling kernels, adaptation, observables and diagnostics.

>>> import llc
>>> result = llc.estimate_llc(model, (inputs, targets))  # doctest: +SKIP
>>> print(result.summary())                                # doctest: +SKIP

The parts, for composing samplers of one's own (see :func:`llc.estimate_llc` for one):

- :class:`llc.Potential`: model, data and loss, built once (:mod:`llc.potential`);
- :mod:`llc.kernels`: SGLD, RMSprop-SGLD and SGNHT as pure ``init``/``step`` functions;
- :mod:`llc.adaptation`: warm-up rules as ``(init, update, final)`` parts, composed in
  :mod:`llc.warmup`;
- :mod:`llc.observables`: what the loop of :mod:`llc.sampling` records;
- :mod:`llc.diagnostics`: R-hat, ESS and MCSE.
"""

from . import (
    adaptation,
    bounds,
    calibration,
    diagnostics,
    kernels,
    language,
    masks,
    observables,
    sampling,
    tracking,
    trajectory,
    warmup,
    zoo,
)
from ._advice import LLCWarning
from .bounds import Bounds, hessian_bounds
from .calibration import CalibrationResult, calibrate
from .estimator import LLCSettings, estimate_llc
from .kernels import get_kernel
from .masks import param_masks
from .observables import ProbeLosses
from .potential import Potential
from .result import LLCResult
from .tracking import LLCTracker, LogSchedule, track_checkpoints
from .trajectory import LLCTrajectory, TrackRecord

__all__ = [
    "Bounds",
    "CalibrationResult",
    "LLCResult",
    "LLCSettings",
    "LLCTracker",
    "LLCTrajectory",
    "LLCWarning",
    "LogSchedule",
    "Potential",
    "ProbeLosses",
    "adaptation",
    "bounds",
    "calibrate",
    "calibration",
    "diagnostics",
    "estimate_llc",
    "get_kernel",
    "hessian_bounds",
    "kernels",
    "language",
    "masks",
    "param_masks",
    "observables",
    "sampling",
    "TrackRecord",
    "track_checkpoints",
    "tracking",
    "trajectory",
    "warmup",
    "zoo",
]
