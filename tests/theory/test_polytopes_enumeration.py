"""Exact region enumeration and region-count bounds of theory.polytopes."""

import itertools
from math import comb, prod

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from torch import nn

from theory.models import random_mlp
from theory.polytopes import (
    activation_codes,
    arrangement_regions,
    boundaries_crossed,
    bounded_regions,
    central_arrangement_regions,
    enumerate_regions,
    local_affine_map,
    plot_regions_2d,
    region_bounds,
)


def vertex_box(model):
    """Half-width of a box containing every vertex of the first layer's arrangement."""
    W = model[0].weight.detach().numpy()
    b = model[0].bias.detach().numpy()
    n, d = W.shape
    pts = [np.linalg.solve(W[list(S)], -b[list(S)]) for S in itertools.combinations(range(n), d)]
    return 1.5 * np.abs(np.array(pts)).max() + 1.0


def is_bounded(region, lo, hi):
    """Independent LP check that a region's closure stays off the box boundary."""
    A, b = region.A[: -2 * lo.size], region.b[: -2 * lo.size]
    for j in range(lo.size):
        for s in (1.0, -1.0):
            c = np.zeros(lo.size)
            c[j] = s
            x = linprog(c, A_ub=A, b_ub=b, bounds=list(zip(lo, hi)), method="highs").x
            if min(x[j] - lo[j], hi[j] - x[j]) < 1e-6 * (hi[j] - lo[j]):
                return False
    return True


def check_partition(enum, model):
    """Regions are distinct, their interior points have their codes, and the
    local affine maps are right; in 1-D/2-D the volumes add up to the box."""
    codes = enum.codes
    assert len({c.tobytes() for c in codes}) == len(enum)
    pts = torch.as_tensor(np.stack([r.interior_point for r in enum]))
    assert np.array_equal(activation_codes(model, pts).numpy(), codes)
    m = local_affine_map(model, pts)
    for k, r in enumerate(enum):
        assert r.radius > 0 and np.all(r.A @ r.interior_point < r.b)
        np.testing.assert_allclose(r.out_A, m.A[k].numpy(), atol=1e-12)
        np.testing.assert_allclose(r.out_c, m.c[k].numpy(), atol=1e-12)
    d = enum.lower.size
    if d <= 2:
        total = sum(r.volume for r in enum)
        assert total == pytest.approx(float(np.prod(enum.upper - enum.lower)), rel=1e-9)


@pytest.mark.parametrize("n,d", [(3, 1), (7, 1), (6, 2), (12, 2), (4, 3), (7, 3)])
@pytest.mark.parametrize("seed", [0, 1])
def test_one_layer_general_position_counts(n, d, seed):
    model = random_mlp([d, n, 1], seed)
    M = vertex_box(model)
    lo, hi = -M * np.ones(d), M * np.ones(d)
    methods = ["lp", "polygon"] if d == 2 else ["lp"]
    for method in methods:
        enum = enumerate_regions(model, lo, hi, method=method, progress=False)
        assert len(enum) == arrangement_regions(n, d) == sum(comb(n, i) for i in range(d + 1))
        assert len(enum) == region_bounds([d, n]).serra
        check_partition(enum, model)
    nb = sum(is_bounded(r, lo, hi) for r in enum)
    assert nb == bounded_regions(n, d) == comb(n - 1, d)


@pytest.mark.parametrize("n,d", [(5, 2), (9, 2), (4, 3), (6, 3)])
def test_central_arrangement_counts(n, d):
    model = random_mlp([d, n, 1], n + d, bias_scale=0.0)
    enum = enumerate_regions(model, -np.ones(d), np.ones(d), progress=False)
    assert (
        len(enum) == central_arrangement_regions(n, d) == 2 * sum(comb(n - 1, i) for i in range(d))
    )
    check_partition(enum, model)


@pytest.mark.parametrize("n", [1, 5, 20])
def test_one_dimensional_input_gives_n_plus_one(n):
    model = random_mlp([1, n, 2], n)
    M = vertex_box(model)
    enum = enumerate_regions(model, [-M], [M], progress=False)
    assert len(enum) == n + 1
    check_partition(enum, model)


@pytest.mark.parametrize(
    "seed,widths", [(0, [1, 8, 8, 1]), (1, [1, 6, 6, 6, 2]), (2, [1, 12, 5, 1])]
)
def test_deep_1d_matches_walk_and_sampling(seed, widths):
    model = random_mlp(widths, seed)
    lo, hi = -3.0, 3.0
    enum = enumerate_regions(model, [lo], [hi], progress=False)
    check_partition(enum, model)
    # 1-D regions are intervals: the exact walk meets each once
    walk = boundaries_crossed(model, torch.tensor([lo]), torch.tensor([hi]))
    assert len(enum) == walk.n_crossings + 1
    assert {c.tobytes() for c in enum.codes} == {c.tobytes() for c in walk.codes}
    n = 200_001
    xs = torch.linspace(lo, hi, n, dtype=torch.float64)[:, None]
    sampled = {c.tobytes() for c in activation_codes(model, xs).numpy()}
    enumerated = {c.tobytes() for c in enum.codes}
    assert sampled <= enumerated
    h = (hi - lo) / (n - 1)
    assert all(r.code.tobytes() in sampled for r in enum if r.radius > h / 2)
    assert len(enum) <= region_bounds(widths[:-1]).serra


