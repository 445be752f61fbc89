"""The pure SGLD kernel: update equations, Gaussian stationary moments, MALA acceptance."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from llc import sampler
from llc.diagnostics import ess


def _state(params, center=None, noise=None, cfg=None):
    center = torch.zeros(params.shape[1], dtype=params.dtype) if center is None else center
    noise = torch.zeros_like(params) if noise is None else noise
    return sampler.init(params, center, noise, cfg)


@pytest.mark.parametrize("scheme", ["euler", "leimkuhler_matthews"])
def test_zero_noise_is_gradient_descent_at_half_step(scheme):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    center = torch.randn(5, generator=gen, dtype=torch.float64)
    g = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    cfg = sampler.SGLDConfig(step_size=0.01, localization=2.0, nbeta=7.0, scheme=scheme)
    st = _state(w, center, cfg=cfg)
    new, info = sampler.step(st, g, torch.zeros_like(w), cfg)
    expected = w - 0.005 * (7.0 * g + 2.0 * (w - center))
    torch.testing.assert_close(new.params, expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(info.potential_grad, 7.0 * g + 2.0 * (w - center))
    assert torch.equal(st.params, w)  # the kernel is pure: the old state is untouched


def test_rmsprop_update_equations():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    g = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    xi0, xi1 = torch.randn(2, 2, 4, generator=gen, dtype=torch.float64)
    cfg = sampler.SGLDConfig(
        step_size=1e-3, localization=0.5, nbeta=10.0, preconditioner="rmsprop", scheme="euler"
    )
    st = _state(w, noise=xi0, cfg=cfg)
    new, info = sampler.step(st, g, xi1, cfg)
    v = 0.01 * g * g
    G = 1.0 / (0.1 + v.sqrt())
    expected = w - 0.5e-3 * G * (10.0 * g + 0.5 * w) + (1e-3 * G).sqrt() * xi1
    torch.testing.assert_close(new.params, expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(new.square_avg, v)
    torch.testing.assert_close(info.precond, G)


def _gaussian_run(scheme, eps, a, chains=64, steps=4000, seed=0):
    """Sample U(w) = Σ a_i w_i² / 2 (nβ = 1, γ = 0, exact gradients); draws (chain, step, dim)."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.as_tensor(a, dtype=torch.float64)
    cfg = sampler.SGLDConfig(step_size=eps, localization=0.0, nbeta=1.0, scheme=scheme)
    st = _state(
        torch.zeros(chains, a.numel(), dtype=torch.float64),
        noise=torch.randn(chains, a.numel(), generator=gen, dtype=torch.float64),
        cfg=cfg,
    )
    out = []
    for _ in range(steps):
        st, _ = sampler.step(
            st, a * st.params, torch.randn(st.params.shape, generator=gen, dtype=torch.float64), cfg
        )
        out.append(st.params)
    return torch.stack(out, dim=1)[:, steps // 4 :].numpy()


def _check_second_moments(draws, expected):
    for i, target in enumerate(expected):
        sq = draws[:, :, i] ** 2
        se = sq.std() / math.sqrt(ess(sq))
        assert abs(sq.mean() - target) < 4.5 * se, (i, sq.mean(), target, se)


def test_leimkuhler_matthews_is_exact_for_gaussians():
    # Stationary variance of the LM scheme on a quadratic is exactly 1/a for any stable εa < 4.
    a = np.array([1.0, 10.0, 60.0])
    _check_second_moments(_gaussian_run("leimkuhler_matthews", 0.05, a), 1.0 / a)


def test_euler_has_the_known_step_size_bias():
    # Euler–Maruyama inflates the variance to 1/(a(1 − εa/4)); at εa = 3 that is 4× (REFERENCES §1).
    a = np.array([1.0, 10.0, 60.0])
    draws = _gaussian_run("euler", 0.05, a)
    _check_second_moments(draws, 1.0 / (a * (1 - 0.05 * a / 4)))
    assert (draws[:, :, 2] ** 2).mean() > 2.0 / 60.0  # and is far from the truth


def test_mala_acceptance_matches_direct_density_computation():
    gen = torch.Generator().manual_seed(3)
    a = torch.tensor([2.0, 5.0, 9.0], dtype=torch.float64)
    eps = 0.05
    w0 = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    w1 = (
        w0
        - 0.5 * eps * a * w0
        + math.sqrt(eps) * torch.randn(4, 3, generator=gen, dtype=torch.float64)
    )

    def u(w):
        return 0.5 * (a * w * w).sum(-1)

    got = sampler.mala_log_acceptance(w0, w1, u(w0), u(w1), a * w0, a * w1, eps)
    for c in range(4):
        fwd = stats.multivariate_normal(mean=(w0[c] - 0.5 * eps * a * w0[c]).numpy(), cov=eps)
        bwd = stats.multivariate_normal(mean=(w1[c] - 0.5 * eps * a * w1[c]).numpy(), cov=eps)
        log_r = (
            bwd.logpdf(w0[c].numpy())
            - fwd.logpdf(w1[c].numpy())
            + u(w0[c]).item()
            - u(w1[c]).item()
        )
        assert got[c].item() == pytest.approx(min(0.0, log_r), abs=1e-10)


def test_preconditioned_mala_acceptance_matches_direct_density_computation():
    gen = torch.Generator().manual_seed(4)
    a = torch.tensor([2.0, 5.0, 9.0], dtype=torch.float64)
    g = torch.tensor([0.3, 1.0, 2.5], dtype=torch.float64)
    eps = 0.05
    w0 = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    w1 = w0 - 0.5 * eps * g * a * w0 + (eps * g).sqrt() * torch.randn(
        4, 3, generator=gen, dtype=torch.float64
    )

    def u(w):
        return 0.5 * (a * w * w).sum(-1)

    got = sampler.mala_log_acceptance(w0, w1, u(w0), u(w1), a * w0, a * w1, eps, g.expand(4, 3))
    _compare_with_scipy(got, w0, w1, u, a, g, eps, np.diag((eps * g).numpy()))
    # with a noise scale s the proposal covariance is ε G s² (same drift)
    s = torch.tensor([0.9, 0.7, 1.0], dtype=torch.float64)
    got = sampler.mala_log_acceptance(w0, w1, u(w0), u(w1), a * w0, a * w1, eps, g, s)
    _compare_with_scipy(got, w0, w1, u, a, g, eps, np.diag((eps * g * s**2).numpy()))


def _compare_with_scipy(got, w0, w1, u, a, g, eps, cov):
    for c in range(4):
        fwd = stats.multivariate_normal(mean=(w0[c] - 0.5 * eps * g * a * w0[c]).numpy(), cov=cov)
        bwd = stats.multivariate_normal(mean=(w1[c] - 0.5 * eps * g * a * w1[c]).numpy(), cov=cov)
        log_r = bwd.logpdf(w0[c].numpy()) - fwd.logpdf(w1[c].numpy()) + (u(w0[c]) - u(w1[c])).item()
        assert got[c].item() == pytest.approx(min(0.0, log_r), abs=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"step_size": 0.0}, "step_size"),
        ({"step_size": -1.0}, "step_size"),
        ({"nbeta": 0.0}, "nbeta"),
        ({"localization": -1.0}, "localization"),
        ({"scheme": "rk4"}, "scheme"),
        ({"preconditioner": "adam"}, "preconditioner"),
        ({"rmsprop_alpha": 1.0}, "rmsprop_alpha"),
        ({"step_size": float("nan")}, "step_size"),
    ],
)
def test_config_validates(kwargs, word):
    base = {"step_size": 1e-3, "localization": 1.0, "nbeta": 10.0}
    with pytest.raises(ValueError, match=word):
        sampler.SGLDConfig(**{**base, **kwargs})
    with pytest.raises(TypeError, match="step_size"):
        sampler.SGLDConfig(step_size="big", localization=1.0, nbeta=1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_compensation_matches_the_exact_stationary_moments(seed):
    # LM steps on U = Σ a w²/2 with gradient noise of variance V: the stationary second moment is
    # s²/a + (ε²V/4)/(1 − ρ²), ρ = 1 − εa/2. Without compensation (s = 1) the gradient noise heats
    # the chain by h = εV/4; with s² = 1 − h (llc._warmup.noise_scale) that heating is removed up
    # to the factor (εa/4)/(1 − εa/4).
    from llc._warmup import noise_scale

    eps, var = 0.05, 24.0  # h = 0.3
    a = torch.tensor([1.0, 10.0, 20.0], dtype=torch.float64)
    cfg = sampler.SGLDConfig(step_size=eps, localization=0.0, nbeta=1.0)
    scale, h = noise_scale(torch.full((3,), var, dtype=torch.float64), cfg, None)
    assert h == pytest.approx(0.3)
    gen = torch.Generator().manual_seed(seed)
    results = {}
    for name, s in (("plain", None), ("compensated", scale)):
        st = _state(
            torch.zeros(64, 3, dtype=torch.float64),
            noise=torch.randn(64, 3, generator=gen, dtype=torch.float64),
            cfg=cfg,
        )
        st = sampler.SGLDState(st.params, st.center, st.noise, noise_scale=s)
        out = []
        for _ in range(4000):
            g = a * st.params + math.sqrt(var) * torch.randn(
                st.params.shape, generator=gen, dtype=torch.float64
            )
            st, _ = sampler.step(
                st, g, torch.randn(st.params.shape, generator=gen, dtype=torch.float64), cfg
            )
            out.append(st.params)
        draws = torch.stack(out, dim=1)[:, 1000:].numpy()
        s2 = 1.0 if s is None else float(s[0]) ** 2
        rho = 1 - eps * a.numpy() / 2
        exact = s2 / a.numpy() + (eps**2 * var / 4) / (1 - rho**2)
        _check_second_moments(draws, exact)
        results[name] = (draws**2).mean(axis=(0, 1)) * a.numpy()
    # relative heating of the energy: about +30 % plain, under 11 % compensated
    assert (results["plain"] > 1.2).all()
    assert (np.abs(results["compensated"] - 1) < 0.13).all()
