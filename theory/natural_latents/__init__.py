"""Natural latents: mediation and redundancy errors, the isomorphism theorem, common parts.

Exact on explicit discrete joints (:mod:`.discrete`, :mod:`.common_part`), in closed form for
jointly Gaussian blocks (:mod:`.gaussian`), and estimated from samples with bootstrap intervals
(:mod:`.samples`), e.g. to test whether a network's feature is a natural latent over two views.

References
----------
Wentworth & Lorell, "Natural Latents: The Math" (LessWrong, 2023); arXiv:2509.03780 (2025).
"""

from .common_part import CommonPart, common_part
from .discrete import (
    IsomorphismBound,
    NaturalLatentReport,
    isomorphism_bound,
    mediation_error,
    natural_latent_errors,
    redundancy_errors,
)
from .experiment import (
    LatentTable,
    PlantedCause,
    TwoViewMLP,
    candidate_labels,
    candidate_latent_table,
    hidden_interaction_features,
    train_two_view_mlp,
)
from .gaussian import GaussianNaturalLatentReport, gaussian_natural_latent_errors
from .samples import SampleNaturalLatentReport, discretize, natural_latent_errors_from_samples

__all__ = [
    "mediation_error",
    "redundancy_errors",
    "natural_latent_errors",
    "NaturalLatentReport",
    "isomorphism_bound",
    "IsomorphismBound",
    "common_part",
    "CommonPart",
    "gaussian_natural_latent_errors",
    "GaussianNaturalLatentReport",
    "natural_latent_errors_from_samples",
    "SampleNaturalLatentReport",
    "discretize",
    "PlantedCause",
    "TwoViewMLP",
    "train_two_view_mlp",
    "candidate_labels",
    "candidate_latent_table",
    "hidden_interaction_features",
    "LatentTable",
]
