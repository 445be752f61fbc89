"""priors.fit: maximum likelihood, hurdle log-likelihood, ranking, goodness of fit, bad input."""

import math

import numpy as np
import pytest
from scipy import stats

from priors.fit import FitReport, fit

SEEDS = (0, 1, 2)
N = 5000  # "adequate sample size" for the ranking test

# (family, shapes): samples from family(*shapes, loc=0, scale=1.7); loc=0 also for real ones.
TRUE_FAMILIES = [
    ("laplace", ()),
    ("norm", ()),
    ("cauchy", ()),
    ("t", (3.0,)),
    ("gennorm", (0.5,)),
    ("expon", ()),
    ("gamma", (0.5,)),
    ("lognorm", (1.0,)),
    ("halfcauchy", ()),
    ("invgamma", (3.0,)),
    ("halfgennorm", (0.5,)),
]


def _draw(name, shapes, n, seed, scale=1.7):
    return getattr(stats, name).rvs(*shapes, scale=scale, size=n,
                                    random_state=np.random.default_rng(seed))


@pytest.mark.parametrize("name,shapes", TRUE_FAMILIES, ids=[f for f, _ in TRUE_FAMILIES])
def test_true_family_ranks_first_by_bic(name, shapes):
    # BIC is consistent: a family that nests the true one (laplace in gennorm, cauchy in t,
    # expon in gamma) beats it only if 2*(logL gain) > log n, P(chi2_1 > 8.5) = 0.4 %.
    for seed in SEEDS:
        report = fit(_draw(name, shapes, N, seed), gof_top=0, seed=seed)
        ranked = [f.family for f in report.fits]
        assert ranked[0] == name, (seed, ranked[:4])


def test_lomax_and_genpareto_tie():
    # Lomax(c, s) is genpareto(1/c, s/c): the same family, so the same maximized likelihood.
    x = _draw("lomax", (2.5,), N, 0)
    report = fit(x, families=["lomax", "genpareto", "expon", "gamma"], gof_top=0)
    assert {report.fits[0].family, report.fits[1].family} == {"lomax", "genpareto"}
    assert report["lomax"].loglik == pytest.approx(report["genpareto"].loglik, abs=1e-3)


def test_closed_form_mles():
    rng = np.random.default_rng(3)
    x = rng.laplace(0.3, 2.0, size=2001)
    r = fit(x, families=["laplace", "norm"], gof_top=0)
    med = np.median(x)
    b = np.mean(np.abs(x - med))
    assert r["laplace"].params["loc"] == pytest.approx(med, abs=1e-12)
    assert r["laplace"].params["scale"] == pytest.approx(b, rel=1e-10)
    ll = np.sum(-np.log(2 * b) - np.abs(x - med) / b)
    assert r["laplace"].loglik == pytest.approx(ll, rel=1e-12)
    assert r["laplace"].aic == pytest.approx(4 - 2 * ll, rel=1e-12)
    assert r["laplace"].bic == pytest.approx(2 * math.log(x.size) - 2 * ll, rel=1e-12)
    assert r["norm"].params["scale"] == pytest.approx(np.std(x), rel=1e-10)
    y = np.abs(x) + 0.01
    r = fit(y, families=["expon"], gof_top=0)
    assert r["expon"].params == {"loc": 0.0, "scale": pytest.approx(np.mean(y), rel=1e-12)}
    assert r["expon"].n_params == 1


@pytest.mark.parametrize("name,shapes", TRUE_FAMILIES[::2], ids=[f for f, _ in TRUE_FAMILIES[::2]])
def test_mle_beats_true_parameters(name, shapes):
    # A maximum of the likelihood is at least the likelihood at the true parameters.
    x = _draw(name, shapes, 1000, 7)
    f = fit(x, families=[name], gof_top=0).fits[0]
    assert f.ok
    true_ll = np.sum(getattr(stats, name).logpdf(x, *shapes, scale=1.7))
    assert f.loglik >= true_ll - 1e-6


def test_hurdle_loglik_against_direct_computation():
    rng = np.random.default_rng(5)
    n = 4000
    x = np.where(rng.random(n) < 0.2, rng.laplace(0.0, 1.5, n), 0.0)
    r = fit(x, families=["laplace", "norm"], gof_top=0)
    assert r.zero_inflated
    y = x[x != 0]
    n0, n1 = n - y.size, y.size
    pi = n1 / n
    assert r.pi == pytest.approx(pi, rel=1e-15) and r.n_zero == n0
    b = np.mean(np.abs(y))  # slab MLE with loc fixed at 0
    ll = n0 * np.log(1 - pi) + n1 * np.log(pi) + np.sum(-np.log(2 * b) - np.abs(y) / b)
    lap = r["laplace"]
    assert lap.hurdle and lap.params == {"loc": 0.0, "scale": pytest.approx(b, rel=1e-10)}
    assert lap.loglik == pytest.approx(ll, rel=1e-12)
    assert lap.n_params == 2  # scale and pi
    assert lap.bic == pytest.approx(2 * math.log(n) - 2 * ll, rel=1e-12)
    s2 = np.mean(y**2)
    ll_slab = -0.5 * np.sum(np.log(2 * np.pi * s2) + y**2 / s2)
    ll_norm = n0 * np.log(1 - pi) + n1 * np.log(pi) + ll_slab
    assert r["norm"].loglik == pytest.approx(ll_norm, rel=1e-10)
    # the mixed density of the report integrates the same log-likelihood
    assert r.loglik(x)["laplace"] * n == pytest.approx(ll, rel=1e-12)
    assert r.best_fit.family == "laplace"


