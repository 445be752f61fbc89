"""Codes, local affine maps, distances and segment walks of theory.polytopes."""

import numpy as np
import pytest
import torch
from torch import nn

from theory.models import random_mlp
from theory.polytopes import (
    activation_codes,
    boundaries_crossed,
    count_regions,
    distance_to_boundary,
    local_affine_map,
    polytope_density,
)


def hook_codes(model, x):
    """Codes from the modules' own forward: sign of each input to an activation."""
    codes, h = [], x
    for m in model:
        if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.PReLU)):
            codes.append(h > 0)
        h = m(h)
    return torch.cat(codes, dim=-1), h


@pytest.mark.parametrize("act", [nn.ReLU, lambda: nn.LeakyReLU(0.1), nn.PReLU])
@pytest.mark.parametrize("seed", [0, 1])
def test_codes_and_local_map_match_forward(act, seed):
    model = random_mlp([3, 7, 5, 6, 2], seed, act=act)
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(10 + seed), dtype=torch.float64)
    codes = activation_codes(model, x)
    ref, y = hook_codes(model, x)
    assert codes.dtype == torch.bool and codes.shape == (64, 18)
    assert torch.equal(codes, ref)
    m = local_affine_map(model, x)
    assert torch.equal(m.code, codes)
    torch.testing.assert_close((m.A @ x[..., None])[..., 0] + m.c, y, atol=1e-12, rtol=0)
    # Jacobian against autograd, pre-activations against the layers
    jac = torch.autograd.functional.jacobian(lambda v: model(v), x[0])
    torch.testing.assert_close(m.A[0], jac, atol=1e-12, rtol=0)
    pre = []
    h = x
    for mod in model:
        if isinstance(mod, (nn.ReLU, nn.LeakyReLU, nn.PReLU)):
            pre.append(h)
        h = mod(h)
    torch.testing.assert_close(m.evaluate_pre(x), torch.cat(pre, -1).detach(), atol=1e-12, rtol=0)


def test_single_point_float32_nested_and_modulelist():
    inner = random_mlp([2, 4, 3], 3, dtype=torch.float32)
    model = nn.Sequential(nn.Sequential(inner[0], inner[1]), nn.Identity(), inner[2])
    x = torch.tensor([0.3, -0.7])
    c = activation_codes(model, x)
    assert c.shape == (4,)
    assert torch.equal(c, activation_codes(nn.ModuleList(list(inner)), x[None])[0])
    m = local_affine_map(model, x)
    assert m.A.shape == (3, 2) and m.A.dtype == torch.float64
    torch.testing.assert_close(m.A @ x.double() + m.c, model(x).double(), atol=1e-6, rtol=0)


def test_library_leaves_model_and_rng_alone():
    model = random_mlp([2, 5, 5, 1], 0).train()
    before = [p.clone() for p in model.parameters()]
    state = torch.get_rng_state()
    x = torch.randn(10, 2, dtype=torch.float64)
    state = torch.get_rng_state()
    activation_codes(model, x)
    local_affine_map(model, x)
    distance_to_boundary(model, x)
    boundaries_crossed(model, x[0], x[1])
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def _exit_time_bisection(model, x, u, t_max=50.0, iters=80):
    """Exit time of the ray x + t u from x's region, using codes only (the region
    is convex, so the code is constant on [0, t_exit) and different after)."""
    c0 = activation_codes(model, x)
    if torch.equal(activation_codes(model, x + t_max * u), c0):
        return None
    lo, hi = 0.0, t_max
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if torch.equal(activation_codes(model, x + mid * u), c0):
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@pytest.mark.parametrize(
    "seed,widths", [(0, [2, 8, 8, 1]), (1, [5, 10, 6, 3]), (2, [3, 6, 6, 6, 2])]
)
def test_distance_to_boundary_matches_bisection(seed, widths):
    model = random_mlp(widths, seed)
    g = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(6, widths[0], generator=g, dtype=torch.float64)
    dist, idx = distance_to_boundary(model, x, return_index=True)
    m = local_affine_map(model, x)
    for k in range(x.shape[0]):
        d = float(dist[k])
        # toward the nearest hyperplane the exit time is exactly d
        a = m.pre_A[k, idx[k]]
        z = float(a @ x[k] + m.pre_c[k, idx[k]])
        u = -np.sign(z) * a / a.norm()
        t = _exit_time_bisection(model, x[k], u)
        assert t == pytest.approx(d, rel=1e-9, abs=1e-12)
        # any other direction exits no earlier
        for _ in range(10):
            v = torch.randn(widths[0], generator=g, dtype=torch.float64)
            t = _exit_time_bisection(model, x[k], v / v.norm())
            if t is not None:
                assert t >= d * (1 - 1e-9)
        # and inside the ball the local affine map is exact
        w = torch.randn(widths[0], generator=g, dtype=torch.float64)
        xp = x[k] + 0.9 * d * w / w.norm()
        torch.testing.assert_close(model(xp), m.A[k] @ xp + m.c[k], atol=1e-10, rtol=0)


