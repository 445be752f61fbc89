"""The underdamped (BAOAB) kernel: update equations, exact Gaussian moments, noise compensation,
and the spreading phase of warm-up.

Stationary moments are checked against closed forms within 4.5 ESS-scaled standard errors, over
several seeds.
"""

import math

import numpy as np
import pytest
import torch

from llc.adaptation import noise
from llc.kernels import get_kernel, underdamped

from .test_kernels import _check_second_moments

A = torch.tensor([1.0, 10.0, 60.0], dtype=torch.float64)  # curvatures of U = Σ a_i w_i² / 2


def _params(**kw):
    base = {"step_size": 0.1, "localization": 0.0, "nbeta": 1.0, "friction": 2.0}
    base.update(kw)
    return underdamped.UnderdampedParams(center=torch.zeros(3, dtype=torch.float64), **base)


def _run(params, grad_fn, chains=64, steps=8000, seed=0):
    """Positions (chain, step, dim) after a quarter of ``steps`` left out."""
    gen = torch.Generator().manual_seed(seed)
    st = underdamped.init(
        torch.zeros(chains, 3, dtype=torch.float64),
        torch.randn(chains, 3, generator=gen, dtype=torch.float64),
        params,
    )
    out = []
    for _ in range(steps):
        g = grad_fn(st.position)
        st, _ = underdamped.step(st, g, torch.randn(g.shape, generator=gen, dtype=g.dtype), params)
        out.append(st.position)
    return torch.stack(out, dim=1)[:, steps // 4 :].numpy()


def test_update_equations():
    gen = torch.Generator().manual_seed(0)
    w, v, g, xi = torch.randn(4, 2, 5, generator=gen, dtype=torch.float64)
    center = torch.randn(5, generator=gen, dtype=torch.float64)
    metric = torch.rand(5, generator=gen, dtype=torch.float64) + 0.5
    scale = torch.rand(5, generator=gen, dtype=torch.float64)
    p = underdamped.UnderdampedParams(
        step_size=0.1, localization=0.5, nbeta=3.0, center=center, friction=2.0,
        metric=metric, noise_scale=scale,
    )  # fmt: skip
    st = underdamped.UnderdampedState(w, v)
    new, info = underdamped.step(st, g, xi, p)
    grad_u = 3.0 * g + 0.5 * (w - center)
    c = math.exp(-0.2)
    v1 = v - 0.1 * metric * grad_u
    w1 = w + 0.05 * v1
    v2 = c * v1 + math.sqrt(1 - c * c) * metric.sqrt() * scale * xi
    torch.testing.assert_close(new.velocity, v2, rtol=0, atol=1e-14)
    torch.testing.assert_close(new.position, w1 + 0.05 * v2, rtol=0, atol=1e-14)
    torch.testing.assert_close(info.potential_grad, grad_u)
    assert torch.equal(st.position, w) and torch.equal(st.velocity, v)  # pure
    start = underdamped.init(w, xi, p)
    torch.testing.assert_close(start.velocity, metric.sqrt() * xi)  # v ~ N(0, G)


@pytest.mark.parametrize(("seed", "friction"), [(0, 2.0), (1, 2.0), (2, 10.0)])
def test_positions_are_exact_for_gaussians_at_a_large_step(seed, friction):
    # BAOAB samples the position of a quadratic exactly for any stable h√a < 2; here h√60 = 0.77,
    # where an Euler discretisation would be off by tens of percent.
    draws = _run(_params(friction=friction), lambda w: A * w, seed=seed)
    _check_second_moments(draws, 1.0 / A.numpy())


@pytest.mark.parametrize("seed", [0, 1])
def test_a_metric_leaves_the_stationary_law_unchanged(seed):
    metric = torch.tensor([4.0, 1.0, 0.1], dtype=torch.float64)  # stability: h√(G a) < 2
    draws = _run(_params(metric=metric), lambda w: A * w, seed=seed)
    _check_second_moments(draws, 1.0 / A.numpy())


@pytest.mark.parametrize("seed", [0, 1])
def test_noise_scale_cancels_gradient_noise(seed):
    # Gradient noise of variance V on the stiff coordinate only: its velocity noise h²V per step
    # is a fraction η = h²V/(1 − c²) of the injected; s = √(1 − η) makes the total exact again.
    h, zeta = 0.1, 2.0
    var = torch.tensor([0.0, 0.0, 15.0], dtype=torch.float64)
    plain = _params(step_size=h, friction=zeta)
    eta = underdamped.minibatch_heating(plain, var)
    assert eta[2].item() == pytest.approx(h * h * 15.0 / (1 - math.exp(-2 * zeta * h)))
    scale, mean_h = noise.final(
        noise.update(noise.init(), var), underdamped.minibatch_heating, plain
    )
    assert mean_h == pytest.approx(eta.mean().item())
    gen = torch.Generator().manual_seed(100 + seed)

    def noisy(w):
        return A * w + var.sqrt() * torch.randn(w.shape, generator=gen, dtype=w.dtype)

    exact = _run(_params(step_size=h, friction=zeta, noise_scale=scale), noisy, seed=seed)
    _check_second_moments(exact, 1.0 / A.numpy())
    hot = _run(plain, noisy, seed=seed)
    assert (hot[:, :, 2] ** 2).mean() * 60.0 > 1.2  # uncompensated: the stiff one runs hot


def test_flat_direction_relaxes_faster_than_sgld_at_the_same_curvature_rule():
    # A stiff coordinate (a = 10⁴) and a flat one (a = 0.3, the localization's curvature): SGLD at
    # ε = ½/κ needs about 1/(εa) ≈ 6·10⁴ steps to spread the flat one; underdamped dynamics at
    # h = ½/√κ and ζ = 5 about ζ/(ha) ≈ 3·10³. After 3,000 steps from 0 the flat coordinate's
    # variance under underdamped dynamics has reached most of 1/a, under SGLD a small part.
    a = torch.tensor([1e4, 0.3], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    chains, steps = 256, 3000
    center = torch.zeros(2, dtype=torch.float64)
    ud = underdamped.UnderdampedParams(
        step_size=0.5 / math.sqrt(1e4), localization=0.0, nbeta=1.0, center=center, friction=5.0
    )
    sg = get_kernel("sgld").params(step_size=0.5 / 1e4, localization=0.0, nbeta=1.0, center=center)
    finals = []
    for k, p in ((underdamped, ud), (get_kernel("sgld"), sg)):
        st = k.init(torch.zeros(chains, 2, dtype=torch.float64),
                    torch.randn(chains, 2, generator=gen, dtype=torch.float64), p)  # fmt: skip
        for _ in range(steps):
            xi = torch.randn(chains, 2, generator=gen, dtype=torch.float64)
            st, _ = k.step(st, a * st.position, xi, p)
        finals.append(float((st.position[:, 1] ** 2).mean() * 0.3))
    assert finals[0] > 0.6 and finals[1] < 0.2, finals


def test_friction_must_be_positive():
    with pytest.raises(ValueError, match="friction"):
        _params(friction=0.0)
    with pytest.raises(TypeError, match="friction"):
        _params(friction="high")
    assert np.isclose(underdamped.stable_step_size(4.0), underdamped.STEP_FACTOR / 2)


def _dln(widths=(6, 5, 4, 6), rank=2, n=2000, seed=0):
    from theory.models import normal_form_teacher, teacher_student_data

    gen = torch.Generator().manual_seed(seed)
    model = normal_form_teacher(widths, rank, seed=gen)
    return model, teacher_student_data(model, n, widths[0], seed=gen)


@pytest.mark.parametrize("seed", [0, 1])
def test_spreading_phase_moves_the_chains_towards_the_exact_posterior_spread(seed):
    # The exact Gibbs sampler gives E‖w − w*‖ under the localized posterior; SGLD's first
    # windows stay near w*, the spreading phase carries the chains most of the way out, and not
    # beyond (an overheated phase would overshoot).
    from llc.potential import Potential
    from llc.sampling import Chains
    from llc.warmup import spread, warmup
    from theory.gibbs import dln_gibbs_llc

    model, data = _dln(seed=seed)
    pot = Potential(model, data)
    nbeta = pot.n / math.log(pot.n)
    sgld = get_kernel("sgld")
    params = sgld.params(step_size=1e-4, localization=0.3, nbeta=nbeta, center=pot.center)
    chains = Chains.from_seed(pot, 8, seed=seed)
    state = sgld.init(pot.center.expand(8, -1).clone(), chains.randomness.noise(), params)
    with chains:
        first = warmup(chains, sgld, params, state, adapt_step=True, max_windows=10)
        moved = spread(chains, first, max_windows=30)

    def dist(pos):
        return float((pos - pot.center).norm(dim=1).mean())

    centers = [m.weight.detach().double().numpy() for m in model]

    def observe(ws):
        sq = sum(((w - c[None]) ** 2).sum((1, 2)) for w, c in zip(ws, centers))
        return np.sqrt(sq)[:, None]

    exact = dln_gibbs_llc(
        model, data, nbeta=nbeta, localization=0.3, num_sweeps=400, seed=seed, progress=False,
        observe=observe,
    )  # fmt: skip
    target = float(np.asarray(exact.observed.mean).ravel()[0])
    before, after = dist(first.state.position), dist(moved.state.position)
    assert before < 0.45 * target
    assert 0.55 * target < after < 1.2 * target


def _small():
    from theory.models import normal_form_teacher, teacher_student_data

    gen = torch.Generator().manual_seed(3)
    model = normal_form_teacher((4, 3, 4), 1, seed=gen)
    return model, teacher_student_data(model, 400, 4, seed=gen)


def test_the_estimator_spreads_only_when_it_adapts_an_sgld_warmup():
    from llc import estimate_llc

    model, data = _small()
    kw = dict(num_chains=2, num_draws=50, progress=False, seed=0, batch_size=64)
    on = estimate_llc(model, data, **kw)
    assert on.config["spreading_steps"] > 0
    # the warm-up trace covers all three phases, and num_burnin counts them
    assert on.warmup_llc.shape == (2, on.num_burnin) and on.num_burnin > 1000
    off = estimate_llc(model, data, spread=False, **kw)
    assert off.config["spreading_steps"] == 0
    for other in ({"step_size": 1e-4}, {"num_burnin": 300}, {"sampler": "sgnht"},
                  {"precondition": False}):  # fmt: skip
        assert estimate_llc(model, data, **kw, **other).config["spreading_steps"] == 0, other
    again = estimate_llc(model, data, **kw)
    assert np.array_equal(again.llc_trace, on.llc_trace)  # same seed, same result
    with pytest.raises(TypeError, match="spread"):
        estimate_llc(model, data, spread="yes", **kw)


def test_a_time_budget_replaces_the_work_cap():
    from llc import LLCWarning, estimate_llc

    model, data = _small()
    kw = dict(num_chains=2, progress=False, seed=0, batch_size=64)
    # a budget long past after the first window: each of the three warm-up phases runs one
    # window, the draws one short block, and the result says what to raise
    with pytest.warns(LLCWarning, match="against budget=0.001"):
        r = estimate_llc(model, data, budget=1e-3, **kw)
    assert r.config["budget"] == "0.001 s"
    assert r.config["spreading_steps"] == 100
    assert r.num_burnin == r.warmup_llc.shape[1] == 100 + 100 + 100
    assert r.num_draws == 100 and not r.config["warmup_converged"]
    assert estimate_llc(model, data, num_draws=50, **kw).config["budget"].startswith("work cap")
    for bad, err in ((0.0, ValueError), (-1.0, ValueError), ("10", TypeError)):
        with pytest.raises(err, match="budget"):
            estimate_llc(model, data, budget=bad, **kw)
