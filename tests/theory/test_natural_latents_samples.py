"""Sample estimators of natural-latent errors: exactness, convergence, bias, interval coverage."""

import math

import numpy as np
import pytest
import torch

from theory.natural_latents import (
    discretize,
    natural_latent_errors,
    natural_latent_errors_from_samples,
)

SHAPE = (3, 3, 2)


def truth_joint(seed=7):
    """A fixed joint with every error well away from 0 (the boundary where coverage breaks)."""
    return np.random.default_rng(seed).dirichlet(np.full(18, 2.0)).reshape(SHAPE)


def draw(p, n, rng):
    idx = np.array(list(np.ndindex(*p.shape)))
    return idx[rng.choice(p.size, size=n, p=p.ravel())]


def test_plugin_equals_exact_errors_of_the_empirical_distribution():
    rng = np.random.default_rng(0)
    x = draw(truth_joint(), 700, rng)
    emp = np.zeros(SHAPE)
    np.add.at(emp, tuple(x.T), 1.0)
    emp /= emp.sum()
    for kind in ("stochastic", "deterministic"):
        s = natural_latent_errors_from_samples([x[:, 0], x[:, 1]], x[:, 2], kind=kind,
                                               n_bootstrap=0, base=2)
        e = natural_latent_errors(emp, [0, 1], 2, kind, base=2)
        assert s.mediation == pytest.approx(e.mediation, abs=1e-12)
        assert s.redundancy == pytest.approx(e.redundancy, abs=1e-12)
        assert math.isnan(s.mediation_interval[0]) and s.n_samples == 700


def test_blocks_with_several_columns_are_one_variable():
    rng = np.random.default_rng(1)
    x = draw(truth_joint(), 500, rng)
    # Block 1 as two columns (x0, x0 + 3*x1) carries the same information as the pair.
    s2 = natural_latent_errors_from_samples([np.stack([x[:, 0], x[:, 0] + 3 * x[:, 1]], 1),
                                             x[:, 2]], x[:, 1], n_bootstrap=0)
    p = np.zeros((9, 2, 3))
    np.add.at(p, (x[:, 0] + 3 * x[:, 1], x[:, 2], x[:, 1]), 1 / 500)
    e = natural_latent_errors(p, [0, 1], 2)
    assert s2.mediation == pytest.approx(e.mediation, abs=1e-12)
    assert s2.redundancy == pytest.approx(e.redundancy, abs=1e-12)


def test_estimates_converge_to_exact_values():
    p = truth_joint()
    exact = natural_latent_errors(p, [0, 1], 2)
    truth = np.array([exact.mediation, *exact.redundancy])
    rng = np.random.default_rng(2)
    rmse = {}
    for n in (500, 5000, 50000):
        errs = []
        for _ in range(20):
            x = draw(p, n, rng)
            s = natural_latent_errors_from_samples([x[:, 0], x[:, 1]], x[:, 2], "miller_madow",
                                                   n_bootstrap=0)
            errs.append(np.array([s.mediation, *s.redundancy]) - truth)
        rmse[n] = np.sqrt(np.mean(np.square(errs), axis=0))
    assert np.all(rmse[5000] < rmse[500]) and np.all(rmse[50000] < rmse[5000])
    # Root-n rate: a 100-fold sample size should cut the error roughly 10-fold.
    assert np.all(rmse[50000] < 0.2 * rmse[500])


def test_miller_madow_removes_most_of_the_plugin_bias():
    p = truth_joint()
    exact = natural_latent_errors(p, [0, 1], 2)
    truth = np.array([exact.mediation, *exact.redundancy])
    rng = np.random.default_rng(3)
    est = {"plugin": [], "miller_madow": []}
    for _ in range(400):
        x = draw(p, 300, rng)
        for k in est:
            s = natural_latent_errors_from_samples([x[:, 0], x[:, 1]], x[:, 2], k, n_bootstrap=0)
            est[k].append([s.mediation, *s.redundancy])
    for k in est:
        est[k] = np.array(est[k])
    bias_plug = est["plugin"].mean(0) - truth
    bias_mm = est["miller_madow"].mean(0) - truth
    se_plug = est["plugin"].std(0, ddof=1) / math.sqrt(400)
    se_mm = est["miller_madow"].std(0, ddof=1) / math.sqrt(400)
    assert np.all(bias_plug > 3 * se_plug)  # conditional MIs are biased upwards
    assert np.all(np.abs(bias_mm) < np.abs(bias_plug) - 2 * (se_plug + se_mm))


