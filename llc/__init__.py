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

Beyond the LLC, from the same posterior: :func:`llc.loss_kernel` (``Cov(ℓ_i, ℓ_j)`` over a probe
set), :func:`llc.bif` (Bayesian influence ``−Cov(ℓ_i, ℓ_q)``) and :func:`llc.susceptibilities`
(the response ``−Cov(φ_C, ΔL)`` of components to data shifts).
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
    streaming,
    tracking,
    trajectory,
    warmup,
    zoo,
)
from ._advice import LLCWarning
from .bif import BIFResult, bif  # the function shadows the module's name (still importable)
from .bounds import Bounds, hessian_bounds
from .calibration import CalibrationResult, calibrate
from .estimator import LLCSettings, estimate_llc
from .kernels import get_kernel
from .loss_kernel import LossKernel, loss_kernel
from .masks import param_masks
from .observables import ProbeLosses
from .potential import Potential
from .result import LLCResult
from .streaming import Streamed
from .susceptibilities import Susceptibilities, susceptibilities
from .tracking import LLCTracker, LogSchedule, track_checkpoints
from .trajectory import LLCTrajectory, TrackRecord

__all__ = [
    "BIFResult",
    "Bounds",
    "CalibrationResult",
    "LLCResult",
    "LLCSettings",
    "LLCTracker",
    "LLCTrajectory",
    "LLCWarning",
    "LossKernel",
    "LogSchedule",
    "Potential",
    "ProbeLosses",
    "adaptation",
    "bif",
    "bounds",
    "calibrate",
    "calibration",
    "diagnostics",
    "estimate_llc",
    "get_kernel",
    "hessian_bounds",
    "kernels",
    "language",
    "loss_kernel",
    "masks",
    "param_masks",
    "observables",
    "sampling",
    "streaming",
    "Susceptibilities",
    "susceptibilities",
    "TrackRecord",
    "track_checkpoints",
    "tracking",
    "trajectory",
    "warmup",
    "zoo",
    "Streamed",
]
