"""priors.sae: the derived sparsity penalty and prox activation, against closed forms."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from torch.func import functional_call

import priors
from priors import ImproperPriorError
from priors.sae import ProxActivation, SparsityPenalty, l0_penalty

L0 = l0_penalty()


def laplace():
    return priors.get("laplace", b=1)


# ---------------------------------------------------------------- the penalty module


def test_l1_with_decoder_norms_is_the_weighted_l1():
    g = torch.Generator().manual_seed(0)
    f = torch.rand(7, 5, generator=g, dtype=torch.float64)
    w = torch.randn(5, 3, generator=g, dtype=torch.float64)
    pen = SparsityPenalty(laplace(), coefficient=0.3, decoder_norm=True)
    expected = 0.3 * (f * w.norm(dim=1)).abs().sum(1).mean()
    torch.testing.assert_close(pen(f, w), expected, rtol=1e-14, atol=0)


def test_decoder_norm_scaling_is_invariant_to_rescaling_latents():
    g = torch.Generator().manual_seed(1)
    f = torch.rand(6, 4, generator=g, dtype=torch.float64) * 3
    w = torch.randn(4, 2, generator=g, dtype=torch.float64)
    c = torch.tensor([0.5, 2.0, 3.0, 0.1], dtype=torch.float64)
    pen = SparsityPenalty(priors.get("student_t", nu=3, s=1), decoder_norm=True)
    torch.testing.assert_close(pen(f / c, w * c[:, None]), pen(f, w), rtol=1e-12, atol=0)


def test_joint_prior_penalises_blocks():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(5, 6, generator=g, dtype=torch.float64)
    pen = SparsityPenalty(priors.group_laplace(3), params={"lambda": 2.0}, coefficient=1.0)
    expected = 2.0 * f.unflatten(-1, (2, 3)).norm(dim=-1).sum(-1).mean()
    torch.testing.assert_close(pen(f), expected, rtol=1e-12, atol=0)
    assert pen.group_size == 3


# ---------------------------------------------------------------- the activation: forward


def test_l0_activation_is_jumprelu_bit_for_bit():
    act = ProxActivation(L0, 64, threshold=0.3)
    g = torch.Generator().manual_seed(3)
    v = torch.randn(256, 64, generator=g)
    v[0] = 0.3  # at the threshold
    v[1] = torch.nextafter(torch.tensor(0.3), torch.tensor(1.0))
    out = act(v)
    assert torch.equal(out, v * (v > act.threshold))
    torch.testing.assert_close(
        act.t, torch.full((64,), 0.045, dtype=torch.float64), rtol=1e-6, atol=0
    )


def test_l1_activation_is_a_shifted_relu():
    act = ProxActivation(laplace(), 8, t=0.25)
    v = torch.linspace(-2, 2, 80, dtype=torch.float64).reshape(10, 8)
    torch.testing.assert_close(act.double()(v), torch.relu(v - 0.25), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "prior",
    [
        priors.get("student_t", nu=3, s=1),
        priors.get("generalized_gaussian", p=0.5, s=1),
        priors.spike_and_slab("gaussian", pi=0.1, sigma=1),
    ],
    ids=["student_t", "gen_gaussian_0.5", "spike_slab"],
)
def test_activation_is_the_prox_of_the_nonnegative_part(prior):
    act = ProxActivation(prior, 6, t=0.4).double()
    px = priors.prox(priors.penalty(prior)).to_torch()
    g = torch.Generator().manual_seed(4)
    v = torch.randn(50, 6, generator=g, dtype=torch.float64) * 2
    t = act.t
    expected = px(torch.relu(v), t.expand_as(v))
    # the dead zone comes from the tabulated threshold: compare away from it
    if hasattr(act, "threshold"):
        far = (v.abs() - act.threshold.detach()).abs() > 1e-4
        assert far.float().mean() > 0.9
        torch.testing.assert_close(act(v)[far], expected[far], rtol=1e-10, atol=1e-12)
    else:
        torch.testing.assert_close(act(v), expected, rtol=1e-10, atol=1e-12)


def test_group_laplace_activation_is_block_soft_thresholding():
    act = ProxActivation(priors.group_laplace(2, lam=1.0), 6, t=0.5, nonnegative=False).double()
    g = torch.Generator().manual_seed(5)
    v = torch.randn(20, 6, generator=g, dtype=torch.float64)
    blocks = v.unflatten(-1, (3, 2))
    norm = blocks.norm(dim=-1, keepdim=True)
    t = act.t[:, None]  # 0.5 up to float32 rounding of the stored log t
    expected = (blocks * torch.clamp(1 - t / norm, min=0)).flatten(-2)
    torch.testing.assert_close(act(v), expected, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- the activation: gradients


def _gradcheck(prior, rtol, **kw):
    act = ProxActivation(prior, 4, nonnegative=False, **kw).double()
    name = "threshold" if hasattr(act, "threshold") else "log_t"
    g = torch.Generator().manual_seed(6)
    v = (torch.randn(3, 4, generator=g, dtype=torch.float64) * 2).requires_grad_()
    p = getattr(act, name).detach().clone().requires_grad_()
    if name == "threshold":  # finite differences must not straddle the dead zone's edge
        assert ((v.abs() - p).abs() > 1e-3).all()

    def f(v, p):
        return functional_call(act, {name: p}, (v,))

    assert torch.autograd.gradcheck(f, (v, p), eps=1e-6, atol=1e-7, rtol=rtol)


@pytest.mark.parametrize(
    "prior,kw",
    [
        (priors.get("student_t", nu=3, s=1), {"t": 0.5}),
        (laplace(), {"t": 0.3}),
        (priors.get("generalized_gaussian", p=0.5, s=1), {"t": 0.3, "bandwidth": 1e-9}),
        (priors.group_laplace(2, lam=1.0), {"t": 0.3}),
        (priors.mutually_exclusive(2, pi=0.2, slab="laplace", b=1), {"t": 0.3}),
    ],
    ids=["student_t", "laplace", "gen_gaussian", "group_laplace", "mutually_exclusive"],
)
def test_implicit_gradients_match_finite_differences(prior, kw):
    _gradcheck(prior, 1e-5, **kw)


def test_threshold_gradient_of_a_jump_prior_matches_finite_differences():
    # t(τ) is a tabulated interpolant (relative accuracy ~1e-4); the threshold-gradient uses
    # its exact derivative at jumps, hence the looser tolerance
    _gradcheck(priors.spike_and_slab("gaussian", pi=0.1, sigma=1), 1e-3, t=0.3, bandwidth=1e-9)


def test_l0_threshold_pseudo_derivative_is_jumprelus():
    act = ProxActivation(L0, 3, threshold=0.5, bandwidth=0.1)
    v = torch.tensor([[0.46, 0.52, 0.9], [0.56, 0.2, 0.5]], requires_grad=True)
    grad_out = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    act(v).backward(grad_out)
    theta, eps = 0.5, 0.1
    kernel = ((v.detach() - theta).abs() <= eps / 2).float()
    expected = -(theta / eps) * (grad_out * kernel).sum(0)
    torch.testing.assert_close(act.threshold.grad, expected)
    torch.testing.assert_close(v.grad, grad_out * (v.detach() > theta))


def test_pseudo_derivative_estimates_the_derivative_of_the_mean():
    """d/dτ E[f(v)], v ~ N(0.5, 1): the kernel estimate from 4e5 draws against quadrature."""
    prior = priors.spike_and_slab("gaussian", pi=0.1, sigma=1)
    act = ProxActivation(prior, 1, t=0.3, bandwidth=0.02, nonnegative=False).double()
    px = priors.prox(priors.penalty(prior)).to_torch()
    tau0 = float(act.threshold.detach())

    def mean_f(tau):
        t = float(act._zone.t_of(torch.tensor([tau]))[0])

        def integrand(x):
            fx = float(px(torch.tensor([x], dtype=torch.float64), t)[0])
            return fx * math.exp(-0.5 * (x - 0.5) ** 2) / math.sqrt(2 * math.pi)

        return sum(
            integrate.quad(integrand, a, b, epsabs=1e-12)[0] for a, b in ((-12, -tau), (tau, 12))
        )

    h = 1e-3
    exact = (mean_f(tau0 + h) - mean_f(tau0 - h)) / (2 * h)
    g = torch.Generator().manual_seed(7)
    v = torch.randn(400_000, 1, generator=g, dtype=torch.float64) + 0.5
    blocks = []
    for chunk in v.split(2000):
        act.zero_grad()
        act(chunk).sum().backward()
        blocks.append(float(act.threshold.grad) / len(chunk))
    blocks = np.array(blocks)
    est, se = blocks.mean(), blocks.std(ddof=1) / math.sqrt(len(blocks))
    # kernel bias is O(ε²) ≈ 1e-5 here, below the Monte Carlo error
    assert abs(est - exact) < 4 * se, (est, exact, se)


# ---------------------------------------------------------------- bad input


def test_refusals_name_the_argument():
    with pytest.raises(ValueError, match="lambda.*unbound|unbound"):
        SparsityPenalty(priors.group_laplace(3))
    with pytest.raises(ImproperPriorError, match="normalizable only if"):
        SparsityPenalty(priors.get("double_pareto"), params={"lambda": 0.5})
    with pytest.raises(TypeError, match="prior"):
        SparsityPenalty("laplace")
    pen = SparsityPenalty(laplace(), decoder_norm=True)
    with pytest.raises(ValueError, match="W_dec"):
        pen(torch.ones(2, 3))
    with pytest.raises(ValueError, match="f contains NaN"):
        SparsityPenalty(laplace())(torch.tensor([[1.0, math.nan]]))
    with pytest.raises(ValueError, match="multiple"):
        SparsityPenalty(priors.group_laplace(2, lam=1.0))(torch.ones(2, 3))
    act = ProxActivation(laplace(), 4)
    with pytest.raises(ValueError, match="hidden_pre contains NaN"):
        act(torch.tensor([[1.0, math.nan, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="d_sae"):
        act(torch.ones(2, 5))
    with pytest.raises(ValueError, match="threshold"):
        ProxActivation(priors.get("student_t", nu=3, s=1), 4, threshold=0.1)
    with pytest.raises(ValueError, match="d_sae"):
        ProxActivation(priors.group_laplace(2, lam=1.0), 3)
    with pytest.raises(ValueError, match="t must be > 0"):
        ProxActivation(laplace(), 4, t=0.0)


@pytest.mark.parametrize(
    "prior",
    [
        priors.get("student_t", nu=3, s=1),
        priors.get("generalized_gaussian", p=0.5, s=1),
        priors.spike_and_slab("gaussian", pi=0.1, sigma=1),
        priors.spike_and_slab("gamma", pi=0.2, k=2, theta=1),
        priors.get("exponential", lam=2),
        priors.get("cauchy", s=1),
    ],
    ids=["student_t", "gen_gaussian", "spike_slab", "spike_gamma", "exponential", "cauchy"],
)
def test_fast_prox_equals_the_exact_prox_over_twelve_decades(prior):
    """The table-started Newton solver (and its exact fallback) against priors.prox, with
    weights and inputs inside and outside the table's range, both signs."""
    d = 25
    t = torch.logspace(-7, 7, d, dtype=torch.float64)
    act = ProxActivation(prior, d, nonnegative=False).double()
    with torch.no_grad():
        if hasattr(act, "threshold"):
            act.threshold.copy_(act._zone.tau_of(t))
        else:
            act.log_t.copy_(t.log())
    g = torch.Generator().manual_seed(8)
    mag = 10 ** (torch.rand(400, d, generator=g, dtype=torch.float64) * 18 - 9)
    v = mag * torch.where(torch.rand(400, d, generator=g) < 0.5, -1.0, 1.0).double()
    exact = priors.prox(act.penalty).to_torch()(v, act.t.expand_as(v))
    got = act(v)
    keep = torch.ones_like(v, dtype=torch.bool)
    if hasattr(act, "threshold"):  # the dead zone's edge is the tabulated τ: skip its ulps
        keep = (v.abs() / act.threshold.detach() - 1).abs() > 1e-6
    torch.testing.assert_close(got[keep], exact[keep], rtol=1e-9, atol=1e-300)