@pytest.mark.parametrize("estimator", ["plugin", "miller_madow"])
def test_bootstrap_interval_coverage_is_near_nominal(estimator):
    p = truth_joint()
    exact = natural_latent_errors(p, [0, 1], 2)
    truth = [exact.mediation, *exact.redundancy]
    rng = np.random.default_rng(11)
    reps, conf = 300, 0.9
    hits = np.zeros(3)
    for r in range(reps):
        x = draw(p, 2000, rng)
        s = natural_latent_errors_from_samples([x[:, 0], x[:, 1]], x[:, 2], estimator,
                                               n_bootstrap=200, confidence=conf, seed=r)
        ivs = [s.mediation_interval, *s.redundancy_intervals]
        hits += [lo <= t <= hi for (lo, hi), t in zip(ivs, truth)]
    coverage = hits / reps
    # Monte Carlo error of the coverage itself, plus 0.02 for the bootstrap's approximation.
    tol = 3 * math.sqrt(conf * (1 - conf) / reps) + 0.02
    assert np.all(np.abs(coverage - conf) <= tol), coverage


def test_seed_determinism_and_generator():
    rng = np.random.default_rng(4)
    x = draw(truth_joint(), 400, rng)
    args = ([x[:, 0], x[:, 1]], x[:, 2])
    a = natural_latent_errors_from_samples(*args, seed=5, n_bootstrap=50)
    b = natural_latent_errors_from_samples(*args, seed=5, n_bootstrap=50)
    c = natural_latent_errors_from_samples(*args, seed=6, n_bootstrap=50)
    assert a.mediation_interval == b.mediation_interval
    assert a.mediation_interval != c.mediation_interval
    g = natural_latent_errors_from_samples(*args, seed=np.random.default_rng(5), n_bootstrap=50)
    assert g.mediation_interval == a.mediation_interval
    lo, hi = a.mediation_interval
    assert lo < hi and a.interval == "basic" and a.seed == 5 and a.n_bootstrap == 50
    assert a.mediation_se > 0 and len(a.redundancy_intervals) == 2


def test_torch_inputs_floats_binning_and_plot():
    import matplotlib

    matplotlib.use("Agg")
    rng = np.random.default_rng(5)
    z = rng.integers(0, 2, 3000)
    v1 = z + 0.3 * rng.standard_normal(3000)
    v2 = z + 0.3 * rng.standard_normal(3000)
    s_np = natural_latent_errors_from_samples([v1, v2], z, bins=6, n_bootstrap=20)
    s_t = natural_latent_errors_from_samples(
        [torch.tensor(v1), torch.tensor(v2, dtype=torch.float32)], torch.tensor(z), bins=6,
        n_bootstrap=20)
    assert s_t.mediation == pytest.approx(s_np.mediation, abs=1e-12)
    # Binned codes by hand give the same answer.
    c1, c2 = discretize(v1, 6), discretize(v2, 6)
    assert c1.min() == 0 and c1.max() == 5
    s_c = natural_latent_errors_from_samples([c1, c2], z, n_bootstrap=20)
    assert s_c.redundancy == pytest.approx(s_np.redundancy, abs=1e-12)
    fig = s_np.plot()
    assert fig.axes


def test_bad_sample_input():
    x = np.zeros(10, dtype=int)
    with pytest.raises(ValueError, match="x_blocks\\[1\\] has 9 samples but latent has 10"):
        natural_latent_errors_from_samples([x, x[:9]], x)
    with pytest.raises(ValueError, match="x_blocks\\[0\\] has 10 samples but latent has 8"):
        natural_latent_errors_from_samples([x, x], x[:8])
    with pytest.raises(ValueError, match="at least two blocks"):
        natural_latent_errors_from_samples([x], x)
    with pytest.raises(TypeError, match="x_blocks must be a list"):
        natural_latent_errors_from_samples(np.zeros((10, 2)), x)
    with pytest.raises(ValueError, match="estimator must be"):
        natural_latent_errors_from_samples([x, x], x, "nsb")
    with pytest.raises(ValueError, match="confidence must be"):
        natural_latent_errors_from_samples([x, x], x, confidence=1.5)
    with pytest.raises(ValueError, match="latent must have shape"):
        natural_latent_errors_from_samples([x, x], np.zeros((10, 1, 1)))
    with pytest.raises(ValueError, match="x_blocks\\[0\\] contains NaN"):
        natural_latent_errors_from_samples([np.full(10, np.nan), x], x, bins=3)
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        natural_latent_errors_from_samples([x.astype(float), x], x, bins=0)
    with pytest.raises(ValueError, match="interval must be"):
        natural_latent_errors_from_samples([x, x], x, interval="bca")
