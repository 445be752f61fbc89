"""Behavioral vs training LLC: equality, λ_B ≥ λ under its condition, and the counterexample.

Each estimate is compared with the quadrature value of the same localised tempered integral
(:func:`theory.free_energy.localized_llc`) within Monte Carlo error, and the exact asymptotic
coefficients with the quadrature slope of the free energy.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import llc
from theory.free_energy import free_energy_curve, localized_llc

N = 1000
NBETA = N / math.log(N)
Z = 3.5  # tolerance in standard errors


class LinearPlusSquare(nn.Module):
    """``f_w(x) = w1 x1 + w2² x2``: K = ½(Δw1² E x1² + w2⁴ E x2²) at w2 = 0, λ = 1/2 + 1/4."""

    def __init__(self, w1=0.5):
        super().__init__()
        self.w1 = nn.Parameter(torch.tensor(w1))
        self.w2 = nn.Parameter(torch.tensor(0.0))

    def forward(self, x):
        return (self.w1 * x[:, 0] + self.w2**2 * x[:, 1]).unsqueeze(1)


class TwoHeads(nn.Module):
    """``f_w(x) = (w1 x, w2² x)``; only the first head has labels."""

    def __init__(self, w1=0.0):
        super().__init__()
        self.w1 = nn.Parameter(torch.tensor(w1))
        self.w2 = nn.Parameter(torch.tensor(0.0))

    def forward(self, x):
        return torch.cat([self.w1 * x, self.w2**2 * x], dim=1)


class NegSquare(nn.Module):
    """``f_w = −w²`` (input ignored) with targets y = 1."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return (-(self.w**2)).expand(x.shape[0], 1)


def first_head_mse(outputs, targets):
    return 0.5 * (outputs[:, 0] - targets[:, 0]) ** 2


def _estimate(model, data, seed, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return llc.estimate_llc(
            model, data, num_chains=4, max_draws=3000, seed=seed, progress=False, **kw
        )


def _oracle(model, data, loss):
    k = llc.Potential(model, data, loss=loss, dtype=torch.float64).excess_loss()
    return localized_llc(k, NBETA, localization=1.0)


@pytest.mark.slow
def test_equal_in_realizable_zero_residual_mse():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 2, generator=g)
    model = LinearPlusSquare()
    with torch.no_grad():
        y = model(x)  # realizable, zero residual
    pot_l = llc.Potential(model, (x, y), dtype=torch.float64).excess_loss()
    pot_b = llc.Potential(model, x, loss="behavioral", dtype=torch.float64).excess_loss()
    w = np.random.default_rng(0).normal(size=(100, 2))
    np.testing.assert_allclose(pot_l(w), pot_b(w), rtol=1e-12)  # the same K
    oracle = localized_llc(pot_l, NBETA, localization=1.0)
    r_l = _estimate(model, (x, y), seed=1)
    r_b = _estimate(model, x, seed=2, loss="behavioral")
    assert abs(r_l.mean - oracle) <= Z * r_l.mcse
    assert abs(r_b.mean - oracle) <= Z * r_b.mcse
    assert abs(r_l.mean - r_b.mean) <= Z * math.hypot(r_l.mcse, r_b.mcse)


@pytest.mark.slow
def test_behavioral_exceeds_training_when_dominated():
    """L − L* = ½ E(Δw1 x)² ≤ L_B (C = 1): λ = 1/2 < λ_B = 1/2 + 1/4."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(N, 1, generator=g)
    y = torch.cat([0.3 * torch.randn(N, 1, generator=g), torch.zeros(N, 1)], dim=1)
    w1_hat = float(
        (x[:, 0] * y[:, 0]).sum() / (x[:, 0] ** 2).sum()
    )  # least squares: w* minimises L_n
    model = TwoHeads(w1_hat)
    exact_l = free_energy_curve(lambda w: 0.5 * w[:, 0] ** 2, np.logspace(10, 40, 7), center=[0, 0])
    exact_b = free_energy_curve(
        lambda w: 0.5 * (w[:, 0] ** 2 + w[:, 1] ** 4), np.logspace(10, 40, 7), center=[0, 0]
    )
    assert exact_l.slope == pytest.approx(0.5, rel=0.02)
    assert exact_b.slope == pytest.approx(3 / 4, rel=0.02)
    r_l = _estimate(model, (x, y), seed=4, loss=first_head_mse)
    r_b = _estimate(model, x, seed=5, loss="behavioral")
    assert abs(r_l.mean - _oracle(model, (x, y), first_head_mse)) <= Z * r_l.mcse
    assert abs(r_b.mean - _oracle(model, x, "behavioral")) <= Z * r_b.mcse
    assert r_b.mean - r_l.mean > Z * math.hypot(r_l.mcse, r_b.mcse)


@pytest.mark.slow
def test_counterexample_negative_square():
    """f_w = −w², y = 1: K_L = w² + w⁴/2 (λ = 1/2) but K_B = w⁴/2 (λ_B = 1/4 < λ)."""
    x = torch.randn(N, 1, generator=torch.Generator().manual_seed(6))
    y = torch.ones(N, 1)
    model = NegSquare()
    ns = np.logspace(10, 40, 7)
    assert free_energy_curve(
        lambda w: w[:, 0] ** 2 + 0.5 * w[:, 0] ** 4, ns, center=[0.0]
    ).slope == pytest.approx(0.5, rel=0.02)
    assert free_energy_curve(lambda w: 0.5 * w[:, 0] ** 4, ns, center=[0.0]).slope == pytest.approx(
        0.25, rel=0.02
    )
    r_l = _estimate(model, (x, y), seed=7)
    # ε given: the adapted step (curvature 0 at w* for a pure quartic) makes every chain diverge
    r_b = _estimate(model, x, seed=8, loss="behavioral", step_size=1e-3)
    assert abs(r_l.mean - _oracle(model, (x, y), "mse")) <= Z * r_l.mcse
    assert abs(r_b.mean - _oracle(model, x, "behavioral")) <= Z * r_b.mcse
    assert r_l.mean - r_b.mean > Z * math.hypot(r_l.mcse, r_b.mcse)


def test_behavioral_kl_potential_is_the_fisher_quadratic():
    """KL behavioral loss of a softmax classifier: λ_B = d/2 (regular); check K_B near w*."""
    g = torch.Generator().manual_seed(9)
    x = torch.randn(500, 2, generator=g)
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -0.2], [0.1, 0.3]]))
    from llc.bounds import hessian_bounds

    b = hessian_bounds(model, x, loss="behavioral", divergence="kl", rtol=1e-8)
    # the softmax is invariant to adding the same vector to both rows: rank 2 of d = 4
    assert b.rank == 2 and b.lower == 1.0
    r = _estimate(model, x, seed=10, loss="behavioral", divergence="kl")
    assert b.contains(r.mean, tol=Z * r.mcse)
