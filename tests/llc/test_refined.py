"""Weight- and data-refined LLCs against the restricted models' exact coefficients."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import llc
from llc.bounds import hessian_bounds
from theory.exact import normal_crossing, regular
from theory.free_energy import free_energy_curve, localized_llc
from theory.models import normal_form_teacher, teacher_student_data

Z = 3.5  # tolerance in standard errors


def _estimate(model, data, seed, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return llc.estimate_llc(
            model, data, num_chains=4, max_draws=3000, seed=seed, progress=False, **kw
        )


def _quadratic_target(spectrum: np.ndarray, nbeta: float, gamma: float) -> float:
    """E[nβ K] for K = ½ wᵀ H w under exp(−nβ K − γ‖w‖²/2): ½ Σ nβ h / (nβ h + γ)."""
    h = np.clip(spectrum, 0.0, None)
    return float(0.5 * np.sum(nbeta * h / (nbeta * h + gamma)))


@pytest.mark.slow
@pytest.mark.parametrize(
    "select, effective_dim, seed",
    # restricted to one layer the network is linear in it: f = A W_l B x, a regular model with
    # rank(A)·rank(B) identifiable directions. [4, 3, 2], rank 1:
    # layer 0: A = W_1 (rank 1), B = I_4 → 4; layer 1: A = I_2, B = W_0 (rank 1) → 2.
    [("0", 4, 0), ("1", 2, 1)],
)
def test_weight_refined_one_dln_layer(select, effective_dim, seed):
    teacher = normal_form_teacher([4, 3, 2], 1, seed=0)
    x, y = teacher_student_data(teacher, 2000, 4, seed=1)  # noiseless: L_n exactly quadratic
    params = [select] if select == "0" else teacher[1]  # a name, or a module
    exact = float(regular(effective_dim).value)
    b = hessian_bounds(teacher, (x, y), params=params)
    assert b.rank == effective_dim and b.lower == exact
    nbeta = 2000 / math.log(2000)
    target = _quadratic_target(b.spectrum, nbeta, 1.0)
    assert abs(target - exact) < 0.01 * exact  # finite-n localisation effect is below 1 %
    r = _estimate(teacher, (x, y), seed, params=params)
    assert r.config["params"] == [f"{select}.weight"]
    assert abs(r.mean - target) <= Z * r.mcse


class SplitNormalCrossing(nn.Module):
    """``f(x) = x · w1 w2² w3³`` with one nn.Parameter per coordinate."""

    def __init__(self, w=(0.0, 0.0, 1.0)):
        super().__init__()
        self.w1, self.w2, self.w3 = (nn.Parameter(torch.tensor(float(v))) for v in w)

    def forward(self, x):
        return x * self.w1 * self.w2**2 * self.w3**3


@pytest.mark.slow
def test_weight_refined_normal_crossing_frozen_coordinate():
    """w3 frozen at 1: the restricted model is K = ½ w1² w2⁴ E[x²], λ = normal_crossing((1, 2))."""
    x = torch.randn(1000, 1, generator=torch.Generator().manual_seed(2))
    data = (x, torch.zeros(1000, 1))
    model = SplitNormalCrossing()
    pot = llc.Potential(model, data, params=["w1", "w2"], dtype=torch.float64).excess_loss()
    assert pot.names == ("w1", "w2")
    w = np.random.default_rng(0).uniform(-1, 1, (64, 2))
    m2 = float((x.double() ** 2).mean())
    np.testing.assert_allclose(pot(w), 0.5 * w[:, 0] ** 2 * w[:, 1] ** 4 * m2, rtol=1e-12)
    exact = float(normal_crossing((1, 2)).value)
    curve = free_energy_curve(
        lambda v: 0.5 * m2 * v[:, 0] ** 2 * v[:, 1] ** 4, np.logspace(10, 40, 7), center=[0.0, 0.0]
    )
    assert curve.slope == pytest.approx(exact, rel=0.02)
    gamma = 4.0
    oracle = localized_llc(pot, 1000 / math.log(1000), localization=gamma)
    # ε given: the adapted default diverges on this normal crossing (reported to the estimator)
    r = _estimate(model, data, 3, params=["w1", "w2"], localization=gamma, step_size=1e-3)
    assert abs(r.mean - oracle) <= Z * r.mcse


@pytest.mark.slow
def test_data_refined_subspace_inputs():
    """w* fitted on full-rank inputs (λ = 3/2); on inputs in a line only one direction is
    identified (λ = 1/2). Same w*, another dataset: the data-refined LLC."""
    g = torch.Generator().manual_seed(4)
    x1 = torch.randn(2000, 3, generator=g)
    y1 = x1 @ torch.tensor([[0.5], [-1.0], [0.3]]) + 0.5 * torch.randn(2000, 1, generator=g)
    model = nn.Linear(3, 1, bias=False)
    with torch.no_grad():  # least squares: w* minimises L_n on the first dataset
        model.weight.copy_(torch.linalg.lstsq(x1, y1).solution.T)
    u = torch.tensor([[0.6, 0.0, 0.8]])
    x2 = torch.randn(2000, 1, generator=g) * u
    with torch.no_grad():
        y2 = model(x2) + 0.5 * torch.randn(2000, 1, generator=g)
    nbeta = 2000 / math.log(2000)
    for data, lam, seed in (((x1, y1), 1.5, 5), (x2, 0.5, 6)):
        loss = "mse" if isinstance(data, tuple) else "behavioral"
        b = hessian_bounds(model, data, loss=loss)
        assert b.rank == int(2 * lam)
        target = _quadratic_target(b.spectrum, nbeta, 1.0)
        r = _estimate(model, data, seed, loss=loss)
        assert abs(r.mean - target) <= Z * r.mcse, (lam, r.mean, target, r.mcse)
    # training loss on the second dataset: residual y2 − f(x2) is pure noise, same λ = 1/2
    r2 = _estimate(model, (x2, y2), 7)
    assert abs(r2.mean - 0.5) <= Z * r2.mcse + 0.01


def test_params_selecting_nothing():
    model = nn.Linear(2, 1)
    data = (torch.randn(10, 2), torch.zeros(10, 1))
    with pytest.raises(ValueError, match="params"):
        llc.estimate_llc(model, data, params=["missing"], progress=False)
    with pytest.raises(ValueError, match="params"):
        llc.estimate_llc(model, data, params=lambda name, p: False, progress=False)
    with pytest.raises(ValueError, match="params"):
        hessian_bounds(model, data, params=[])
