"""The warm-up adaptation parts, one by one, against their defining formulas."""

import math

import numpy as np
import pytest
import torch

from llc.adaptation import convergence, draws, metric, noise, step_size
from llc.diagnostics import ess
from llc.kernels import sgld

from .test_kernels import _check_second_moments, _params


# -- step size --------------------------------------------------------------------------------
def test_step_size_follows_the_curvature_within_a_factor_two_per_window():
    st = step_size.init(0.01)
    st = step_size.update(st, 45.0, sgld.stable_step_size, floor=0.3)  # ½/45 = 0.0111
    assert st.step_size == pytest.approx(1 / 90) and st.settled  # moved by less than 25 %
    st = step_size.update(st, 1.0, sgld.stable_step_size, floor=0.3)  # ½ wanted: capped at 2×
    assert st.step_size == pytest.approx(1 / 45) and not st.settled
    st = step_size.update(st, 1e6, sgld.stable_step_size, floor=0.3)  # tiny wanted: ½× at most
    assert st.step_size == pytest.approx(1 / 90)
    assert st.history == pytest.approx((0.01, 1 / 90, 1 / 45, 1 / 90))


def test_step_size_floor_cap_and_halving():
    st = step_size.update(step_size.init(1.0), 0.0, sgld.stable_step_size, floor=0.5)
    assert st.step_size == pytest.approx(1.0)  # κ floored at γ = 0.5: ½/0.5
    st = step_size.init(1.0, cap=0.2)
    assert step_size.final(st) == 0.2
    st = step_size.halve(step_size.init(0.4))
    assert st.step_size == 0.2 and st.cap == 0.2 and not st.settled
    st = step_size.update(st, 1e-9, sgld.stable_step_size, floor=1e-9)
    assert st.step_size == 0.2  # never above the cap again


# -- metric -----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metric_is_the_inverse_mean_curvature_at_equilibrium(seed):
    # draws of U = Σ a w²/2 at equilibrium: E[(∂_i U)²] = a_i, so G ∝ 1/a (median-normalised)
    gen = torch.Generator().manual_seed(seed)
    a = torch.tensor([0.5, 2.0, 8.0, 30.0], dtype=torch.float64)
    st = metric.init(4)
    alive = torch.ones(16, dtype=torch.bool)
    for _ in range(500):
        w = torch.randn(16, 4, generator=gen, dtype=torch.float64) / a.sqrt()
        st = metric.update(st, a * w, alive)
    g = metric.final(st, localization=0.1, dtype=torch.float64)
    expected = (1 / a) / (1 / a).median()
    # each E[(∂U)²] is a mean of 8000 χ²₁-distributed terms: relative sd √(2/8000) = 1.6 %
    assert torch.allclose(g, expected, rtol=5 * math.sqrt(2 / 8000))


def test_metric_ignores_dead_chains_and_non_finite_rows_and_clips():
    st = metric.init(3)
    good = torch.tensor([[1.0, 1e-3, 1e3], [1.0, 1e-3, 1e3]], dtype=torch.float64)
    bad = torch.tensor([[float("nan"), 5.0, 5.0]], dtype=torch.float64)
    st = metric.update(st, torch.cat([good, bad, 100 * good[:1]]), torch.tensor([1, 1, 1, 0]) > 0)
    assert st.count == 2  # the NaN row and the dead chain are left out
    g = metric.final(st, localization=1e-9, dtype=torch.float32)
    assert g.dtype == torch.float32
    assert g.tolist() == pytest.approx([1.0, metric.RANGE[1], metric.RANGE[0]])
    assert metric.final(metric.init(3), 0.1, torch.float64) is None


def test_metric_floors_the_curvature_at_the_localization():
    st = metric.update(metric.init(2), torch.tensor([[0.0, 2.0]]), torch.tensor([True]))
    g = metric.final(st, localization=1.0, dtype=torch.float64)
    # curvatures (0 floored at γ = 1, 4): 1/(1, 4) over torch's (lower) median 1/4
    assert g.tolist() == pytest.approx([4.0, 1.0])


