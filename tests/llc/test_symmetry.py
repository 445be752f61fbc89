"""Moves along the symmetry orbits of linear layers (llc.symmetry, llc.transport): the loss is
unchanged, the moves sample the localized posterior's conditional along an orbit exactly
(against quadrature), and the estimator records them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

import llc
from llc.adaptation import orbit_scale
from llc.potential import Potential
from llc.symmetry import Link, cayley, move, propose
from llc.transport import transport


def _potential(model, n=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, model[0].in_features, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
    return Potential(model, (x, y), dtype=torch.float64)


def _model(*layers):
    torch.manual_seed(0)
    return nn.Sequential(*layers).double()


def test_links_of_linear_layers_joined_by_the_identity():
    dln = _potential(_model(nn.Linear(3, 4, bias=False), nn.Linear(4, 5), nn.Linear(5, 2)))
    assert len(dln.links) == 2
    first, second = dln.links
    assert (first.width, first.bias, first.jacobian_power) == (4, None, 3 - 5)
    assert second.width == 5 and second.bias is not None and second.jacobian_power == 4 + 1 - 2
    relu = _potential(_model(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    assert relu.links == ()


def test_a_move_leaves_the_outputs_unchanged():
    model = _model(nn.Linear(3, 4), nn.Linear(4, 5, bias=False), nn.Linear(5, 2))
    pot = _potential(model)
    gen = torch.Generator().manual_seed(1)
    w = pot.center + 0.3 * torch.randn(6, pot.dim, generator=gen, dtype=torch.float64)
    x = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    names = [n for n, _ in model.named_parameters()]

    def outputs(flat):
        params, start = {}, 0
        for name, p in model.named_parameters():
            params[name] = flat[start : start + p.numel()].view_as(p)
            start += p.numel()
        return functional_call(model, params, (x,))

    moved = w
    for link in pot.links:
        xs, _ = propose(gen, 6, link, 0.5, w.device)
        always = torch.full((6,), -math.inf, dtype=torch.float64)
        moved, accepted = move(moved, link, xs, always, pot.center, 0.3)
        assert accepted.all()
    assert (moved - w).abs().max() > 0.05  # the weights moved
    for c in range(6):
        torch.testing.assert_close(outputs(moved[c]), outputs(w[c]), rtol=1e-10, atol=1e-10)
    assert names  # the flat order is named_parameters' order


def test_cayley_pairs_a_transform_with_its_inverse():
    x = 0.4 * torch.randn(4, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a, inv, log_det = cayley(x)
    torch.testing.assert_close(a @ inv, torch.eye(5, dtype=torch.float64).expand(4, 5, 5))
    torch.testing.assert_close(log_det, torch.linalg.slogdet(a)[1])
    a_neg, _, log_det_neg = cayley(-x)
    torch.testing.assert_close(a_neg, inv)
    torch.testing.assert_close(log_det_neg, -log_det)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_moves_sample_the_conditional_along_a_scalar_orbit(seed):
    """Width 1 between a (1×2) and a (3×1) layer: the orbit is ``(a w₁, w₂/a)``, a ≠ 0, with
    density ``∝ exp(−(γ/2)(‖a w₁ − c₁‖² + ‖w₂/a − c₂‖²)) |a|^(2−3)`` against Haar's ``da/|a|``.
    E[a²]‖w₁‖² by quadrature against 2,000 independent chains after 1,500 moves each."""
    gamma, chains = 0.7, 2000
    w1, w2 = torch.tensor([0.6, -0.4]), torch.tensor([1.1, 0.3, -0.8])
    c1, c2 = torch.tensor([0.5, 0.1]), torch.tensor([0.9, 0.5, -0.2])
    link = Link(slice(0, 2), (1, 2), None, slice(2, 5), (3, 1))
    center = torch.cat([c1, c2]).double()
    w = torch.cat([w1, w2]).double().expand(chains, 5).clone()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(1500):
        x, log_u = propose(gen, chains, link, 1.0, w.device)
        w, _ = move(w, link, x, log_u, center, gamma)
    sampled = (w[:, :2] ** 2).sum(1).numpy()  # ‖a w₁‖²
    a = np.concatenate([-np.geomspace(30, 1e-3, 200_000), np.geomspace(1e-3, 30, 200_000)])
    w1n, w2n, c1n, c2n = (t.double().numpy() for t in (w1, w2, c1, c2))
    energy = ((a[:, None] * w1n - c1n) ** 2).sum(1) + ((w2n / a[:, None] - c2n) ** 2).sum(1)
    dens = np.exp(-0.5 * gamma * energy) * np.abs(a) ** (2 - 3) / np.abs(a)
    weights = dens * np.gradient(a)
    exact = (weights * a**2 * (w1n**2).sum()).sum() / weights.sum()
    se = sampled.std(ddof=1) / math.sqrt(chains)
    assert abs(sampled.mean() - exact) < 4 * se, (sampled.mean(), exact, se)


def test_the_scale_follows_the_acceptance():
    state = orbit_scale.init(2, scale=0.1)
    for _ in range(20):
        state = orbit_scale.update(state, [0.9, 0.0], target=0.3)
    scales, acceptance = orbit_scale.final(state)
    assert scales[0] > 0.1 > scales[1]
    assert acceptance == pytest.approx((0.9, 0.0))
    for _ in range(1000):
        state = orbit_scale.update(state, [1.0, 0.0], target=0.3)
    assert orbit_scale.final(state)[0][0] == pytest.approx(orbit_scale.MAX_SCALE)


def test_transport_carries_the_chains_out_and_stops():
    pot = _potential(_model(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)))
    start = pot.center.expand(3, -1).clone()
    gen = torch.Generator().manual_seed(0)
    out = transport(start, pot.links, pot.center, 0.3, gen, max_rounds=1000, window=50)
    assert out.rounds <= 1000 and out.distance[1] > out.distance[0] == 0
    assert 0.15 < out.acceptance[0] < 0.45
    again = transport(start, pot.links, pot.center, 0.3, torch.Generator().manual_seed(0),
                      max_rounds=1000, window=50)  # fmt: skip
    assert torch.equal(again.position, out.position)


def test_the_estimator_records_the_moves_when_asked():
    model = _model(
        nn.Linear(4, 3, bias=False), nn.Linear(3, 3, bias=False), nn.Linear(3, 4, bias=False)
    )
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 4, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
    kw = dict(seed=0, progress=False, dtype=torch.float64, num_chains=3, max_draws=2000)
    with_moves = llc.estimate_llc(model, (x, y), orbit_moves=True, **kw)
    record = with_moves.config["transport"]
    assert record["links"] == 2 and record["rounds"] > 0
    assert record["distance_after"] > record["distance_before"]
    without = llc.estimate_llc(model, (x, y), **kw)  # off by default
    assert without.config["transport"] == "none"
    with pytest.raises(TypeError, match="orbit_moves"):
        llc.estimate_llc(model, (x, y), orbit_moves="yes", **kw)
