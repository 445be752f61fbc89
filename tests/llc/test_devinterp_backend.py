"""estimate_llc(backend="devinterp"): devinterp's SGMCMC optimizer, one chain after another."""

import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

import llc
from theory.models import normal_form_teacher, teacher_student_data

pytest.importorskip("devinterp")

# the same Euler SGLD for both backends: fixed ε, no metric, no noise compensation
SAME = dict(
    step_size=1e-3, localization=1.0, num_burnin=300, num_draws=1500, batch_size=64,
    num_chains=4, sampler="sgld", progress=False,
)  # fmt: skip
OURS = dict(scheme="euler", precondition=False, compensate_noise=False)
QUICK = dict(num_chains=2, num_burnin=20, num_draws=40, batch_size=32, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices: threads only contend


@pytest.fixture(scope="module")
def dln():
    """A deep linear network at a rank-2 normal-form teacher, with realizable data."""
    teacher = normal_form_teacher([5, 4, 5], 2, seed=1)
    return teacher, teacher_student_data(teacher, 1000, 5, seed=2)


@pytest.mark.slow
@pytest.mark.parametrize("seed", (0, 1, 2))
def test_both_backends_agree_within_monte_carlo_error(dln, seed):
    # Same target, same discretisation, same start at w*: the two traces have the same law, so
    # the estimates differ by Monte Carlo error alone.
    model, data = dln
    ours = llc.estimate_llc(model, data, seed=seed, **SAME, **OURS)
    theirs = llc.estimate_llc(model, data, seed=seed, backend="devinterp", **SAME)
    assert theirs.config["backend"] == "devinterp" and not theirs.diverged.any()
    assert (ours.nbeta, ours.step_size, ours.localization) == (
        theirs.nbeta, theirs.step_size, theirs.localization,
    )  # fmt: skip
    se = math.hypot(ours.mcse, theirs.mcse)
    assert abs(ours.mean - theirs.mean) <= 4 * se, (ours.mean, ours.mcse, theirs.mean, theirs.mcse)


def test_result_is_complete(dln):
    model, data = dln
    res = llc.estimate_llc(model, data, backend="devinterp", seed=0, **QUICK)
    assert res.llc_trace.shape == res.loss_trace.shape == (2, 40)
    assert res.warmup_llc.shape == (2, 20)
    assert np.isfinite(res.llc_trace).all() and math.isfinite(res.mean)
    assert np.isnan(res.mala_acceptance).all() and res.mala_acceptance.shape == (2,)
    assert res.mean == pytest.approx(res.llc_trace.mean())
    assert res.scheme == "euler" and res.sampler == "sgld"
    assert (res.num_burnin, res.num_draws, res.batch_size) == (20, 40, 32)
    nbeta = 1000 / math.log(1000)
    # the trace is nβ (L_B(w_t) − L_B(w*)); at the teacher L_B(w*) = 0, so it is nβ L_B(w_t)
    assert np.allclose(res.llc_trace, nbeta * res.loss_trace, rtol=1e-6, atol=1e-6)
    cfg = res.config
    assert cfg["precondition"] == cfg["compensate_noise"] == "not used by the devinterp backend"
    assert cfg["nbeta"] == "n / log n" and res.nbeta == pytest.approx(nbeta)
    assert cfg["localization"] == "default 0.3" and res.localization == 0.3
    assert cfg["step_size"].startswith("ε = 0.5/κ̂")
    assert "λ̂" in res.summary()


def test_same_seed_same_result_and_nothing_touched():
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.2), nn.Tanh(), nn.Linear(4, 2))
    model[0].bias.requires_grad_(False)
    model.train()
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, 3, generator=gen), torch.randn(100, 2, generator=gen)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    a = llc.estimate_llc(model, (x, y), backend="devinterp", seed=3, step_size=1e-3, **QUICK)
    assert torch.equal(torch.get_rng_state(), rng)
    b = llc.estimate_llc(model, (x, y), backend="devinterp", seed=3, step_size=1e-3, **QUICK)
    c = llc.estimate_llc(model, (x, y), backend="devinterp", seed=4, step_size=1e-3, **QUICK)
    np.testing.assert_array_equal(a.llc_trace, b.llc_trace)
    assert not np.array_equal(a.llc_trace, c.llc_trace)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training and [p.requires_grad for p in model.parameters()] == [
        True, False, True, True,
    ]  # fmt: skip
    assert all(p.grad is None for p in model.parameters())


