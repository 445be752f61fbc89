"""The kernels: update equations, exact stationary moments of Gaussians, MALA acceptance.

Stationary moments are checked against closed forms within 4.5 ESS-scaled standard errors, over
several seeds where the test is stochastic.
"""

import math
from collections import namedtuple

import numpy as np
import pytest
import torch
from scipy import stats

from llc.diagnostics import ess
from llc.kernels import KERNELS, get_kernel, mala_log_acceptance, rmsprop_sgld, sgld, sgnht
from llc.kernels._langevin import potential_grad

_Layer = namedtuple("_Layer", "weight shape bias act")


def _params(kernel="sgld", d=3, **kw):
    base = {"step_size": 1e-2, "localization": 0.0, "nbeta": 1.0}
    base.update(kw)
    if kernel == "kron_sgld":  # one bias-free layer (1, d) and fixed metric inputs
        gen = torch.Generator().manual_seed(9)
        base.setdefault("layers", (_Layer(slice(0, d), (1, d), None, None),))
        base.setdefault("inputs", torch.randn(4, d, generator=gen, dtype=torch.float64))
    return get_kernel(kernel).params(center=torch.zeros(d, dtype=torch.float64), **base)


@pytest.mark.parametrize("scheme", ["euler", "leimkuhler_matthews"])
def test_zero_noise_is_gradient_descent_at_half_step(scheme):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    center = torch.randn(5, generator=gen, dtype=torch.float64)
    g = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    p = sgld.SGLDParams(step_size=0.01, localization=2.0, nbeta=7.0, center=center, scheme=scheme)
    st = sgld.init(w, torch.zeros_like(w), p)
    new, info = sgld.step(st, g, torch.zeros_like(w), p)
    expected = w - 0.005 * (7.0 * g + 2.0 * (w - center))
    torch.testing.assert_close(new.position, expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(info.potential_grad, 7.0 * g + 2.0 * (w - center))
    assert torch.equal(st.position, w)  # the kernel is pure: the old state is untouched


def test_rmsprop_update_equations():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    g = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    xi0, xi1 = torch.randn(2, 2, 4, generator=gen, dtype=torch.float64)
    p = rmsprop_sgld.RMSpropSGLDParams(
        step_size=1e-3, localization=0.5, nbeta=10.0, center=torch.zeros(4, dtype=torch.float64),
        scheme="euler",
    )  # fmt: skip
    st = rmsprop_sgld.init(w, xi0, p)
    new, info = rmsprop_sgld.step(st, g, xi1, p)
    v = 0.01 * g * g
    G = 1.0 / (0.1 + v.sqrt())
    expected = w - 0.5e-3 * G * (10.0 * g + 0.5 * w) + (1e-3 * G).sqrt() * xi1
    torch.testing.assert_close(new.position, expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(new.square_avg, v)
    torch.testing.assert_close(info.preconditioner, G)


def test_sgnht_update_equations():
    gen = torch.Generator().manual_seed(2)
    w, g, p0, eta = torch.randn(4, 2, 5, generator=gen, dtype=torch.float64)
    center = torch.randn(5, generator=gen, dtype=torch.float64)
    prm = sgnht.SGNHTParams(
        step_size=0.1, localization=0.5, nbeta=3.0, center=center, diffusion=2.0
    )
    st = sgnht.init(w, p0, prm)
    assert torch.equal(st.thermostat, torch.full((2,), 2.0, dtype=torch.float64))
    new, info = sgnht.step(st, g, eta, prm)
    grad_u = 3.0 * g + 0.5 * (w - center)
    p1 = math.exp(-0.1 * 2.0) * p0 - 0.1 * grad_u + math.sqrt(2 * 2.0 * 0.1) * eta
    torch.testing.assert_close(new.momentum, p1, rtol=0, atol=1e-14)
    torch.testing.assert_close(new.position, w + 0.1 * p1, rtol=0, atol=1e-14)
    torch.testing.assert_close(new.thermostat, 2.0 + 0.1 * ((p1 * p1).mean(1) - 1))
    torch.testing.assert_close(info.potential_grad, grad_u)
    assert torch.equal(st.momentum, p0) and torch.equal(st.position, w)  # pure


def _run(kernel, params, grad_fn, chains=64, steps=4000, seed=0, noise_var=0.0):
    """Sample with exact (or noisy) gradients ``grad_fn(w)``; positions (chain, step, dim)."""
    gen = torch.Generator().manual_seed(seed)
    k = get_kernel(kernel)
    d = params.center.numel()
    st = k.init(
        torch.zeros(chains, d, dtype=torch.float64),
        torch.randn(chains, d, generator=gen, dtype=torch.float64),
        params,
    )
    out, xi = [], []
    for _ in range(steps):
        g = grad_fn(st.position)
        if noise_var:
            g = g + math.sqrt(noise_var) * torch.randn(g.shape, generator=gen, dtype=g.dtype)
        st, _ = k.step(st, g, torch.randn(g.shape, generator=gen, dtype=torch.float64), params)
        out.append(st.position)
        xi.append(getattr(st, "thermostat", torch.zeros(chains, dtype=torch.float64)))
    keep = steps // 4
    return torch.stack(out, dim=1)[:, keep:].numpy(), torch.stack(xi, dim=1)[:, keep:].numpy()


def _gaussian_run(scheme, eps, a, chains=64, steps=4000, seed=0):
    """Sample U(w) = Σ a_i w_i² / 2 (nβ = 1, γ = 0, exact gradients); draws (chain, step, dim)."""
    a = torch.as_tensor(a, dtype=torch.float64)
    p = _params("sgld", a.numel(), step_size=eps, scheme=scheme)
    return _run("sgld", p, lambda w: a * w, chains, steps, seed)[0]


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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sgnht_samples_a_gaussian_and_its_thermostat_rests_at_the_diffusion(seed):
    # U = Σ a_i w_i²/2: Var(w_i) = 1/a_i and E[ξ] = A. With h√a ≤ 0.08 the discretisation bias
    # (about h²a/4 ≤ 0.15 %) is far below the Monte Carlo error of these runs (about 2 %).
    a = torch.tensor([1.0, 10.0, 60.0], dtype=torch.float64)
    p = _params("sgnht", 3, step_size=0.01, diffusion=1.0)
    draws, xi = _run("sgnht", p, lambda w: a * w, chains=64, steps=16000, seed=seed)
    _check_second_moments(draws, 1.0 / a.numpy())
    assert abs(xi.mean() - 1.0) < 4.5 * xi.std() / math.sqrt(ess(xi))


@pytest.mark.parametrize("seed", [0, 1])
def test_sgnht_thermostat_absorbs_gradient_noise(seed):
    # Gradient noise of variance V adds diffusion B = hV/2 to the momentum; the thermostat settles
    # at A + B and the positions keep the exact law (Ding et al. 2014), with no noise estimate.
    a = torch.tensor([1.0, 10.0, 60.0], dtype=torch.float64)
    h, var = 0.01, 100.0  # B = 0.5, half the injected A = 1
    p = _params("sgnht", 3, step_size=h, diffusion=1.0)
    draws, xi = _run("sgnht", p, lambda w: a * w, steps=16000, seed=seed, noise_var=var)
    _check_second_moments(draws, 1.0 / a.numpy())
    assert abs(xi.mean() - (1.0 + h * var / 2)) < 4.5 * xi.std() / math.sqrt(ess(xi))


@pytest.mark.parametrize("seed", [0, 1])
def test_sgnht_noise_scale_cancels_anisotropic_gradient_noise(seed):
    # Gradient noise only along the stiff coordinate: the thermostat corrects it on average only,
    # which heats that coordinate and cools the others. The noise scale s² = 1 − hV/(2A) of
    # minibatch_heating makes the total diffusion A along every coordinate: exact moments again.
    from llc.adaptation import noise

    a = torch.tensor([1.0, 10.0, 60.0], dtype=torch.float64)
    var = torch.tensor([0.0, 0.0, 150.0], dtype=torch.float64)  # B/A = 0.75 on the stiff one
    h = 0.01
    plain = _params("sgnht", 3, step_size=h, diffusion=1.0)
    measured = noise.update(noise.init(), var)
    scale, mean_h = noise.final(measured, sgnht.minibatch_heating, plain)
    assert mean_h == pytest.approx(noise.MAX_HEATING / 3)  # 0.75 capped at 0.5
    var = torch.tensor([0.0, 0.0, 100.0], dtype=torch.float64)  # B/A = 0.5: within the cap
    scale, _ = noise.final(noise.update(noise.init(), var), sgnht.minibatch_heating, plain)
    compensated = _params("sgnht", 3, step_size=h, diffusion=1.0, noise_scale=scale)

    gen = torch.Generator().manual_seed(100 + seed)

    def noisy(w):
        return a * w + var.sqrt() * torch.randn(w.shape, generator=gen, dtype=w.dtype)

    draws, _ = _run("sgnht", compensated, noisy, steps=16000, seed=seed)
    _check_second_moments(draws, 1.0 / a.numpy())
    hot, _ = _run("sgnht", plain, noisy, steps=16000, seed=seed)
    assert (hot[:, :, 2] ** 2).mean() * 60.0 > 1.15  # uncompensated: the stiff one runs hot


def test_every_registered_kernel_is_pure_and_starts_at_its_position():
    gen = torch.Generator().manual_seed(5)
    w, g, xi0, xi1 = torch.randn(4, 3, 6, generator=gen, dtype=torch.float64)
    inputs = [t.clone() for t in (w, g, xi0, xi1)]
    for name, k in KERNELS.items():
        p = _params(name, 6, localization=1.0)
        st = k.init(w, xi0, p)
        assert torch.equal(st.position, w), name
        before = [f.clone() for f in st]
        new, info = k.step(st, g, xi1, p)
        assert all(torch.equal(b, f) for b, f in zip(before, st)), name  # nothing mutated
        assert all(torch.equal(a, b) for a, b in zip(inputs, (w, g, xi0, xi1))), name
        assert new.position.shape == w.shape and torch.isfinite(new.position).all(), name
        torch.testing.assert_close(info.potential_grad, potential_grad(w, p.center, g, 1.0, 1.0))
        assert k.stable_step_size(4.0) > k.stable_step_size(16.0) > 0, name


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

    got = mala_log_acceptance(w0, w1, u(w0), u(w1), a * w0, a * w1, eps)
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
    w1 = (
        w0
        - 0.5 * eps * g * a * w0
        + (eps * g).sqrt() * torch.randn(4, 3, generator=gen, dtype=torch.float64)
    )

    def u(w):
        return 0.5 * (a * w * w).sum(-1)

    got = mala_log_acceptance(w0, w1, u(w0), u(w1), a * w0, a * w1, eps, g.expand(4, 3))
    _compare_with_scipy(got, w0, w1, u, a, g, eps, np.diag((eps * g).numpy()))
    # with a noise scale s the proposal covariance is ε G s² (same drift)
    s = torch.tensor([0.9, 0.7, 1.0], dtype=torch.float64)
    got = mala_log_acceptance(w0, w1, u(w0), u(w1), a * w0, a * w1, eps, g, s)
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
        ({"step_size": float("nan")}, "step_size"),
    ],
)
@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_params_validate(kernel, kwargs, word):
    base = {"step_size": 1e-3, "localization": 1.0, "nbeta": 10.0}
    with pytest.raises(ValueError, match=word):
        _params(kernel, 3, **{**base, **kwargs})
    with pytest.raises(TypeError, match="step_size"):
        _params(kernel, 3, step_size="big")
    with pytest.raises(ValueError, match="sampler"):
        get_kernel("hmc")


@pytest.mark.parametrize(
    ("kernel", "kwargs", "word"),
    [
        ("sgld", {"scheme": "rk4"}, "scheme"),
        ("rmsprop_sgld", {"alpha": 1.0}, "alpha"),
        ("rmsprop_sgld", {"eps": 0.0}, "eps"),
        ("sgnht", {"diffusion": -1.0}, "diffusion"),
    ],
)
def test_kernel_specific_params_validate(kernel, kwargs, word):
    with pytest.raises(ValueError, match=word):
        _params(kernel, 3, **kwargs)