@pytest.mark.parametrize(
    "seed,widths", [(0, [2, 10, 10, 1]), (1, [3, 12, 8, 8, 2]), (2, [2, 6, 1])]
)
def test_boundaries_crossed_matches_dense_sampling(seed, widths):
    model = random_mlp(widths, seed)
    g = torch.Generator().manual_seed(200 + seed)
    x0 = 2 * torch.randn(widths[0], generator=g, dtype=torch.float64)
    x1 = 2 * torch.randn(widths[0], generator=g, dtype=torch.float64)
    res = boundaries_crossed(model, x0, x1)
    n = 40_001
    ts = torch.linspace(0, 1, n, dtype=torch.float64)
    codes = activation_codes(model, x0 + ts[:, None] * (x1 - x0)).numpy()
    # every sample's code is the code of the piece the walk says it lies in
    piece = np.searchsorted(res.t, ts.numpy(), side="right")
    near = np.min(np.abs(ts.numpy()[:, None] - res.t[None]), axis=1) < 1e-9 if res.t.size else 0
    ok = ~np.asarray(near, dtype=bool)
    assert np.array_equal(codes[ok], res.codes[piece[ok]])
    changes = int(np.any(codes[1:] != codes[:-1], axis=1).sum())
    gaps = np.diff(np.concatenate([[0.0], res.t, [1.0]]))
    if gaps.min() > 1.0 / (n - 1):
        assert changes == res.n_crossings
    else:
        assert changes <= res.n_crossings
    assert res.n_crossings >= res.hamming
    assert res.n_crossings > 0
    # crossing points lie on a boundary
    if res.n_crossings:
        d = distance_to_boundary(model, torch.as_tensor(res.points))
        assert float(d.max()) < 1e-9
    assert res.density == pytest.approx(res.n_crossings / float((x1 - x0).norm()))


def test_polytope_density_sums_segments():
    model = random_mlp([2, 10, 10, 1], 4)
    path = torch.tensor([[-2.0, -2.0], [0.0, 1.0], [2.0, 2.0], [2.5, -1.0]], dtype=torch.float64)
    pd = polytope_density(model, path)
    per = [boundaries_crossed(model, a, b).n_crossings for a, b in zip(path[:-1], path[1:])]
    assert pd.counts.tolist() == per
    assert pd.total_length == pytest.approx(float((path[1:] - path[:-1]).norm(dim=1).sum()))
    assert pd.density == pytest.approx(sum(per) / pd.total_length)
    assert np.all(np.diff(pd.positions) > 0) and pd.positions.size == sum(per)


def test_count_regions_histogram():
    model = random_mlp([2, 6, 6, 1], 5)
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    rc = count_regions(model, x)
    codes = activation_codes(model, x)
    assert rc.n_regions == len({tuple(c) for c in codes.tolist()})
    assert int(rc.counts.sum()) == 500 and torch.all(rc.counts[:-1] >= rc.counts[1:])
    assert torch.equal(rc.codes[rc.inverse], codes)


def test_plots_return_figures():
    import matplotlib

    matplotlib.use("Agg")
    model = random_mlp([2, 6, 6, 1], 5)
    x = torch.randn(100, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert count_regions(model, x).plot() is not None
    assert polytope_density(model, x[:5]).plot() is not None


class _Custom(nn.Module):
    def forward(self, x):
        return x


@pytest.mark.parametrize(
    "layer,match",
    [
        (nn.Tanh(), "not piecewise linear"),
        (nn.ReLU6(), "two breakpoints"),
        (_Custom(), "unsupported"),
    ],
)
def test_bad_activation_errors(layer, match):
    model = nn.Sequential(nn.Linear(2, 3), layer, nn.Linear(3, 1))
    with pytest.raises(TypeError, match="model") as err:
        activation_codes(model, torch.zeros(1, 2))
    assert match in str(err.value)


def test_bad_shapes_errors():
    model = random_mlp([2, 3, 1], 0)
    with pytest.raises(ValueError, match="x has input dimension 3"):
        activation_codes(model, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="x must have shape"):
        local_affine_map(model, torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match="x0 and x1"):
        boundaries_crossed(model, torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="path"):
        polytope_density(model, torch.zeros(1, 2))
    with pytest.raises(TypeError, match="model"):
        activation_codes("not a model", torch.zeros(1, 2))


def test_edge_models_linear_only_and_activation_first():
    from theory.polytopes import enumerate_regions

    lin = nn.Linear(2, 3).double()
    x = torch.randn(5, 2, dtype=torch.float64)
    assert activation_codes(lin, x).shape == (5, 0)
    assert count_regions(lin, x).n_regions == 1
    assert torch.isinf(distance_to_boundary(lin, x)).all()
    assert boundaries_crossed(lin, x[0], x[1]).n_crossings == 0
    assert len(enumerate_regions(lin, [-1, -1], [1, 1], progress=False)) == 1
    # an activation on the input itself: the coordinate axes are boundaries
    model = nn.Sequential(nn.ReLU(), nn.Linear(2, 1)).double()
    assert torch.equal(activation_codes(model, x), x > 0)
    assert len(enumerate_regions(model, [-1, -1], [1, 1], progress=False)) == 4