def test_default_step_follows_the_curvature_rule(dln):
    model, data = dln
    sgld = llc.estimate_llc(model, data, backend="devinterp", seed=0, **QUICK)
    rms = llc.estimate_llc(
        model, data, backend="devinterp", seed=0, sampler="rmsprop_sgld", **QUICK
    )
    kappa = float(sgld.config["step_size"].rsplit("=", 1)[1])
    assert sgld.step_size == pytest.approx(0.5 / kappa, rel=1e-3)
    # RMSprop's metric reaches 1/eps = 10: its step is ten times smaller
    assert rms.step_size == pytest.approx(0.1 * sgld.step_size)
    # the batched engine starts its warm-up from the same rule
    ours = llc.estimate_llc(model, data, seed=0, **QUICK)
    assert 0.5 < ours.config["step_size_history"][0] / sgld.step_size < 2


def test_rmsprop_sgld_runs(dln):
    model, data = dln
    res = llc.estimate_llc(
        model, data, backend="devinterp", sampler="rmsprop_sgld", step_size=1e-3, seed=0, **QUICK
    )
    assert res.sampler == "rmsprop_sgld" and res.config["optimizer"].startswith(
        "SGMCMC.rmsprop_sgld"
    )
    assert np.isfinite(res.llc_trace).all() and res.mean > 0


def test_weight_refined_and_masked_params():
    # a linear map at its least-squares minimum: regular, λ = ½ per sampled entry (at large nβ)
    gen = torch.Generator().manual_seed(0)
    model = nn.Linear(4, 3, bias=False)
    x = torch.randn(2000, 4, generator=gen)
    with torch.no_grad():
        y = model(x)
    one = torch.zeros(3, 4, dtype=torch.bool)
    one[1, 2] = True
    kw = dict(backend="devinterp", num_chains=2, num_burnin=200, num_draws=1500, progress=False)
    res = llc.estimate_llc(model, (x, y), params={"weight": one}, **kw)
    assert res.config["params"] == ["weight"]
    assert 0.35 < res.mean < 0.8, res.mean  # one entry: ½ (Euler inflates it by ~14 %)
    full = llc.estimate_llc(model, (x, y), params=["weight"], **kw)
    assert 4.5 < full.mean < 8.5, full.mean  # twelve entries: 6


def test_bad_input(dln, monkeypatch):
    model, data = dln
    with pytest.raises(ValueError, match="no SGNHT"):
        llc.estimate_llc(model, data, backend="devinterp", sampler="sgnht", **QUICK)
    with pytest.raises(ValueError, match="observables"):
        llc.estimate_llc(
            model, data, backend="devinterp", observables=[llc.ProbeLosses(*data)], **QUICK
        )
    with pytest.raises(ValueError, match="budget"):
        llc.estimate_llc(model, data, backend="devinterp", budget=10.0, **QUICK)
    with pytest.raises(ValueError, match="max_memory"):
        llc.estimate_llc(model, data, backend="devinterp", max_memory="1GiB", **QUICK)
    with pytest.raises(ValueError, match="step_size"):
        llc.estimate_llc(model, data, backend="devinterp", step_size=-1.0, **QUICK)
    with pytest.raises(ValueError, match="backend"):
        llc.estimate_llc(model, data, backend="pyro", **QUICK)
    with pytest.raises(RuntimeError, match="every chain diverged"):
        llc.estimate_llc(model, data, backend="devinterp", step_size=10.0, **QUICK)
    monkeypatch.setitem(sys.modules, "devinterp.optim", None)
    with pytest.raises(ImportError, match=r"slt-interp\[devinterp\]"):
        llc.estimate_llc(model, data, backend="devinterp", step_size=1e-3, **QUICK)


def test_a_diverged_chain_is_reported_and_left_out(dln):
    # at ε = 0.01 (near Euler's stability limit here) chain 5 of seed 0 blows up
    model, data = dln
    with pytest.warns(RuntimeWarning, match="chain 5 diverged"):
        res = llc.estimate_llc(
            model, data, backend="devinterp", step_size=1e-2, seed=0, num_chains=6,
            num_burnin=20, num_draws=100, batch_size=64, progress=False,
        )  # fmt: skip
    assert res.diverged.tolist() == [False] * 5 + [True]
    assert np.isnan(res.per_chain[5]) and np.isfinite(res.per_chain[:5]).all()
    assert res.mean == pytest.approx(res.per_chain[:5].mean())
    assert math.isfinite(res.mcse) and math.isfinite(res.r_hat)
