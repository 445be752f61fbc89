"""Bounds on the LLC: exact values, Lanczos vs dense, ReLU symmetries, bad input."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

from llc.bounds import Bounds, bounds, dimension_bound, hessian_bounds, symmetry_bound
from theory.exact import deep_linear_network, reduced_rank_regression
from theory.models import DeepLinearNetwork, normal_form_teacher, teacher_student_data

matplotlib.use("Agg")


def relu_with_dead_units(seed: int = 0) -> tuple[nn.Sequential, torch.Tensor]:
    """2→4→1 ReLU net: units 0, 1 active (hyperplanes through the data), 2, 3 dead."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.5], [-0.3, 1.0], [0.7, -0.2], [0.1, 0.4]]))
        net[0].bias.copy_(torch.tensor([0.2, -0.1, -12.0, -15.0]))
        net[2].weight.copy_(torch.tensor([[1.2, -0.8, 0.6, -0.9]]))
        net[2].bias.fill_(0.3)
    x = torch.randn(2000, 2, generator=g, dtype=torch.float64)
    return net, x


# ---- Hessian / Gauss–Newton bounds on exact true parameters -------------------------------


@pytest.mark.parametrize(
    "widths, rank, tangent",
    # tangent: dimension of the image of the differential of (W_1..W_L) ↦ W_L⋯W_1 at the
    # normal form; 0 at the origin, r(H_0 + H_L) − r² for two layers.
    [([5, 3, 5], 0, 0), ([3, 3, 3], 1, 5), ([5, 4, 5], 2, 16), ([4, 3, 2, 3], 1, 6)],
)
def test_gauss_newton_brackets_dln(widths, rank, tangent):
    teacher = normal_form_teacher(widths, rank, seed=0)
    x, y = teacher_student_data(teacher, 1000, widths[0], noise_std=0.5, seed=1)
    lam = float(deep_linear_network(widths, rank).value)
    b = hessian_bounds(teacher, (x, y))
    d = sum(a * c for a, c in zip(widths[:-1], widths[1:]))
    assert b.d == d and b.rank == tangent
    assert b.lower == tangent / 2 and b.upper == tangent / 2 + (d - tangent) / 4
    assert b.contains(lam)
    # the exact zeros are at rounding level, far below the threshold
    assert np.all(np.abs(b.spectrum[tangent:]) <= 1e-10 * abs(b.spectrum[0]))


def test_hessian_of_noisy_loss_overcounts_the_rank():
    """Why Gauss–Newton is the default: residual terms lift the zero eigenvalues at finite n."""
    teacher = normal_form_teacher([5, 3, 5], 0, seed=0)
    x, y = teacher_student_data(teacher, 1000, 5, noise_std=0.5, seed=1)
    lam = float(deep_linear_network([5, 3, 5], 0).value)
    assert hessian_bounds(teacher, (x, y)).contains(lam)
    bh = hessian_bounds(teacher, (x, y), method="hessian")
    assert bh.rank == bh.d and not bh.contains(lam)


@pytest.mark.parametrize("m, h, n_out, r", [(4, 3, 3, 1), (3, 2, 4, 0)])
def test_rrr_brackets(m, h, n_out, r):
    teacher = normal_form_teacher([m, h, n_out], r, seed=2)
    x, y = teacher_student_data(teacher, 800, m, noise_std=1.0, seed=3)
    lam = float(reduced_rank_regression(m, h, n_out, r).value)
    assert bounds(teacher, (x, y)).contains(lam)


def _train_dln(widths, x, y, seed, steps=2000):
    torch.manual_seed(seed)
    model = DeepLinearNetwork(widths)
    with torch.no_grad():
        for layer in model:
            layer.weight.normal_(0.0, 0.05)  # small init: gradient descent finds low-rank solutions
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * ((model(x) - y) ** 2).sum(1).mean()).backward()
        opt.step()
    return model


@pytest.mark.parametrize("widths, rank", [([3, 3, 3], 1), ([5, 4, 5], 2)])
def test_default_brackets_trained_dln(widths, rank):
    teacher = normal_form_teacher(widths, rank, seed=0)
    x, y = teacher_student_data(teacher, 1000, widths[0], noise_std=0.5, seed=1)
    student = _train_dln(widths, x, y, seed=0)
    lam = float(deep_linear_network(widths, rank).value)
    b = bounds(student, (x, y))
    assert b.contains(lam), (b.lower, b.upper, lam)
    # fitted noise lifts degenerate eigenvalues to O(n^{-1/2}) μ_max: the rank can exceed the true
    # one (measured: 18 vs 16 for [5, 4, 5]), never fall below it here
    assert b.rank >= hessian_bounds(teacher, (x, y)).rank


