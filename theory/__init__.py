"""Exact results to validate against, and the mathematics of interpretability.

- :mod:`theory.exact`: exact learning coefficients (deep linear networks, reduced-rank
  regression, normal crossings, regular models).
- :mod:`theory.models`: small models at parameters where those coefficients hold.
- :mod:`theory.natural_latents`: natural-latent errors, exact and from samples.
"""

from . import exact, models, natural_latents
from .exact import (
    LearningCoefficient,
    deep_linear_network,
    normal_crossing,
    reduced_rank_regression,
    regular,
)
from .models import (
    DeepLinearNetwork,
    NormalCrossingModel,
    normal_form_teacher,
    teacher_student_data,
)

__all__ = [
    "DeepLinearNetwork",
    "LearningCoefficient",
    "NormalCrossingModel",
    "deep_linear_network",
    "exact",
    "models",
    "natural_latents",
    "normal_crossing",
    "normal_form_teacher",
    "reduced_rank_regression",
    "regular",
    "teacher_student_data",
]
