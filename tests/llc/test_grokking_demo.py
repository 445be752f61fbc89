"""The grokking demo (llc.demos), small: bench/llc_grokking.py --small runs the same settings."""

import math
import warnings

import matplotlib
import numpy as np
import pytest
import torch

import llc
from llc.demos import (
    SMALL,
    ModularAdditionTransformer,
    grokking,
    modular_addition,
    train_modular_addition,
)

matplotlib.use("Agg")
pytestmark = pytest.mark.usefixtures("one_thread")


def test_modular_addition_split():
    (x_tr, y_tr), (x_te, y_te) = modular_addition(7, 0.4, seed=1)
    assert x_tr.shape == (20, 3) and x_te.shape == (29, 3)
    x, y = torch.cat([x_tr, x_te]), torch.cat([y_tr, y_te])
    assert len({tuple(r) for r in x[:, :2].tolist()}) == 49  # every pair once
    assert torch.equal(y, (x[:, 0] + x[:, 1]) % 7) and (x[:, 2] == 7).all()
    again = modular_addition(7, 0.4, seed=1)[0][0]
    assert torch.equal(again, x_tr)
    with pytest.raises(ValueError, match="train_fraction"):
        modular_addition(7, 1.0)


def test_model_outputs_last_position_logits():
    model = ModularAdditionTransformer(11, d_model=8, n_heads=2, d_mlp=16, seed=3)
    x = modular_addition(11)[0][0]
    out = model(x)
    assert out.shape == (len(x), 11)
    # the first two positions are read only through the last one's attention: a batch of one
    # gives the same logits
    assert torch.allclose(model(x[:1]), out[:1], atol=1e-6)
    same = ModularAdditionTransformer(11, d_model=8, n_heads=2, d_mlp=16, seed=3)
    assert torch.equal(same(x), out)


def test_training_is_seeded_and_calls_back_every_step():
    train, test = modular_addition(11, 0.5)
    seen = []
    runs = []
    for _ in range(2):
        model = ModularAdditionTransformer(11, d_model=8, n_heads=2, d_mlp=16)
        h = train_modular_addition(
            model, train, test, steps=30, eval_every=10,
            callback=lambda m, step, loss: seen.append((step, loss)),
        )  # fmt: skip
        runs.append(h)
    assert [s for s, _ in seen[:31]] == list(range(31))
    assert seen[:31] == seen[31:]  # deterministic
    assert runs[0].steps.tolist() == [0, 10, 20, 30]
    assert math.isclose(runs[0].train_loss[0], seen[0][1], rel_tol=1e-6)
    assert runs[0].train_loss[-1] < runs[0].train_loss[0]


def test_small_demo_memorises_and_lambda_rises(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", llc.LLCWarning)  # short chains: R-hat warnings
        run = grokking(**SMALL)
    h, t = run.history, run.trajectory
    assert h.train_acc[-1] == 1.0 and h.memorised is not None and h.memorised <= SMALL["steps"]
    assert h.test_acc[-1] < 0.5  # memorised, not generalised, in 600 steps
    assert t.steps.tolist() == SMALL["every"]
    assert np.isfinite(t.llc).all() and np.isfinite(t.mcse).all()
    losses = [r.train_loss for r in t.records]
    assert losses[0] > 3 * losses[-1]  # the tracker was given the training loss
    k = run.key_points()
    # λ̂ at the memorised network well above λ̂ at initialisation (13 vs 173 with these
    # seeds): more than 3x, and more than 10 MCSE apart
    at_init, at_mem = t.records[0], t.records[int(np.argmin(np.abs(t.steps - h.memorised)))]
    assert at_mem.llc > 3 * at_init.llc
    assert at_mem.llc - at_init.llc > 10 * math.hypot(at_mem.mcse, at_init.mcse)
    assert k["llc_init"] == at_init.llc and k["llc_peak"] >= k["llc_memorised"]
    assert "memorised" in run.summary()
    assert {r.settings["sampler"] for r in t.records} == {"rmsprop_sgld"}
    assert {r.settings["num_draws"] for r in t.records} == {SMALL["num_draws"]}
    import matplotlib.pyplot as plt

    fig = run.plot(tmp_path / "grokking.png")
    assert (tmp_path / "grokking.png").stat().st_size > 10_000 and len(fig.axes) == 4
    plt.close(fig)
