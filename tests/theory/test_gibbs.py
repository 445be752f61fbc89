"""The exact Gibbs sampler for deep linear networks against closed forms and quadrature."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from theory import dln_gibbs_llc, localized_llc, normal_form_teacher, teacher_student_data

SEEDS = (0, 1, 2)


def _within(res, exact, z=4.0):
    assert abs(res.mean - exact) <= z * res.mcse, (res.mean, exact, res.mcse)


@pytest.mark.parametrize("seed", SEEDS)
def test_one_layer_matches_the_gaussian_closed_form(seed):
    # one layer is linear regression: the posterior is Gaussian, centred at w* (the teacher), with
    # precision nβ Σ ⊗ I + γ, so E[nβ L] = (out/2) Σ_i nβ s_i / (nβ s_i + γ), s = eig(Σ)
    gen = torch.Generator().manual_seed(10 + seed)
    teacher = nn.Sequential(nn.Linear(3, 2, bias=False)).double()
    x = torch.randn(50, 3, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 0.3, 0.05])
    y = teacher(x).detach()
    nbeta, gamma = 20.0, 0.7
    s = np.linalg.eigvalsh(x.T.numpy() @ x.numpy() / 50)
    exact = 2 * 0.5 * float(np.sum(nbeta * s / (nbeta * s + gamma)))
    res = dln_gibbs_llc(
        teacher, (x, y), nbeta=nbeta, localization=gamma, num_sweeps=1500, seed=seed,
        progress=False,
    )
    _within(res, exact)


def _scalar_dln_potential(model, x, y):
    """``K_n(w) = L_n(w) − L_n(w*)`` of f = w2 w1 x with MSE, on NumPy points (m, 2)."""
    x, y = x.double().numpy()[:, 0], y.double().numpy()[:, 0]
    w1, w2 = (float(p) for p in model.parameters())

    def loss(w):
        return 0.5 * ((w[:, 1:2] * w[:, 0:1] * x[None] - y[None]) ** 2).mean(1)

    base = loss(np.array([[w1, w2]]))[0]
    k = lambda w: loss(np.asarray(w)) - base  # noqa: E731
    k.center = np.array([w1, w2])
    return k


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_two_scalar_layers_match_quadrature(seed, noise):
    # f = w2 w1 x: a 2-parameter potential that quadrature integrates exactly; with label noise
    # w* is not the minimum of L_n, which the sampler must handle too
    model = normal_form_teacher([1, 1, 1], 1, seed=3).double()
    x, y = teacher_student_data(model, 200, 1, noise_std=noise, seed=4)
    nbeta, gamma = 200 / math.log(200), 0.5
    exact = localized_llc(_scalar_dln_potential(model, x, y), nbeta, localization=gamma)
    res = dln_gibbs_llc(
        model, (x, y), localization=gamma, num_sweeps=4000, seed=seed, progress=False
    )
    _within(res, exact)


def test_rank_zero_teacher_matches_quadrature_where_the_posterior_is_singular():
    model = normal_form_teacher([1, 1, 1], 0).double()  # w* = 0, K = w1² w2² / 2
    x, y = teacher_student_data(model, 500, 1, seed=5)
    nbeta, gamma = 500 / math.log(500), 1.0
    exact = localized_llc(_scalar_dln_potential(model, x, y), nbeta, localization=gamma)
    for seed in SEEDS:
        res = dln_gibbs_llc(
            model, (x, y), localization=gamma, num_sweeps=6000, seed=seed, progress=False
        )
        _within(res, exact)


def test_same_seed_same_result_and_generator_seeds():
    model = normal_form_teacher([3, 2, 3], 1)
    data = teacher_student_data(model, 100, 3)
    a = dln_gibbs_llc(model, data, num_sweeps=20, seed=7, progress=False)
    b = dln_gibbs_llc(model, data, num_sweeps=20, seed=7, progress=False)
    np.testing.assert_array_equal(a.trace, b.trace)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    c = dln_gibbs_llc(model, data, num_sweeps=20, seed=g1, progress=False)
    d = dln_gibbs_llc(model, data, num_sweeps=20, seed=g2, progress=False)
    np.testing.assert_array_equal(c.trace, d.trace)
    e = dln_gibbs_llc(model, data, num_sweeps=20, seed=7, progress=False, device="cpu")
    np.testing.assert_array_equal(a.trace, e.trace)  # the default device is the CPU
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device"):
            dln_gibbs_llc(model, data, num_sweeps=20, progress=False, device="cuda")
    assert "Gibbs" in a.summary()
    fig = a.plot()
    assert len(fig.axes[0].lines) >= a.trace.shape[0]


def test_model_is_not_modified():
    model = normal_form_teacher([3, 2, 3], 1)
    before = [p.detach().clone() for p in model.parameters()]
    dln_gibbs_llc(model, teacher_student_data(model, 50, 3), num_sweeps=5, progress=False)
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"localization": 0.0}, ValueError, "localization"),
        ({"nbeta": -1.0}, ValueError, "nbeta"),
        ({"num_chains": 0}, ValueError, "num_chains"),
        ({"num_sweeps": 2}, ValueError, "num_sweeps"),
        ({"num_burnin": 10, "num_sweeps": 12}, ValueError, "num_burnin"),
        ({"seed": "a"}, TypeError, "seed"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    model = normal_form_teacher([3, 2, 3], 1)
    data = teacher_student_data(model, 50, 3)
    with pytest.raises(exc, match=match):
        dln_gibbs_llc(model, data, progress=False, **kwargs)


def test_bad_models_and_data():
    model = normal_form_teacher([3, 2, 3], 1)
    data = teacher_student_data(model, 50, 3)
    with pytest.raises(TypeError, match="bias-free"):
        dln_gibbs_llc(nn.Sequential(nn.Linear(3, 3)), data, progress=False)
    with pytest.raises(ValueError, match="layer 1 takes"):
        dln_gibbs_llc([np.ones((2, 3)), np.ones((3, 3))], data, progress=False)
    with pytest.raises(ValueError, match="inputs must have shape"):
        dln_gibbs_llc(model, (data[0][:, :2], data[1]), progress=False)
    with pytest.raises(ValueError, match="targets must have shape"):
        dln_gibbs_llc(model, (data[0], data[1][:10]), progress=False)
    with pytest.raises(TypeError, match="data"):
        dln_gibbs_llc(model, data[0], progress=False)