# -- minibatch noise --------------------------------------------------------------------------
def test_pair_variance_is_unbiased():
    gen = torch.Generator().manual_seed(0)
    sd = torch.tensor([0.5, 2.0], dtype=torch.float64)
    mu = torch.tensor([3.0, -1.0], dtype=torch.float64)
    est = torch.stack(
        [
            noise.pair_variance(
                mu + sd * torch.randn(8, 2, generator=gen, dtype=torch.float64),
                mu + sd * torch.randn(8, 2, generator=gen, dtype=torch.float64),
                torch.ones(8, dtype=torch.bool),
            )
            for _ in range(2000)
        ]
    )
    se = est.std(0) / math.sqrt(est.shape[0])
    assert ((est.mean(0) - sd**2).abs() < 4.5 * se).all()
    assert noise.pair_variance(mu[None], mu[None], torch.tensor([False])) is None


def test_noise_scale_formula_and_cap():
    st = noise.update(noise.init(), torch.tensor([1.0, 4.0]))
    st = noise.update(st, torch.tensor([3.0, 4.0]))
    st = noise.update(st, None)  # no measurement: unchanged
    assert st.count == 2
    g = torch.tensor([1.0, 2.0])
    p = _params("sgld", 2, step_size=0.01, nbeta=5.0, metric=g)
    scale, mean_h = noise.final(st, sgld.minibatch_heating, p)
    h = 0.01 * 25 * g.double() * torch.tensor([2.0, 4.0], dtype=torch.float64) / 4
    h = h.clamp(max=noise.MAX_HEATING)
    torch.testing.assert_close(scale, (1 - h).sqrt())
    assert mean_h == pytest.approx(float(h.mean()))
    assert noise.final(noise.init(), sgld.minibatch_heating, p) == (None, 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_compensation_matches_the_exact_stationary_moments(seed):
    # LM steps on U = Σ a w²/2 with gradient noise of variance V: the stationary second moment is
    # s²/a + (ε²V/4)/(1 − ρ²), ρ = 1 − εa/2. Without compensation (s = 1) the gradient noise heats
    # the chain by h = εV/4; with s² = 1 − h that heating is removed up to the factor
    # (εa/4)/(1 − εa/4).
    from .test_kernels import _run

    eps, var = 0.05, 24.0  # h = 0.3
    a = torch.tensor([1.0, 10.0, 20.0], dtype=torch.float64)
    measured = noise.update(noise.init(), torch.full((3,), var, dtype=torch.float64))
    scale, h = noise.final(measured, sgld.minibatch_heating, _params("sgld", 3, step_size=eps))
    assert h == pytest.approx(0.3)
    results = {}
    for name, s in (("plain", None), ("compensated", scale)):
        p = _params("sgld", 3, step_size=eps, noise_scale=s)
        draws_, _ = _run("sgld", p, lambda w: a * w, seed=seed, noise_var=var)
        s2 = 1.0 if s is None else float(s[0]) ** 2
        rho = 1 - eps * a.numpy() / 2
        exact = s2 / a.numpy() + (eps**2 * var / 4) / (1 - rho**2)
        _check_second_moments(draws_, exact)
        results[name] = (draws_**2).mean(axis=(0, 1)) * a.numpy()
    # relative heating of the energy: about +30 % plain, under 11 % compensated
    assert (results["plain"] > 1.2).all()
    assert (np.abs(results["compensated"] - 1) < 0.13).all()


# -- convergence tests ------------------------------------------------------------------------
def _ar1(rho, chains=8, steps=2000, level=10.0, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((chains, steps))
    for t in range(1, steps):
        x[:, t] = rho * x[:, t - 1] + math.sqrt(1 - rho**2) * rng.standard_normal(chains)
    return level + x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_energy_test_accepts_a_stationary_trace_and_rejects_a_trend(seed):
    flat = _ar1(0.5, seed=seed)
    assert convergence.energy_stationary(flat)
    rising = flat + np.linspace(0, 3, flat.shape[1])  # a trend of 0.75 per quarter
    assert not convergence.energy_stationary(rising)


def test_energy_test_asks_for_ten_autocorrelation_times():
    slow = _ar1(0.999, steps=2000)  # τ ≈ 2000 steps: far from ten of them
    tau = slow[:, 1000:].size / ess(slow[:, 1000:])  # ess counts all 8 chains
    assert 10 * tau > 2000
    assert not convergence.energy_stationary(slow)
    assert convergence.energy_stationary(_ar1(0.9, steps=2000))  # τ ≈ 19


def test_energy_test_asks_for_four_rise_times():
    t = np.arange(2000)
    rise = 10 * (1 - np.exp(-t / 300.0)) + _ar1(0.0, steps=2000, level=0.0) * 0.01
    assert not convergence.energy_stationary(rise)  # reached 90 % at ~690 steps: needs ~3000
    longer = np.concatenate([rise, _ar1(0.0, steps=3000, level=10.0, seed=1) * 0.3 + 7.0], 1)
    assert convergence.energy_stationary(longer)  # 5000 steps, level 10 after the rise


def test_spread_test_and_the_parts_interface():
    st = convergence.spread.init()
    for _ in range(8):
        st = convergence.spread.update(st, np.full(8, 5.0) + 0.01 * np.arange(8))
    assert convergence.spread.final(st)
    st = convergence.spread.init()
    for w in range(8):
        st = convergence.spread.update(st, np.full(8, 1.0 + w) + 0.01 * np.arange(8))
    assert not convergence.spread.final(st)  # still spreading
    e = convergence.energy.update(convergence.energy.init(), _ar1(0.5)[:, :100])
    assert not convergence.energy.final(convergence.energy.init())
    assert isinstance(convergence.energy.final(e), bool)


# -- draws ------------------------------------------------------------------------------------
def test_projected_draws_follow_the_mcse_formula():
    rng = np.random.default_rng(0)
    warm = 10.0 + rng.standard_normal((8, 4000))  # iid: one effective draw per step
    n = draws.projected(warm, max_draws=10**6)
    # need ESS = (sd / (0.01 λ))² = 100 over 8 chains: about 13 each, floored at MIN_DRAWS
    assert n == draws.MIN_DRAWS
    warm = 1.0 + 3 * rng.standard_normal((8, 4000))
    n = draws.projected(warm, max_draws=10**6)
    assert n == pytest.approx((3 / 0.01) ** 2 / 8, rel=0.1)  # ESS 90,000 over 8 chains
    assert draws.projected(warm, max_draws=5000) == 5000


def test_draws_double_until_precise_and_respect_fixed_counts():
    rng = np.random.default_rng(1)
    st = draws.init(np.zeros((8, 0)), max_draws=4000)
    assert st.next == draws.MIN_DRAWS  # no warm-up trace to project from
    st = draws.update(st, 1.0 + 3 * rng.standard_normal((8, st.next)))
    assert st.total == 500 and st.next == 500  # MCSE 3/√4000 ≈ 5 % of λ̂: double
    st = draws.update(st, 1.0 + 3 * rng.standard_normal((8, st.next)))
    assert st.next == 1000
    st = draws.update(st, 1.0 + 3 * rng.standard_normal((8, 1000)))
    assert st.total == 2000 and st.next == 2000  # still 3/√16000 = 2.4 %
    st = draws.update(st, 1.0 + 3 * rng.standard_normal((8, 2000)))
    assert st.total == 4000 and st.next == 0 and draws.final(st) == 4000  # at the cap
    fixed = draws.init(np.zeros((8, 100)), max_draws=10, num_draws=77)
    assert fixed.next == 77 and draws.update(fixed, np.ones((8, 77))).next == 0
    assert draws.precise(10.0 + 0.001 * rng.standard_normal((8, 1000)))


def test_trend_test_of_carried_chains_drops_the_spans_but_keeps_the_trend():
    """Chains carried from an earlier estimate start relaxed: the trend test alone applies."""
    flat = [_ar1(0.999, steps=2000, seed=s) for s in range(20)]  # τ ≈ 2000: spans fail
    assert not any(convergence.energy_stationary(x) for x in flat)
    # the quarters agree within 1.5 standard errors (plus 0.5 %) for ~85 % of stationary traces
    assert sum(convergence.trend_free(x) for x in flat) >= 12
    assert not any(convergence.trend_free(x + np.linspace(0, 3, 2000)) for x in flat[:5])
    state = convergence.trend.init()
    for part in np.split(flat[0] + np.linspace(0, 3, 2000), 4, axis=1):
        state = convergence.trend.update(state, part)
    assert not convergence.trend.final(state)
