"""LLC estimators: SGLD on stacked chains, diagnostics, and a validation suite.

>>> import llc
>>> result = llc.estimate_llc(model, (inputs, targets))  # doctest: +SKIP
>>> print(result.summary())                                # doctest: +SKIP
"""

from . import bounds, diagnostics, sampler
from .bounds import Bounds, hessian_bounds
from .estimator import estimate_llc
from .result import LLCResult
from .sampler import SGLDConfig, SGLDState

__all__ = [
    "Bounds",
    "LLCResult",
    "SGLDConfig",
    "SGLDState",
    "bounds",
    "diagnostics",
    "estimate_llc",
    "hessian_bounds",
    "sampler",
]