def test_zero_inflated_modes():
    rng = np.random.default_rng(6)
    x = np.maximum(rng.normal(size=3000), 0.0)  # ReLU of a Gaussian: half zeros
    assert fit(x, gof_top=0).zero_inflated
    dense = fit(rng.exponential(size=3000), gof_top=0)
    assert not dense.zero_inflated and dense.pi == 1.0
    forced = fit(x, zero_inflated=False, families=["lognorm", "expon", "halfcauchy"], gof_top=0)
    assert not forced.zero_inflated
    # log-normal has density 0 at a = 0: the fit fails cleanly, ranked last
    assert forced.fits[-1].family == "lognorm" and not forced.fits[-1].ok
    assert "fit failed" in forced.summary()
    # ReLU(Gaussian) slab is a half-normal = halfgennorm(beta=2)
    assert fit(x, gof_top=0).best_fit.family == "halfgennorm"


def test_gof_rejects_wrong_family_and_is_seeded():
    x = np.random.default_rng(8).laplace(size=2000)
    r = fit(x, families=["norm", "laplace"], gof_top=None, n_mc_samples=49, seed=1)
    assert r["norm"].gof_pvalue <= 1 / 50 + 1e-12  # the smallest attainable p-value
    r2 = fit(x, families=["norm", "laplace"], gof_top=None, n_mc_samples=49, seed=1)
    assert [f.gof_pvalue for f in r.fits] == [f.gof_pvalue for f in r2.fits]
    assert [f.gof_statistic for f in r.fits] == [f.gof_statistic for f in r2.fits]


def test_gof_pvalue_calibrated_under_the_true_family():
    # Under H0 the bootstrap p-value is ~uniform: mean 1/2, sd 0.29/sqrt(20) = 0.065.
    ps = []
    for seed in range(20):
        x = np.where(np.random.default_rng(100 + seed).random(600) < 0.5,
                     np.random.default_rng(200 + seed).exponential(2.0, 600), 0.0)
        r = fit(x, families=["expon"], n_mc_samples=19, seed=seed)
        ps.append(r.fits[0].gof_pvalue)
    assert abs(np.mean(ps) - 0.5) < 4 * 0.29 / math.sqrt(20)


def test_torch_input_and_subsampling():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(9).laplace(size=3000).astype(np.float32)
    r_np = fit(x, families=["laplace"], gof_top=0)
    with pytest.warns(UserWarning, match="pooled"):
        r_t = fit(torch.from_numpy(x).reshape(30, 100), families=["laplace"], gof_top=0)
    assert r_t.fits[0].loglik == r_np.fits[0].loglik
    sub = fit(x, families=["laplace"], gof_top=0, max_samples=1000, seed=4)
    assert sub.n == 1000 and sub.n_total == 3000
    assert fit(x, families=["laplace"], gof_top=0, max_samples=1000, seed=4).fits[0].loglik == \
        sub.fits[0].loglik


def test_summary_and_plot():
    import matplotlib

    matplotlib.use("Agg")
    rng = np.random.default_rng(10)
    x = np.where(rng.random(3000) < 0.3, rng.gamma(0.7, 2.0, 3000), 0.0)
    r = fit(x, n_mc_samples=19)
    assert isinstance(r, FitReport)
    text = r.summary()
    lines = text.splitlines()
    assert "hurdle" in lines[0] and "P(a != 0)" in lines[0]
    ranked_in_text = [ln.split()[1] for ln in lines[4:]]
    assert ranked_in_text == [f.family for f in r.fits]
    assert str(r) == text
    fig = r.plot(top=3)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and len(ax.get_lines()) == 3
    # curves are pi * f: the best curve matches the histogram's normalisation
    line = ax.get_lines()[0]
    xs, ys = line.get_data()
    assert np.allclose(ys, r.pi * r.fits[0].dist.pdf(xs))


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"samples": [1.0, np.nan] * 10}, ValueError, "samples contains 10 NaN"),
        ({"samples": [1.0, np.inf] * 10}, ValueError, "samples contains 10 infinite"),
        ({"samples": [1.0, 2.0, 3.0]}, ValueError, "samples has 3 point"),
        ({"samples": ["a"] * 20}, TypeError, "samples must be"),
        ({"samples": np.ones(20)}, ValueError, "samples are all equal"),
        ({"families": ["laplace", "weibull"]}, ValueError, "families: unknown family.*weibull"),
        ({"families": []}, ValueError, "families is empty"),
        ({"families": ["expon"]}, ValueError, r"families \['expon'\] have support"),
        ({"zero_inflated": "yes"}, ValueError, "zero_inflated must be"),
        ({"rank_by": "waic"}, ValueError, "rank_by must be"),
        ({"gof_statistic": "chi2"}, ValueError, "gof_statistic must be"),
        ({"gof_top": -1}, ValueError, "gof_top must be"),
        ({"n_mc_samples": 0}, ValueError, "n_mc_samples must be"),
        ({"max_samples": 3}, ValueError, "max_samples must be"),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = {"samples": np.random.default_rng(0).normal(size=50)}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        fit(**args)


