"""Chains carried from one estimate to the next: the potential's change over them decides."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from llc import Potential
from llc._carry import MAX_SHIFT, PROBE_SAMPLES, carried_positions, hand_over, probe_indices
from llc.kernels import KERNELS
from llc.sampling import Chains

pytestmark = pytest.mark.usefixtures("one_thread")

GAMMA, NBETA = 0.3, 40.0


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def _params(center):
    return KERNELS["sgld"].params(step_size=1e-3, localization=GAMMA, nbeta=NBETA, center=center)


def _chains(pot, num=6, scale=0.3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return pot.center + scale * torch.randn(num, pot.dim, generator=g)


def _chains_of(pot, num=6, batch=64):
    return Chains.from_seed(pot, num, seed=0, batch_size=batch)


def _exact_u(pot, w, center):
    """``nβ L_n(w_c) + γ/2 ‖w_c − center‖²`` from the one-point loss path, float64."""
    loss = torch.stack([pot.losses(v).double().mean() for v in w])
    return NBETA * loss + 0.5 * GAMMA * ((w - center).double() ** 2).sum(1)


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 3, generator=g), torch.randn(300, 2, generator=g)
    return _net(), x, y


def test_same_potential_carries_with_no_change(problem):
    model, x, y = problem
    pot = Potential(model, (x, y))
    params, w = _params(pot.center), _chains(pot)
    carry = hand_over(_chains_of(pot), params, np.zeros((6, 10)), w)
    torch.testing.assert_close(carry.energy, _exact_u(pot, w, pot.center))
    pos, sd = carried_positions(carry, _chains_of(pot), params)
    torch.testing.assert_close(pos, w)
    assert sd == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("scale", [0.5, 20.0])
def test_a_moved_centre_shifts_the_potential_by_the_localization_alone(problem, scale):
    model, x, y = problem
    pot = Potential(model, (x, y))
    w = _chains(pot)
    carry = hand_over(_chains_of(pot), _params(pot.center), np.zeros((6, 10)), w)
    delta = scale * torch.linspace(-1, 1, pot.dim) / pot.dim**0.5
    moved = _params(pot.center + delta)
    # same loss: ΔU_c = γ (½‖δ‖² − δ·(w_c − w*)), so its spread is γ sd(δ·w_c)
    expected = float(GAMMA * (w.double() @ delta.double()).std())
    pos, sd = carried_positions(carry, _chains_of(pot), moved)
    assert sd == pytest.approx(expected, rel=1e-5)
    assert (pos is not None) == (expected <= MAX_SHIFT)
    assert (scale == 0.5) == (pos is not None)  # both sides of the threshold are exercised


def test_a_changed_behavioral_reference_is_measured_and_refused(problem):
    model, x, _ = problem
    before = Potential(model, x, loss="behavioral")
    later = copy.deepcopy(model)
    with torch.no_grad():
        later[2].weight.mul_(3.0)  # the reference map changes a lot
    after = Potential(later, x, loss="behavioral")
    w = _chains(before)
    carry = hand_over(_chains_of(before), _params(before.center), np.zeros((6, 10)), w)
    change = _exact_u(after, w, after.center) - _exact_u(before, w, before.center)
    pos, sd = carried_positions(carry, _chains_of(after), _params(after.center))
    assert sd == pytest.approx(float(change.std()), rel=1e-4)
    assert sd > MAX_SHIFT and pos is None


def test_nothing_is_carried_that_does_not_fit(problem):
    model, x, y = problem
    pot = Potential(model, (x, y))
    params, w, chains = _params(pot.center), _chains(pot), _chains_of(pot)
    carry = hand_over(chains, params, np.zeros((6, 10)), w)
    assert carry.positions.device.type == "cpu"  # not held on an accelerator between estimates
    assert carried_positions(None, chains, params) == (None, None)
    assert carried_positions(carry, _chains_of(pot, 5), params) == (None, None)  # chain count
    fewer = Potential(model, (x[:200], y[:200]))
    assert carried_positions(carry, _chains_of(fewer), _params(fewer.center)) == (None, None)
    bad = carry._replace(positions=w.clone().index_fill_(1, torch.tensor([0]), float("nan")))
    assert carried_positions(bad, chains, params) == (None, None)
    one = hand_over(_chains_of(pot, 1), params, np.zeros((1, 10)), w[:1])
    assert one.positions is None  # one chain shows no spread of ΔU
    chains.diverged_at[2] = 17  # a diverged chain was moved back to w*: nothing is handed over
    assert hand_over(chains, params, np.zeros((6, 10)), w).positions is None


def test_probe_samples_spread_over_the_data():
    assert probe_indices(10).tolist() == list(range(10))
    idx = probe_indices(10_000)
    assert len(idx) == PROBE_SAMPLES and idx[0] == 0 and idx[-1] >= 10_000 - 3
    assert len(set(idx.tolist())) == PROBE_SAMPLES


def test_a_model_with_dropout_sees_the_same_draws_at_both_estimates(problem):
    _, x, y = problem
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 2)).train()
    pot = Potential(model, (x, y))
    assert pot.stochastic
    w = _chains(pot)
    carry = hand_over(_chains_of(pot), _params(pot.center), np.zeros((6, 10)), w)
    rng = torch.get_rng_state()
    pos, sd = carried_positions(carry, _chains_of(pot), _params(pot.center))
    assert sd == 0.0 and pos is not None
    assert torch.equal(rng, torch.get_rng_state())  # the global RNG is left as it was
