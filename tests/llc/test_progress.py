"""Progress bars: one for the whole warm-up, one for the draws; progress=False silences them."""

import re

import torch
from torch import nn

import llc


def _small():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    x = torch.randn(64, 2, generator=g)
    return model, (x, model(x).detach())


def _totals(text: str, desc: str) -> set[int]:
    """The totals shown by the bars named ``desc`` in tqdm's output."""
    return {int(t) for t in re.findall(rf"{re.escape(desc)}[^\r\n]*?\d+/(\d+)", text)}


def test_one_bar_each_for_warmup_and_draws(capsys, one_thread):
    model, data = _small()
    llc.estimate_llc(model, data, num_burnin=300, num_draws=250, seed=0, progress=True)
    err = capsys.readouterr().err
    # before, each 100-step warm-up window restarted a bar of its own (total 100)
    assert _totals(err, "warm-up") == {300}
    assert _totals(err, "draws") == {250}


def test_progress_false_is_silent(capsys, one_thread):
    model, data = _small()
    llc.estimate_llc(model, data, num_burnin=200, num_draws=100, seed=0, progress=False)
    assert capsys.readouterr().err == ""
