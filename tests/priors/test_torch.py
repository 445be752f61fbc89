"""Compiled torch penalties: values and gradients equal sympy's (1e-10, float64)."""

import math

import pytest
import sympy as sp
import torch

import priors
from priors import Penalty
from priors._torch_compile import compile_torch, log_expint1

from ._priors_cases import NUMERIC

A = sp.Symbol("a", real=True)

POINTS = [-7.5, -2.2, -0.61, -0.05, 0.013, 0.4, 1.0, 3.3, 12.0]


def _sympy_value_grad(pen: Penalty, x: float) -> tuple[float, float]:
    val = pen.expr.subs(pen.var, sp.Float(x, 30))
    der = sp.diff(pen.expr, pen.var).subs(pen.var, sp.Float(x, 30))
    return float(val.evalf(30)), float(der.evalf(30))


@pytest.mark.parametrize("name", sorted(NUMERIC))
def test_values_and_gradients_match_sympy(name):
    pen = priors.penalty(priors.get(name, **NUMERIC[name]))
    f = pen.to_torch()
    xs = [x for x in POINTS if pen.support.contains(x) is sp.true]
    x = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
    y = f(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    for i, xi in enumerate(xs):
        v, d = _sympy_value_grad(pen, xi)
        assert y[i].item() == pytest.approx(v, rel=1e-10, abs=1e-10), (name, xi)
        assert g[i].item() == pytest.approx(d, rel=1e-10, abs=1e-10), (name, xi)


@pytest.mark.parametrize("name", ["exponential", "half_cauchy", "lognormal", "gamma"])
def test_outside_support_is_inf_with_zero_gradient(name):
    f = priors.penalty(priors.get(name, **NUMERIC[name])).to_torch()
    x = torch.tensor([-1.0, -0.1, 0.5], dtype=torch.float64, requires_grad=True)
    y = f(x)
    assert torch.isinf(y[:2]).all() and torch.isfinite(y[2])
    (g,) = torch.autograd.grad(y[2] + y[:2].sum().clamp(max=0), x)
    assert torch.isfinite(g).all() and (g[:2] == 0).all()


def test_kinks_have_documented_subgradients():
    """|a| and |a|^{1/2} at 0: gradient 0 (not NaN); L0 is piecewise constant (gradient 0)."""
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    for name, params in [("laplace", {"b": 1}), ("generalized_gaussian", {"p": 0.5, "s": 1}),
                         ("spike_and_slab", {"pi": 0.5, "sigma": 1})]:
        y = priors.penalty(priors.get(name, **params)).to_torch()(x)
        (g,) = torch.autograd.grad(y.sum(), x)
        assert torch.equal(g, torch.zeros(3, dtype=torch.float64)), name
    l0 = Penalty(sp.Piecewise((0, sp.Eq(A, 0)), (1, True)), A).to_torch()
    z = torch.tensor([0.0, 2.0], requires_grad=True)
    out = l0(z)
    assert out.tolist() == [0.0, 1.0]
    (g,) = torch.autograd.grad(out.sum(), z)
    assert g.tolist() == [0.0, 0.0]


def test_dtype_device_and_shape_respected():
    f = priors.penalty(priors.get("student_t", nu=3, s=1)).to_torch()
    x32 = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    y = f(x32)
    assert y.dtype == torch.float32 and y.shape == (4, 5) and y.device == x32.device
    ref = 2 * torch.log1p(x32**2 / 3)
    torch.testing.assert_close(y, ref)


def test_symbolic_parameters_become_keyword_arguments():
    pen = priors.penalty(priors.get("student_t", s=1))
    f = pen.to_torch()
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    nu = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    y = f(x, nu=nu)
    torch.testing.assert_close(y, (nu + 1) / 2 * torch.log1p(x**2 / nu))
    (gnu,) = torch.autograd.grad(y.sum(), nu)  # learnable parameter
    assert torch.isfinite(gnu)
    with pytest.raises(TypeError, match="nu"):
        f(x)
    with pytest.raises(TypeError, match="Tensor"):
        f([1.0, 2.0], nu=3.0)


def test_translations_for_max_heaviside_gamma_expint():
    """REFERENCES §4 pitfalls: Max, Heaviside, gamma and expint print into failing calls."""
    x = torch.tensor([-1.5, 0.0, 0.7, 2.0], dtype=torch.float64)
    cases = [
        (sp.Max(A, 0) + sp.Min(A, 1), torch.clamp(x, min=0) + torch.clamp(x, max=1)),
        (sp.Heaviside(A), torch.tensor([0.0, 0.5, 1.0, 1.0], dtype=torch.float64)),
        (sp.gamma(sp.Rational(5, 2)) * A, 0.75 * math.sqrt(math.pi) * x),
        (sp.loggamma(A**2 + 1), torch.lgamma(x**2 + 1)),
    ]
    for expr, ref in cases:
        torch.testing.assert_close(compile_torch(expr, [A])(x), ref, rtol=1e-12, atol=1e-12)
    z = [0.01, 0.5, 1.0, 1.5, 7.0, 60.0, 800.0]
    got = log_expint1(torch.tensor(z, dtype=torch.float64))
    for zi, gi in zip(z, got.tolist()):
        assert gi == pytest.approx(float(sp.log(sp.expint(1, sp.Float(zi, 30))).evalf(30)),
                                   rel=1e-12)
    # E1 itself and its gradient -exp(-z)/z
    e1 = compile_torch(sp.expint(1, A), [A])
    zt = torch.tensor([0.3, 2.5], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(e1(zt).sum(), zt)
    torch.testing.assert_close(g, -torch.exp(-zt.detach()) / zt.detach(), rtol=1e-10, atol=0)


def test_joint_penalty_compiles_on_last_axis():
    pen = priors.penalty(priors.group_laplace(3, lam=2.0))
    f = pen.to_torch()
    a = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(f(a), 2 * a.norm(dim=-1))
    with pytest.raises(ValueError, match="last dimension"):
        f(torch.zeros(5, 2))
