"""Observables and the sampling loop: what is recorded, how divergence is masked, streaming
moments against brute force, and the labelled export of a result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import llc
from llc import observables as obs
from llc._randomness import ChainRandomness, chain_seeds
from llc.kernels import get_kernel
from llc.sampling import Chains, run, values


@pytest.fixture
def setup(tanh_net):
    model, x, y = tanh_net
    return llc.Potential(model, (x, y)), x, y


def _chains(pot, num_chains=4, batch=16, seed=0):
    rand = ChainRandomness(
        chain_seeds(seed, num_chains), num_chains, n=pot.n, batch_size=batch, dim=pot.dim,
        device=pot.device, dtype=pot.dtype,
    )  # fmt: skip
    return Chains(pot, rand)


def _start(pot, chains, kernel="sgld", step=1e-3):
    k = get_kernel(kernel)
    p = k.params(step_size=step, localization=1.0, nbeta=10.0, center=pot.center)
    st = k.init(pot.center.expand(chains.num_chains, -1).clone(), chains.randomness.noise(), p)
    return k, p, st


def test_traces_agree_with_each_other_and_the_positions(setup):
    pot, x, y = setup
    chains = _chains(pot)
    k, p, st = _start(pot, chains)
    observed = [obs.LLCTrace(), obs.LossTrace(), obs.Distance(), obs.MALATrace()]
    st, accs = run(chains, k, p, st, 40, observed)
    v = values(chains, observed, accs, first=0)
    assert v["llc"].shape == v["loss"].shape == v["distance"].shape == (4, 40)
    assert v["distance"][:, 0] == pytest.approx(0.0)  # the first step is taken at w*
    assert (v["distance"][:, 1:] > 0).all()
    acc = v["mala_acceptance"]
    assert np.isfinite(acc[:, 10::10]).all() and np.isnan(acc[:, 1:10]).all()  # pairs only
    assert ((acc[np.isfinite(acc)] > 0) & (acc[np.isfinite(acc)] <= 1)).all()
    # the loss trace is the minibatch loss at w_t, the llc trace nβ times its excess over L_B(w*)
    assert np.all(v["llc"] == pytest.approx(10.0 * (v["loss"] - (v["loss"] - v["llc"] / 10.0))))


def test_accumulators_continue_across_calls(setup):
    pot, _, _ = setup
    a, b = _chains(pot), _chains(pot)
    k, p, st_a = _start(pot, a)
    _, _, st_b = _start(pot, b)
    observed = [obs.LLCTrace()]
    st_a, acc_a = run(a, k, p, st_a, 30, observed)
    st_b, acc_b = run(b, k, p, st_b, 15, observed)  # not inside a MALA pair (steps 9, 10)
    st_b, acc_b = run(b, k, p, st_b, 15, observed, accs=acc_b)
    np.testing.assert_array_equal(
        values(a, observed, acc_a, 0)["llc"], values(b, observed, acc_b, 0)["llc"]
    )
    torch.testing.assert_close(st_a.position, st_b.position, rtol=0, atol=0)


def test_diverged_chains_are_reset_flagged_and_masked(setup):
    pot, _, _ = setup
    chains = _chains(pot)
    k, p, st = _start(pot, chains, step=1e3)  # far too large: every chain runs away
    observed = [obs.LLCTrace()]
    st, accs = run(chains, k, p, st, 50, observed, check_every=25)
    assert all(d is not None for d in chains.diverged_at)
    assert all(w for w in chains.diverged_why)
    torch.testing.assert_close(st.position, pot.center.expand_as(st.position))  # back at w*
    trace = values(chains, observed, accs, first=0)["llc"]
    first_bad = min(chains.diverged_at)
    assert np.isnan(trace[:, max(0, first_bad - 25) :]).all()


def test_probe_losses_drop_what_a_diverging_chain_recorded_before_the_check(setup):
    pot, x, y = setup
    for step, expected in ((1e-3, 4 * 50), (1e3, 0)):
        chains = _chains(pot)
        k, p, st = _start(pot, chains, step=step)
        probe = [obs.ProbeLosses(x[:5], y[:5], every=1)]
        st, accs = run(chains, k, p, st, 50, probe, check_every=25)
        # at ε = 1e3 every chain runs away within 25 steps: no record of it may enter the sums
        assert values(chains, probe, accs, first=0)["probe_losses"].count == expected


@pytest.mark.parametrize("seed", [0, 1])
def test_probe_losses_stream_the_moments_of_the_stored_draws(setup, seed):
    pot, x, y = setup
    chains = _chains(pot, seed=seed)
    k, p, st = _start(pot, chains)
    probe = obs.ProbeLosses(x[:9], y[:9], every=3)
    positions = []

    class Positions(obs.Trace):
        def value(self, step):
            positions.append(step.position.clone())
            return step.loss

    observed = [probe, Positions(name="pos")]
    st, accs = run(chains, k, p, st, 60, observed)
    stats = values(chains, observed, accs, first=0)["probe_losses"]
    kept = torch.stack(positions[::3])  # (draw, chain, D): the steps the probe recorded
    per = torch.stack([pot.per_sample_losses(w, x[:9], y[:9]) for w in kept])  # (draw, chain, m)
    flat = per.reshape(-1, 9).numpy()
    assert stats.count == flat.shape[0] == 20 * 4
    np.testing.assert_allclose(stats.mean, flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.covariance, np.cov(flat.T), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(stats.chain_mean, per.mean(0).numpy(), rtol=1e-12)
    corr = stats.correlation()
    np.testing.assert_allclose(np.diag(corr), 1.0)


def test_probe_losses_need_no_draw_by_sample_array_and_validate():
    with pytest.raises(ValueError, match="every"):
        obs.ProbeLosses(torch.zeros(3, 1), torch.zeros(3, 1), every=0)
    with pytest.raises(ValueError, match="same positive number"):
        obs.ProbeLosses(torch.zeros(3, 1), torch.zeros(4, 1))
    p = obs.ProbeLosses(torch.zeros(10_000, 1), torch.zeros(10_000, 1), covariance=False)
    acc = p.init(8)
    assert acc["sq"] is None and acc["chain_sum"].shape == (8, 10_000)


def test_estimate_llc_records_observables_and_exports_to_arviz(setup, tanh_net):
    _, x, y = setup
    model = tanh_net[0]
    res = llc.estimate_llc(
        model, (x, y), num_chains=3, num_burnin=50, num_draws=40, step_size=1e-3,
        progress=False, observables=[obs.Distance(), obs.ProbeLosses(x[:5], y[:5], every=4)],
    )  # fmt: skip
    assert res.observables["distance"].shape == (3, 40)
    assert res.observables["probe_losses"].count == 3 * 10
    tree = res.to_datatree()
    post = tree["posterior"]
    assert post["llc"].dims == ("chain", "draw") and post["llc"].shape == (3, 40)
    np.testing.assert_array_equal(post["llc"].values, res.llc_trace)
    assert "distance" in post and "acceptance_rate" in tree["sample_stats"]
    assert tree["probe_losses"]["covariance"].shape == (5, 5)
    assert tree["warmup_posterior"]["llc"].shape == (3, 50)
    assert tree.attrs["llc_mean"] == res.mean
    from arviz_stats.base import array_stats

    assert float(array_stats.rhat(post["llc"].values, chain_axis=0, draw_axis=1)) == pytest.approx(
        res.r_hat
    )


def test_a_nan_loss_between_checks_flags_the_chain(setup):
    # a loss that is NaN on one minibatch (finite gradients) at a step that is not a check step
    pot, _, _ = setup
    chains = _chains(pot)
    k, p, st = _start(pot, chains)
    original = chains.value_and_grad
    calls = []

    def nan_once(position, idx):
        loss, grad = original(position, idx)
        calls.append(1)
        if len(calls) == 11:  # step 10: chain 2 sees a NaN loss
            loss = loss.clone()
            loss[2] = float("nan")
        return loss, grad

    chains.value_and_grad = nan_once
    observed = [obs.LLCTrace()]
    st, accs = run(chains, k, p, st, 50, observed, check_every=25)
    trace = values(chains, observed, accs, first=0)["llc"]
    assert chains.diverged_at == [None, None, 25, None]  # found at the first check (25 steps)
    assert "non-finite" in chains.diverged_why[2]
    assert np.isfinite(trace[[0, 1, 3]]).all() and np.isnan(trace[2]).all()
