"""Warnings on every LLCResult: each check fires on its case, and a healthy estimate has none."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch

import llc
from llc.saddles import learned_rank, saddle_problem, train_saddles
from theory.models import normal_form_teacher, teacher_student_data

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher_fit():
    teacher = normal_form_teacher([4, 3, 4], 1, seed=0)
    x, y = teacher_student_data(teacher, 1000, 4, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the default draw rule (MCSE and R-hat), not a short cap: with the spreading phase
        # the chains start the draws at different points along the slow directions, and 2,000
        # draws left R-hat at 1.05
        res = llc.estimate_llc(teacher, (x, y), progress=False, num_chains=4)
    return teacher, x, y, res


def test_saddles_are_learned_one_rank_at_a_time():
    x, y = saddle_problem()
    _, losses, ranks, _ = train_saddles(x, y, steps=2500)
    assert ranks[0] == 0 and ranks[-1] == 3
    assert np.all(np.diff(ranks) >= 0)  # one mode after another, never unlearned
    assert set(ranks.tolist()) == {0, 1, 2, 3}
    assert losses[-1] < 1e-6 * losses[0]


def test_negative_llc_at_a_saddle_warns():
    x, y = saddle_problem()
    model = train_saddles(x, y, steps=200)[0]
    assert learned_rank(model, (6.0, 2.5, 1.0)) == 1
    with pytest.warns(llc.LLCWarning, match="not a local minimum"):
        res = llc.estimate_llc(model, (x, y), progress=False, num_chains=4, max_draws=300)
    assert res.mean < 0 and any("< 0" in w for w in res.warnings)


def test_unequilibrated_chains_warn(teacher_fit):
    teacher, x, y, _ = teacher_fit
    with pytest.warns(llc.LLCWarning, match="chains disagree"):
        llc.estimate_llc(
            teacher, (x, y), step_size=1e-6, num_burnin=5, num_draws=400, num_chains=4,
            progress=False,
        )  # fmt: skip


def test_each_rule_on_a_modified_result(teacher_fit):
    res = teacher_fit[3]
    c = res.num_chains
    gen = np.random.default_rng(0)
    ramp = np.linspace(0, 1, 2000) + gen.normal(size=(c, 2000))  # a trend of 1 sd over the run
    cases = {
        "stopped at its cap": {"config": {**res.config, "warmup_converged": False}},
        "far below 0.9": {"mala_acceptance": np.full(c, 0.3)},
        "diverged": {"diverged": np.r_[True, np.zeros(c - 1, bool)]},
        "chains disagree": {"r_hat": 1.2},
        "still drifts": {"llc_trace": ramp},
    }
    for text, change in cases.items():
        modified = dataclasses.replace(res, **change)
        assert any(text in w for w in modified.warnings), (text, modified.warnings)
        assert any(text in line for line in modified.summary().splitlines())


@pytest.mark.slow
def test_healthy_estimate_has_no_warnings(teacher_fit):
    assert teacher_fit[3].warnings == (), teacher_fit[3].warnings


def test_warnings_use_llc_warning_class():
    assert issubclass(llc.LLCWarning, RuntimeWarning)
    assert torch.tensor(1.0)  # keeps torch imported for the fixture
