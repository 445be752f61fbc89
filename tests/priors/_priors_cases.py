"""Numeric parameters for every catalog prior, shared by the priors tests."""

NUMERIC = {
    "laplace": {"b": 0.7},
    "gaussian": {"sigma": 1.3},
    "cauchy": {"s": 0.8},
    "student_t": {"nu": 3, "s": 1.5},
    "generalized_gaussian": {"p": 0.6, "s": 1.2},
    "double_pareto": {"lam": 2.5, "s": 0.5},
    "horseshoe": {"tau": 0.9},
    "spike_and_slab": {"pi": 0.3, "sigma": 2.0},
    "exponential": {"lam": 1.7},
    "half_cauchy": {"s": 1.1},
    "lognormal": {"mu": 0.2, "sigma": 0.7},
    "gamma": {"k": 2.5, "theta": 0.6},
}
