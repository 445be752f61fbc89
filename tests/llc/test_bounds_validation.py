"""Validation suite: the exact λ and the estimate λ̂ lie in the default bounds interval."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import llc
from llc.bounds import bounds
from theory.exact import deep_linear_network, reduced_rank_regression
from theory.models import (
    NormalCrossingModel,
    TanhUnit,
    dead_unit_relu_net,
    normal_form_teacher,
    teacher_student_data,
)


def _relu_dead():
    net, data = dead_unit_relu_net()
    return net, data, 3.5  # identifiable up to rescaling: λ = (d − k)/2 = rank/2


def _suite(name):
    g = torch.Generator().manual_seed(1)
    if name == "dln":
        t = normal_form_teacher([3, 3, 3], 1, seed=0)
        return (
            t,
            teacher_student_data(t, 1000, 3, noise_std=0.5, seed=1),
            float(deep_linear_network([3, 3, 3], 1).value),
            1.0,
        )
    if name == "rrr":
        t = normal_form_teacher([4, 3, 3], 1, seed=2)
        return (
            t,
            teacher_student_data(t, 1000, 4, noise_std=0.5, seed=3),
            float(reduced_rank_regression(4, 3, 3, 1).value),
            1.0,
        )
    x = torch.randn(1000, 1, generator=g)
    zeros = torch.zeros(1000, 1)
    if name == "normal_crossing":
        # γ = 4: with γ ≤ 1 the default step size lets chains diverge along the flat axes
        return NormalCrossingModel((1, 2)), (x, zeros), 0.25, 4.0
    if name == "tanh":
        return TanhUnit(), (x, zeros), 0.5, 1.0
    net, data, lam = _relu_dead()
    return net, data, lam, 1.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, seed", [("dln", 0), ("rrr", 1), ("normal_crossing", 2), ("tanh", 3), ("relu_dead", 4)]
)
def test_exact_and_estimate_inside_bounds(name, seed):
    model, data, lam, gamma = _suite(name)
    b = bounds(model, data)
    assert b.contains(lam), (name, b.lower, b.upper, lam)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # ε given for the normal crossing: the adapted default can diverge on it (reported)
        r = llc.estimate_llc(
            model,
            data,
            localization=gamma,
            num_chains=4,
            max_draws=3000,
            seed=seed,
            progress=False,
            step_size=1e-3 if name == "normal_crossing" else None,
        )
    assert math.isfinite(r.mcse) and r.mcse > 0
    assert b.contains(r.mean, tol=3.5 * r.mcse), (name, b.lower, b.upper, r.mean, r.mcse)