@pytest.mark.parametrize(
    "seed,widths,act",
    [
        (0, [2, 8, 8, 1], nn.ReLU),
        (1, [2, 6, 6, 6, 1], nn.ReLU),
        (2, [2, 10, 4, 2], nn.ReLU),
        (3, [2, 6, 6, 1], lambda: nn.LeakyReLU(0.2)),
    ],
)
def test_deep_2d_matches_sampling_and_bounds(seed, widths, act):
    model = random_mlp(widths, seed, act=act)
    lo, hi = np.array([-2.0, -2.0]), np.array([2.0, 2.0])
    e_poly = enumerate_regions(model, lo, hi, method="polygon", progress=False)
    e_lp = enumerate_regions(model, lo, hi, method="lp", progress=False)
    assert {c.tobytes() for c in e_poly.codes} == {c.tobytes() for c in e_lp.codes}
    check_partition(e_poly, model)
    check_partition(e_lp, model)
    n = 801
    g = torch.linspace(-2, 2, n, dtype=torch.float64)
    xs = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    sampled = {c.tobytes() for c in activation_codes(model, xs).numpy()}
    enumerated = {c.tobytes() for c in e_poly.codes}
    assert sampled <= enumerated
    h = 4.0 / (n - 1)
    assert all(r.code.tobytes() in sampled for r in e_poly if r.radius > h / np.sqrt(2))
    b = region_bounds(widths[:-1])
    assert len(e_poly) <= (b.serra if act is nn.ReLU else b.product)


def test_deep_3d_lp_consistency():
    model = random_mlp([3, 6, 5, 1], 7)
    lo, hi = -2 * np.ones(3), 2 * np.ones(3)
    e1 = enumerate_regions(model, lo, hi, progress=False)
    e2 = enumerate_regions(model, lo, hi, bbox_lp=True, lp_backend="linprog", progress=False)
    assert {c.tobytes() for c in e1.codes} == {c.tobytes() for c in e2.codes}
    check_partition(e1, model)
    g = torch.Generator().manual_seed(0)
    xs = 4 * torch.rand(20_000, 3, generator=g, dtype=torch.float64) - 2
    sampled = {c.tobytes() for c in activation_codes(model, xs).numpy()}
    assert sampled <= {c.tobytes() for c in e1.codes}
    assert len(e1) <= region_bounds([3, 6, 5]).serra


def test_max_regions_truncates():
    model = random_mlp([2, 8, 8, 1], 0)
    enum = enumerate_regions(model, [-2, -2], [2, 2], max_regions=5, progress=False)
    assert len(enum) == 5 and enum.truncated


def _serra_by_brute_force(widths):
    n0, ns = widths[0], widths[1:]
    total = 0
    for js in itertools.product(*[range(n + 1) for n in ns]):
        ok, cap = True, n0
        for j, n in zip(js, ns):
            if j > min(cap, n):
                ok = False
                break
            cap = min(cap, n - j)
        if ok:
            total += prod(comb(n, j) for n, j in zip(ns, js))
    return total


@pytest.mark.parametrize("widths", [[2, 3], [2, 2, 2], [3, 4, 2, 5], [2, 6, 6, 6], [4, 3, 5, 2, 6]])
def test_serra_bound_formula(widths):
    b = region_bounds(widths)
    assert b.serra == _serra_by_brute_force(widths)
    assert b.one_layer == arrangement_regions(widths[1], widths[0])
    assert b.serra <= b.product


def test_serra_bound_known_values():
    assert region_bounds([2, 2, 2]).serra == 11  # 1·4 + 2·3 + 1·1, worked by hand
    assert region_bounds([2, 2, 2]).product == 16
    assert region_bounds([1, 3, 4, 2]).serra == 4 * 5 * 3  # 1-D input: Π (n_l + 1)
    assert region_bounds([5, 7]).serra == arrangement_regions(7, 5)
    assert region_bounds([3]).serra == 1


def test_arrangement_formulas_small_cases():
    assert arrangement_regions(4, 2) == 11 and bounded_regions(4, 2) == 3
    assert central_arrangement_regions(4, 2) == 8  # 4 lines through 0: 8 sectors
    assert central_arrangement_regions(3, 3) == 8  # coordinate planes: 8 octants
    assert arrangement_regions(3, 5) == 8


def test_plot_regions_2d():
    import matplotlib

    matplotlib.use("Agg")
    model = random_mlp([2, 6, 6, 1], 1)
    fig = plot_regions_2d(model, [-2, -2], [2, 2], color_by="n_active")
    enum = enumerate_regions(model, [-2, -2], [2, 2], progress=False)
    assert len(fig.axes[0].collections[0].get_paths()) == len(enum)
    assert enum.plot(color_by="output") is not None


def test_bad_box_and_options():
    model = random_mlp([2, 4, 1], 0)
    with pytest.raises(ValueError, match="lower must be < upper"):
        enumerate_regions(model, [0, 1], [1, 1])
    with pytest.raises(ValueError, match="lower/upper have dimension 3"):
        enumerate_regions(model, [0, 0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="lower and upper must be 1-D"):
        enumerate_regions(model, [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="method"):
        enumerate_regions(random_mlp([3, 4, 1], 0), [0, 0, 0], [1, 1, 1], method="polygon")
    with pytest.raises(ValueError, match="tol"):
        enumerate_regions(model, [0, 0], [1, 1], tol=0)
    with pytest.raises(TypeError, match="model"):
        enumerate_regions(nn.Sequential(nn.Linear(2, 3), nn.Sigmoid()), [0, 0], [1, 1])
    with pytest.raises(ValueError, match="widths"):
        region_bounds([0, 3])
    with pytest.raises(TypeError, match="widths"):
        region_bounds(5)
