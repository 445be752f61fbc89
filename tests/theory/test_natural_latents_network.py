"""Planted shared cause and a trained network: exact joint, features, theorem, samples."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from theory.natural_latents import (
    PlantedCause,
    candidate_labels,
    candidate_latent_table,
    natural_latent_errors,
    natural_latent_errors_from_samples,
    train_two_view_mlp,
)
from theory.natural_latents.experiment import hidden_interaction_features


def h2(q):
    return 0.0 if q in (0.0, 1.0) else -(q * math.log2(q) + (1 - q) * math.log2(1 - q))


def test_planted_joint_matches_binomial_reference():
    c = PlantedCause(n_values=2, n_copies=4, noise=0.2)
    p = c.joint()
    assert p.shape == (2, 16, 16) and p.sum() == pytest.approx(1.0, abs=1e-14)
    r = natural_latent_errors(p, [1, 2], 0, "deterministic", base=2)
    assert r.mediation == pytest.approx(0.0, abs=1e-12)
    # H(Z | view): the number k of copies equal to 1 is sufficient; copy correct w.p. 0.9.
    q, n = 0.9, 4
    ref = 0.0
    for k in range(n + 1):
        l1, l0 = q**k * (1 - q) ** (n - k), (1 - q) ** k * q ** (n - k)
        w = math.comb(n, k) * 0.5 * (l1 + l0)
        ref += w * h2(l1 / (l1 + l0))
    assert r.redundancy == pytest.approx((ref, ref), abs=1e-12)
    z, x1, x2 = c.sample(20000, seed=0)
    counts = np.zeros(p.shape)
    np.add.at(counts, (z, x1, x2), 1)
    # Chi-square goodness of fit; cells with expected count < 5 pooled into one.
    exp = 20000 * p.ravel()
    big = exp >= 5
    obs_c = np.append(counts.ravel()[big], counts.ravel()[~big].sum())
    exp_c = np.append(exp[big], exp[~big].sum())
    assert chisquare(obs_c, exp_c).pvalue > 1e-4


@pytest.fixture(scope="module")
def trained(one_thread):
    cause = PlantedCause()
    state = torch.get_rng_state()
    model, losses = train_two_view_mlp(cause, width=8, steps=300, seed=0)
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched
    return cause, model, losses


def test_training_is_seeded_and_learns(trained):
    cause, model, losses = trained
    assert losses[-1] < 0.2 * losses[0]
    a, _ = train_two_view_mlp(cause, width=8, steps=30, seed=1)
    b, _ = train_two_view_mlp(cause, width=8, steps=30, seed=1)
    c, _ = train_two_view_mlp(cause, width=8, steps=30, seed=2)
    assert all(torch.equal(u, v) for u, v in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.inp.weight, c.inp.weight)


def test_feature_table_theorem_and_baselines(trained):
    cause, model, _ = trained
    t = candidate_latent_table(model, cause, bins=2)
    # Bayes accuracy of predicting Z from 8 copies that are each right w.p. 0.9.
    assert t.accuracy > 0.99
    z = t.get("Z")
    assert z["mediation"] == pytest.approx(0.0, abs=1e-12)
    const, view1 = t.get("const"), t.get("view1")
    assert const["redundancy"] == 0.0 and view1["mediation"] == 0.0
    for name in t.names:
        row = t.get(name)
        assert row["cause_given"] <= row["bound_cause_given"] + 1e-9  # the theorem
        assert row["redundancy"] <= row["det_redundancy"] + 1e-12
    # The predicted class is an approximate natural latent, close to the planted Z.
    am = t.get("argmax")
    assert am["mediation"] < 0.05 and am["redundancy"] < z["redundancy"] + 0.05
    assert am["cause_given"] < 0.1
    fig = t.plot()
    assert fig.axes


def test_interaction_directions_are_logit_functions_and_natural(trained):
    cause, model, _ = trained
    feats, lam = hidden_interaction_features(model, cause)
    # The read-out is linear, so the kept interaction directions span its row space: the
    # features are an exact linear function of the logits, and there are as many as logits.
    nv = cause.n_view_values
    a, b = np.meshgrid(np.arange(nv), np.arange(nv), indexing="ij")
    with torch.no_grad():
        logits = model(cause.one_hot(a.ravel(), b.ravel())).numpy()
    assert feats.shape == (nv * nv, cause.n_values) and lam[0] >= lam[1] > 0
    coef, *_ = np.linalg.lstsq(logits, feats, rcond=None)
    assert np.abs(logits @ coef - feats).max() <= 1e-9 * np.abs(feats).max()
    # The leading interaction direction is a natural latent as good as the predicted class
    # (same mediation error up to 0.01 bit, and it nearly determines Z), far better than any
    # hidden unit; the second one carries almost no information about Z.
    t = candidate_latent_table(model, cause, bins=2)
    ib1, am, ib2 = t.get("IB1"), t.get("argmax"), t.get("IB2")
    assert abs(ib1["mediation"] - am["mediation"]) < 0.01
    assert abs(ib1["redundancy"] - am["redundancy"]) < 0.01
    assert ib1["cause_given"] < am["cause_given"] + 0.01
    units = [n for n in t.names if n.startswith("unit")]
    assert ib1["mediation"] < min(t.get(n)["mediation"] for n in units)
    assert ib2["info_cause"] < 0.1 and lam[1] < 0.01 * lam[0]
    # deterministic (no sampling) and the model is left as it was
    before = [p.detach().clone() for p in model.parameters()]
    again, _ = hidden_interaction_features(model, cause)
    np.testing.assert_array_equal(again, feats)
    assert all(torch.equal(u, v) for u, v in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="n_basis_inputs"):
        hidden_interaction_features(model, cause, n_basis_inputs=1)


def test_constant_baseline_mediation_is_view_mutual_information(trained):
    cause, model, _ = trained
    t = candidate_latent_table(model, cause, bins=2, base=math.e)
    pxx = cause.joint().sum(0)
    px, py = pxx.sum(1), pxx.sum(0)
    mask = pxx > 0
    mi = float((pxx[mask] * np.log(pxx[mask] / np.outer(px, py)[mask])).sum())
    assert t.get("const")["mediation"] == pytest.approx(mi, abs=1e-12)


def test_sample_estimates_of_network_features_agree_with_exact(trained):
    cause, model, _ = trained
    labels = candidate_labels(model, cause, bins=2)
    p = cause.joint()
    z, x1, x2 = cause.sample(100_000, seed=3)
    for name in ("argmax", "PC1", "IB1", "unit0"):
        lab = labels[name]
        q = np.zeros(p.shape + (int(lab.max()) + 1,))
        a, b = np.indices(lab.shape)
        q[:, a, b, lab] = p
        ex = natural_latent_errors(q, [1, 2], 3)
        s = natural_latent_errors_from_samples([x1, x2], lab[x1, x2], "miller_madow",
                                               n_bootstrap=100, seed=1)
        est = np.array([s.mediation, *s.redundancy]) - np.array([s.mediation_bias,
                                                                 *s.redundancy_bias])
        se = np.array([s.mediation_se, *s.redundancy_se])
        assert np.all(np.abs(est - [ex.mediation, *ex.redundancy]) <= 4 * se), name


def test_bad_planted_cause():
    with pytest.raises(ValueError, match="noise must be in"):
        PlantedCause(noise=1.5)
    with pytest.raises(ValueError, match="n_values must be"):
        PlantedCause(n_values=1)
