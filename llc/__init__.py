"""LLC estimators: SGLD on stacked chains, diagnostics, and a validation suite.

>>> import llc
>>> result = llc.estimate_llc(model, (inputs, targets))  # doctest: +SKIP
>>> print(result.summary())                                # doctest: +SKIP
"""

from . import diagnostics, sampler
from .estimator import estimate_llc
from .result import LLCResult
from .sampler import SGLDConfig, SGLDState

__all__ = ["LLCResult", "SGLDConfig", "SGLDState", "diagnostics", "estimate_llc", "sampler"]
