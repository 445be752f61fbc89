"""Exact results to validate against, and the mathematics of interpretability.

- :mod:`theory.exact`: exact learning coefficients (deep linear networks, reduced-rank
  regression, normal crossings, regular models).
- :mod:`theory.models`: small models at parameters where those coefficients hold.
- :mod:`theory.interaction`: the local interaction basis (LIB) of a network.
- :mod:`theory.polytopes`: the linear regions of ReLU networks, exact where it can be.
- :mod:`theory.natural_latents`: natural-latent errors, exact and from samples.
- :mod:`theory.free_energy`: local free energies by quadrature, an oracle for λ.
- :mod:`theory.gibbs`: the finite-n localised LLC of deep linear networks by exact Gibbs sampling.
"""

from . import exact, free_energy, gibbs, interaction, models, natural_latents, polytopes
from .exact import (
    LearningCoefficient,
    deep_linear_network,
    normal_crossing,
    reduced_rank_regression,
    regular,
)
from .free_energy import FreeEnergyCurve, free_energy_curve, localized_llc
from .gibbs import GibbsResult, ObservedMoments, dln_gibbs_llc
from .interaction import InteractionBasis, LayerBasis, interaction_basis
from .models import (
    DeepLinearNetwork,
    NormalCrossingModel,
    dead_unit_relu_net,
    normal_form_teacher,
    teacher_student_data,
)

__all__ = [
    "DeepLinearNetwork",
    "FreeEnergyCurve",
    "GibbsResult",
    "ObservedMoments",
    "InteractionBasis",
    "LayerBasis",
    "LearningCoefficient",
    "NormalCrossingModel",
    "dead_unit_relu_net",
    "deep_linear_network",
    "dln_gibbs_llc",
    "exact",
    "free_energy",
    "free_energy_curve",
    "gibbs",
    "interaction",
    "interaction_basis",
    "localized_llc",
    "models",
    "natural_latents",
    "normal_crossing",
    "normal_form_teacher",
    "polytopes",
    "reduced_rank_regression",
    "regular",
    "teacher_student_data",
]