def test_penalty_jump_trains_the_threshold_as_saelens_step():
    """L0: the penalty's jump gives τ the gradient −λ·mean_rows Σ K_ε(v − τ)/ε (SAELens' Step)."""
    act = ProxActivation(L0, 3, threshold=0.5, bandwidth=0.1)
    pen = SparsityPenalty(L0, coefficient=2.0)
    v = torch.tensor([[0.46, 0.52, 0.9], [0.56, 0.2, 0.5]])
    loss = pen(act(v), hidden_pre=v, activation=act)
    assert float(loss) == 3.0  # 2 · mean(2, 1) active latents
    loss.backward()
    kernel = ((v - 0.5).abs() <= 0.05).float() / 0.1
    torch.testing.assert_close(act.threshold.grad, -2.0 * kernel.sum(0) / 2)
    # a continuous prox (L1) has no jump: the term is zero and τ learns through pen'(f)
    act1 = ProxActivation(laplace(), 3, t=0.5)
    l1 = SparsityPenalty(laplace())
    assert float(l1(act1(v), hidden_pre=v, activation=act1)) == float(l1(act1(v)))


def test_spike_dominated_by_its_slab_uses_the_closure():
    """A hurdle fit can give l0 + slab(0⁺) < 0 (π·g(0⁺) > 1 − π): the spike-and-slab penalty is
    then not lower semicontinuous and has no prox near 0.  The activation warns and uses the
    closure (the slab's penalty with 0 included): a continuous prox with threshold t·slab'(0⁺),
    finite gradients."""
    prior = priors.spike_and_slab("half_cauchy", pi=0.5, s=0.2)  # π·g(0) = 1.6 > 1 − π
    with pytest.warns(UserWarning, match="undercuts the spike"):
        act = ProxActivation(prior, 4, t=0.1).double()
    v = torch.linspace(-1, 3, 40, dtype=torch.float64).reshape(10, 4).requires_grad_()
    out = act(v)
    closure = priors.prox(act.penalty).to_torch()(torch.relu(v.detach()), act.t.expand(10, 4))
    torch.testing.assert_close(out.detach(), closure, rtol=1e-9, atol=1e-12)
    out.sum().backward()
    assert torch.isfinite(v.grad).all()
    grad = act.threshold.grad if hasattr(act, "threshold") else act.log_t.grad
    assert torch.isfinite(grad).all()
