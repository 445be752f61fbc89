"""SGLD with a Kronecker metric per layer (llc.kernels.kron_sgld): the metric is the exact
conditional precision of a deep linear network's layer, it never depends on its own block (so
the diffusion needs no correction term), its powers are consistent, and the estimator's draws
match the exact Gibbs sampler's λ_n."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import llc
from llc.kernels import kron_sgld
from llc.kernels._kron import apply_power, langevin_move, layer_metric
from llc.potential import Potential
from theory import dln_gibbs_llc
from theory.models import normal_form_teacher, teacher_student_data


def _data(model, n=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, model[0].in_features, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = model(x) + 0.1 * torch.randn(n, model[-1].out_features, generator=gen).double()
    return x, y


def _model(*layers, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(*layers).double()


def _dense(block):
    """``M = (U ⊗ V) diag(D) (U ⊗ V)ᵀ`` of chain 0, for the row-major flattened block."""
    u, v, d = (t[0] for t in block)
    q = torch.kron(u, v)
    return q @ torch.diag(d.reshape(-1)) @ q.T


def test_metric_is_the_conditional_precision_of_a_deep_linear_layer():
    model = _model(nn.Linear(4, 3, bias=False), nn.Linear(3, 3, bias=False),
                   nn.Linear(3, 2, bias=False))  # fmt: skip
    x, y = _data(model)
    pot = Potential(model, (x, y), dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    w = pot.center + 0.5 * torch.randn(pot.dim, generator=gen, dtype=torch.float64)
    nbeta, gamma = 7.0, 0.3
    metric = layer_metric(w[None], pot.layers, x, nbeta, gamma)
    for layer, block in zip(pot.layers, metric):

        def potential(wl, layer=layer):
            full = torch.cat([w[: layer.weight.start], wl, w[layer.weight.stop :]])
            loss = 0.5 * ((pot.forward(full, x) - y) ** 2).sum(1).mean()
            return nbeta * loss + 0.5 * gamma * ((full - pot.center) ** 2).sum()

        hess = torch.autograd.functional.hessian(potential, w[layer.weight])
        torch.testing.assert_close(_dense(block), hess, rtol=1e-10, atol=1e-10)


def _mlp():
    return _model(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))


def _mlp_points(num, seed):
    """A small MLP with biases, its potential, its data's inputs, ``num`` points near w*."""
    model = _mlp()
    x, y = _data(model)
    pot = Potential(model, (x, y), dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    w = pot.center + 0.3 * torch.randn(num, pot.dim, generator=gen, dtype=torch.float64)
    return pot, x, w, gen


def test_a_block_metric_never_depends_on_its_own_block():
    pot, x, w, gen = _mlp_points(2, seed=2)
    before = layer_metric(w, pot.layers, x, 5.0, 0.1)
    for i, layer in enumerate(pot.layers):
        moved = w.clone()
        for part in (layer.weight, layer.bias):
            moved[:, part] += torch.randn(moved[:, part].shape, generator=gen).double()
        after = layer_metric(moved, pot.layers, x, 5.0, 0.1)
        torch.testing.assert_close(_dense(after[i]), _dense(before[i]), rtol=0, atol=0)
        others = [j for j in range(len(pot.layers)) if j != i]
        changed = [not torch.allclose(_dense(after[j]), _dense(before[j])) for j in others]
        assert all(changed), f"moving block {i} left another block's metric unchanged"


def test_metric_powers_are_consistent_with_biases():
    pot, x, w, gen = _mlp_points(3, seed=3)
    v = torch.randn(3, pot.dim, generator=gen, dtype=torch.float64)
    m = layer_metric(w, pot.layers, x, 5.0, 0.1)
    half = apply_power(m, pot.layers, apply_power(m, pot.layers, v, -0.5), -0.5)
    torch.testing.assert_close(half, apply_power(m, pot.layers, v, -1.0))
    torch.testing.assert_close(apply_power(m, pot.layers, apply_power(m, pot.layers, v, -1.0),
                                           1.0), v)  # fmt: skip


def test_langevin_move_is_the_metric_drift_plus_its_noise():
    pot, x, w, gen = _mlp_points(3, seed=4)
    grad, noise = torch.randn(2, 3, pot.dim, generator=gen, dtype=torch.float64)
    m = layer_metric(w, pot.layers, x, 5.0, 0.1)
    eps = 0.03
    expected = -0.5 * eps * apply_power(m, pot.layers, grad, -1.0) + math.sqrt(eps) * apply_power(
        m, pot.layers, noise, -0.5
    )
    torch.testing.assert_close(langevin_move(m, pot.layers, grad, noise, eps), expected)


def test_float32_chains_keep_moves_below_their_rounding():
    """Steps far below float32's spacing at w* (about 6e-8 here) add up in the float64 positions
    the state carries, as in a float64 run with the same noise; rounding the positions at every
    step would leave a float32 chain at w*."""
    pot, x, _, gen = _mlp_points(1, seed=4)
    center32 = pot.center.float()
    w_star = center32.double()  # w* as float32 holds it
    kw = dict(step_size=1e-20, localization=0.1, nbeta=5.0, layers=pot.layers)
    p64 = kron_sgld.KronSGLDParams(center=w_star, inputs=x, **kw)
    p32 = kron_sgld.KronSGLDParams(center=center32, inputs=x.float(), **kw)
    noises = torch.randn(201, 2, pot.dim, generator=gen, dtype=torch.float64)
    s64 = kron_sgld.init(w_star.expand(2, -1).clone(), noises[0], p64)
    s32 = kron_sgld.init(center32.expand(2, -1).clone(), noises[0].float(), p32)
    for xi in noises[1:]:
        g64 = s64.position - w_star  # a quadratic loss, its gradient where the loop evaluates
        s64, _ = kron_sgld.step(s64, g64, xi, p64)
        s32, _ = kron_sgld.step(s32, (s32.position - center32), xi.float(), p32)
    moved = (s64.exact - w_star).abs().max()
    assert 1e-10 < moved < 3e-8  # below half the spacing (largest |w*| 0.54: spacing 6e-8)
    torch.testing.assert_close(s32.exact, s64.exact, rtol=0, atol=1e-6 * float(moved))
    assert s32.position.dtype == torch.float32


def test_params_refuse_layers_that_miss_parameters():
    model = _mlp()
    pot = Potential(model, _data(model), dtype=torch.float64)
    kw = dict(step_size=1e-3, localization=0.1, nbeta=5.0, center=pot.center)
    with pytest.raises(ValueError, match="layers cover"):
        kron_sgld.KronSGLDParams(**kw, layers=pot.layers[:-1], inputs=pot.inputs)
    with pytest.raises(ValueError, match="inputs must have 3 features"):
        kron_sgld.KronSGLDParams(**kw, layers=pot.layers, inputs=pot.inputs[:, :2])


def test_refuses_a_model_off_the_mlp_path():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(self.a(x))

    model = Custom().double()
    x = torch.randn(32, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="kron_sgld.*plain MLP"):
        llc.estimate_llc(model, (x, model(x).detach()), sampler="kron_sgld", progress=False)


def _dln_case():
    teacher = normal_form_teacher((3, 3, 3, 3), 1, seed=0, dtype=torch.float64)
    data = teacher_student_data(teacher, 2000, 3, seed=0, dtype=torch.float64)
    return teacher, data


def test_same_seed_same_draws():
    teacher, data = _dln_case()
    kw = dict(sampler="kron_sgld", seed=4, num_burnin=300, num_draws=200, progress=False)
    a, b = (llc.estimate_llc(teacher, data, **kw) for _ in range(2))
    np.testing.assert_array_equal(a.llc_trace, b.llc_trace)
    assert a.config["transport"]["kind"] == "kron_sgld"


def test_evaluates_in_float64_unless_told_otherwise():
    teacher = normal_form_teacher((3, 3, 3, 3), 1, seed=0, dtype=torch.float32)
    data = teacher_student_data(teacher, 500, 3, seed=0, dtype=torch.float32)
    kw = dict(sampler="kron_sgld", seed=4, num_burnin=100, num_draws=50, progress=False)
    assert llc.estimate_llc(teacher, data, **kw).config["dtype"] == "torch.float64"
    assert next(teacher.parameters()).dtype == torch.float32  # the model is left alone
    told = llc.estimate_llc(teacher, data, dtype=torch.float32, **kw)
    assert told.config["dtype"] == "torch.float32"
    sgld = llc.estimate_llc(teacher, data, **{**kw, "sampler": "sgld"})
    assert sgld.config["dtype"] == "torch.float32"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_estimate_matches_the_exact_gibbs_target(seed):
    """λ̂ against λ_n of the exact Gibbs sampler on a deep linear network (3 layers, rank 1):
    within 4 combined standard errors plus the scheme's O(ε) bias at the draws' step, which
    ``docs/design.md`` measures at about 1 % (allowed: 2 %). 12,000 draws (the MCSE is about
    3.5 % of λ̂) keep the three seeds at about 30 s each."""
    teacher, data = _dln_case()
    res = llc.estimate_llc(teacher, data, sampler="kron_sgld", seed=seed, progress=False,
                           dtype=torch.float64, max_draws=12_000)  # fmt: skip
    ref = dln_gibbs_llc(teacher, data, num_sweeps=4000, seed=seed, progress=False)
    tol = 4 * math.hypot(res.mcse, ref.mcse) + 0.02 * ref.mean
    assert abs(res.mean - ref.mean) < tol, (res.mean, ref.mean, res.mcse, ref.mcse)