def test_rank_decreases_with_rtol_and_plot():
    teacher = normal_form_teacher([3, 3, 3], 1, seed=0)
    x, y = teacher_student_data(teacher, 500, 3, noise_std=0.5, seed=1)
    student = _train_dln([3, 3, 3], x, y, seed=1, steps=500)
    ranks = [hessian_bounds(student, (x, y), rtol=t).rank for t in (1e-12, 1e-4, 1e-2, 0.3)]
    assert ranks == sorted(ranks, reverse=True) and ranks[0] > ranks[-1]
    b = bounds(student, (x, y))
    fig = b.plot(values={"exact λ": 4.0})
    assert isinstance(fig, matplotlib.figure.Figure)
    line_y = [ln.get_ydata()[0] for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert np.isclose(line_y[0], b.threshold)


# ---- Lanczos against the dense matrix -------------------------------------------------------


@pytest.mark.parametrize("method", ["gauss_newton", "hessian"])
def test_lanczos_matches_dense(method):
    teacher = normal_form_teacher([5, 4, 5], 2, seed=0)
    # noiseless: at the teacher the Hessian then equals G, with an exact null space
    x, y = teacher_student_data(teacher, 400, 5, seed=1)
    dense = hessian_bounds(teacher, (x, y), method=method, rtol=1e-6)
    lanc = hessian_bounds(teacher, (x, y), method=method, rtol=1e-6, max_dense=10, seed=3)
    assert lanc.config["matrix"] == "lanczos" and dense.config["matrix"] == "dense"
    assert lanc.config["complete"]
    assert lanc.rank == dense.rank
    top = lanc.spectrum[: lanc.rank]
    np.testing.assert_allclose(top, dense.spectrum[: lanc.rank], rtol=1e-8)


def test_gauss_newton_cross_entropy_is_the_fisher():
    """G = (1/n) Σ Jᵀ (diag p − p pᵀ) J for a linear softmax classifier, computed by hand."""
    g = torch.Generator().manual_seed(0)
    model = nn.Linear(3, 4).double()
    x = torch.randn(300, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (300,), generator=g)
    b = hessian_bounds(model, (x, y), loss="cross_entropy", rtol=1e-9)
    with torch.no_grad():
        p = torch.softmax(model(x), -1)
    xa = torch.cat([x, torch.ones(300, 1, dtype=torch.float64)], 1)  # weight then bias columns
    cov = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    fisher = torch.einsum("nab,ni,nj->aibj", cov, xa, xa).reshape(16, 16) / 300
    # reorder: flat parameters are weight (4×3 row-major) then bias (4)
    order = [a * 4 + i for a in range(4) for i in range(3)] + [a * 4 + 3 for a in range(4)]
    fisher = fisher[order][:, order]
    np.testing.assert_allclose(np.sort(b.spectrum), np.linalg.eigvalsh(fisher.numpy()), atol=1e-12)
    assert (
        b.rank == 12
    )  # softmax is invariant to adding a constant to all logits: 4 null directions


# ---- ReLU symmetries and the combined interval ----------------------------------------------


def test_symmetry_bound_counts_dead_units_and_rescalings():
    net, x = relu_with_dead_units()
    s = symmetry_bound(net, x)
    # dead units 2, 3: 2 incoming weights + bias + 1 outgoing each = 8; active units 0, 1: 2
    assert s.free_directions == 10 and s.d == 17 and s.upper == (17 - 10) / 2
    assert s.config["layers"] == [{"units": 4, "dead": 2, "rescalings": 2}]
    assert symmetry_bound(net, (x, torch.zeros(len(x), 1))).upper == s.upper


def test_relu_interval_collapses_to_the_exact_value():
    """Active part identifiable up to rescaling: λ = (d − k)/2 = rank/2, both ends agree."""
    net, x = relu_with_dead_units()
    with torch.no_grad():
        y = net(x)
    # exact true parameter and noiseless data: only rounding separates the null space
    b = bounds(net, (x, y), rtol=1e-9)
    assert b.lower == b.upper == 3.5
    assert b.lower_source == "hessian" and b.upper_source == "symmetry"
    assert [p.upper_source for p in b.parts] == ["dimension", "hessian", "symmetry"]
    assert b.rank == 7
    # the default threshold μ_max/√n drops the smallest true eigenvalue (2.0e-2 μ_max < 2.2e-2):
    # a wider interval, still bracketing
    default = bounds(net, (x, y))
    assert default.rank == 6 and default.contains(3.5)


def test_dimension_bound_and_params():
    model = DeepLinearNetwork([3, 2, 4])
    assert dimension_bound(model).upper == 7.0
    assert dimension_bound(model, params=["1"]).upper == 4.0
    assert isinstance(dimension_bound(model), Bounds)


# ---- bad input ----------------------------------------------------------------------------------


def test_bad_input():
    teacher = normal_form_teacher([3, 2, 3], 1, seed=0)
    x, y = teacher_student_data(teacher, 50, 3, seed=1)
    for rtol in (0, -1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="rtol"):
            hessian_bounds(teacher, (x, y), rtol=rtol)
    with pytest.raises(ValueError, match="loss must return one value per sample"):
        hessian_bounds(teacher, (x, y), loss=lambda out, t: (out - t) ** 2)
    with pytest.raises(ValueError, match="loss must be differentiable"):
        hessian_bounds(teacher, (x, y), loss=lambda out, t: (out.detach() - t).abs().sum(1))
    with pytest.raises(ValueError, match="params"):
        hessian_bounds(teacher, (x, y), params=["nonexistent"])
    with pytest.raises(ValueError, match="method"):
        hessian_bounds(teacher, (x, y), method="fisher")
    with pytest.raises(TypeError, match="model"):
        symmetry_bound(nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1)), x[:, :2])
    with pytest.raises(TypeError, match="model"):
        symmetry_bound(teacher.__class__.__mro__[0], x)  # a class, not a module