def test_too_few_nonzeros_for_hurdle():
    x = np.zeros(100)
    x[:5] = [1.0, 2.0, 0.5, 3.0, 1.5]
    with pytest.raises(ValueError, match="5 non-zero value"):
        fit(x)


def test_best_is_the_fitted_prior():
    rng = np.random.default_rng(11)
    x = np.where(rng.random(3000) < 0.3, rng.gamma(0.7, 2.0, 3000), 0.0)
    r = fit(x, gof_top=0)
    prior = r.best
    grid = np.linspace(0.05, 6.0, 9)
    assert float(prior.atom) == pytest.approx(1 - r.pi, rel=1e-12)
    assert np.allclose(prior.pdf(grid), r.pi * r.best_fit.dist.pdf(grid), rtol=1e-10, atol=0)
    dense = fit(rng.standard_t(3, size=3000), gof_top=0)
    assert dense.best.atom is None
    grid = np.linspace(-5.0, 5.0, 9)
    assert np.allclose(dense.best.pdf(grid), dense.best_fit.dist.pdf(grid), rtol=1e-10, atol=0)


def _train_small_mlp(seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2000, 8, generator=g)
    w = torch.randn(8, generator=g)
    y = torch.sin(x @ w) + 0.5 * x[:, 0] * x[:, 1]
    net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss = ((net(x).squeeze(-1) - y) ** 2).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pre = net[0](x)
    return pre, torch.relu(pre)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_small_network_activations(seed):
    # Activations of a 8-32-1 ReLU MLP trained here. Fit on half the inputs; the ranking
    # must carry over to the other half (held-out log-likelihood per value).
    pre, post = _train_small_mlp(seed)
    for acts, hurdle in ((post, True), (pre, False)):
        r = fit(acts[:1000].ravel(), gof_top=0)
        assert r.zero_inflated is hurdle
        if hurdle:
            assert r.pi == pytest.approx(float((acts[:1000] != 0).double().mean()), rel=1e-12)
            assert r.best_fit.family in ("gamma", "halfgennorm", "genpareto", "lomax", "expon")
        held = r.loglik(acts[1000:].ravel())
        order = sorted(held, key=held.get, reverse=True)
        ranks_bic = np.arange(len(r.fits))
        ranks_held = np.array([order.index(f.family) for f in r.fits])
        assert stats.spearmanr(ranks_bic, ranks_held).statistic >= 0.9
        assert held[order[0]] - held[r.best_fit.family] <= 0.01


@pytest.mark.parametrize("family", ["gamma", "lognorm", "invgamma"])
def test_hurdle_fit_penalty_is_finite_at_zero(family):
    # Slabs with support (0, oo): the fitted spike-and-slab's penalty must still be 0 at a = 0
    # with a finite gradient (ReLU latents are exactly 0), and -log of the hurdle density
    # (FamilyFit.logpdf, w.r.t. delta_0 + Lebesgue) shifted to 0 at a = 0 elsewhere.
    import torch

    import priors

    rng = np.random.default_rng(5)
    x = np.where(rng.random(3000) < 0.3, rng.gamma(2.0, 0.8, 3000), 0.0)
    ff = fit(x, families=[family], gof_top=0).best_fit
    assert ff.hurdle and ff.ok
    pen = priors.penalty(ff.prior())
    a = torch.tensor([0.0, 0.2, 1.0, 3.0, -1.0], dtype=torch.float64, requires_grad=True)
    val = pen.to_torch()(a)
    val.sum().backward()
    pos = np.array([0.2, 1.0, 3.0])
    ref = ff.logpdf(np.array([0.0]))[0] - ff.logpdf(pos)
    h = 1e-6
    dref = -(ff.logpdf(pos + h) - ff.logpdf(pos - h)) / (2 * h)
    assert val[0].item() == 0.0 and a.grad[0].item() == 0.0
    np.testing.assert_allclose(val[1:4].detach().numpy(), ref, rtol=1e-9)
    np.testing.assert_allclose(a.grad[1:4].numpy(), dref, rtol=1e-6)
    assert val[4].item() == math.inf and a.grad[4].item() == 0.0
