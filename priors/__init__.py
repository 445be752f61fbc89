"""Sparsity penalties derived symbolically from activation priors, and back.

A prior over feature activations (a sympy density) gives its penalty ``−log p``, the penalty's
proximal operator and differentiable torch functions; a penalty gives back its prior
(normalized, with the conditions under which it is proper).

Examples
--------
>>> import priors
>>> pen = priors.penalty(priors.get("student_t", nu=3, s=1))
>>> pen.expr
2*log(a**2/3 + 1)
>>> f = pen.to_torch()                        # differentiable torch penalty
>>> prox = priors.prox(pen).to_torch()        # prox(v, t), closed form (cubic)
"""

from .catalog import CATALOG, get, spike_and_slab
from .inverse import prior_from_penalty
from .joint import group_laplace, multivariate_t, mutually_exclusive, scale_mixture
from .penalty import Penalty, penalty
from .prior import ImproperPriorError, Prior
from .prox import Prox, prox

__all__ = [
    "CATALOG",
    "FitReport",
    "ImproperPriorError",
    "Penalty",
    "Prior",
    "Prox",
    "fit",
    "get",
    "group_laplace",
    "multivariate_t",
    "mutually_exclusive",
    "penalty",
    "prior_from_penalty",
    "prox",
    "scale_mixture",
    "spike_and_slab",
]


# priors.fit (maximum-likelihood fitting) is its own module; importing it here binds the name
# ``fit`` to the function (a plain submodule import would bind it to the module).
try:
    from .fit import FitReport, fit
except ModuleNotFoundError as _err:  # pragma: no cover - only while fit.py is absent
    if _err.name != f"{__name__}.fit":
        raise
    __all__ = [n for n in __all__ if n not in ("fit", "FitReport")]
