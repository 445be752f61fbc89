"""``python -m llc estimate``: the same estimate as the library call, and clear refusals."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import llc
from llc.__main__ import main

FIXED = dict(num_burnin=200, num_draws=200, seed=3)
ARGS = ["--num-burnin", "200", "--num-draws", "200", "--seed", "3"]


def make_model() -> nn.Module:
    """The factory the state-dict case names (``tests.llc.test_cli_estimate:make_model``)."""
    torch.manual_seed(0)  # only the factory's own weights; they are overwritten by the file
    return nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))


@pytest.fixture
def saved(tmp_path):
    g = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn(128, 2, generator=g)
    y = model(x).detach() + 0.1 * torch.randn(128, 1, generator=g)
    torch.save(model, tmp_path / "model.pt")
    torch.save(model.state_dict(), tmp_path / "state.pt")
    torch.save({"x": x, "y": y}, tmp_path / "data.pt")
    np.savez(tmp_path / "data.npz", inputs=x.numpy(), targets=y.numpy())
    return model, (x, y), tmp_path


def _printed_llc(out: str) -> float:
    line = next(s for s in out.splitlines() if "λ̂ =" in s)
    return float(line.split("λ̂ =")[1].split("±")[0])


@pytest.mark.filterwarnings("ignore::llc.LLCWarning")
@pytest.mark.parametrize(
    "model_file, data_file, extra",
    [
        ("model.pt", "data.pt", []),
        ("state.pt", "data.npz", ["--factory", "tests.llc.test_cli_estimate:make_model"]),
    ],
)
def test_same_estimate_as_the_library(saved, capsys, one_thread, model_file, data_file, extra):
    model, data, d = saved
    plot = d / "trace.png"
    argv = ["estimate", str(d / model_file), str(d / data_file), *ARGS, "--plot", str(plot)]
    assert main(argv + extra) == 0
    expected = llc.estimate_llc(model, data, progress=False, **FIXED).mean
    got = _printed_llc(capsys.readouterr().out)
    assert math.isclose(got, expected, rel_tol=1e-3, abs_tol=1e-3)  # printed to 4 digits
    assert plot.stat().st_size > 0


@pytest.mark.parametrize(
    "model_file, extra, message",
    [
        ("state.pt", [], "--factory"),
        ("state.pt", ["--factory", "no_colon"], "--factory"),
        ("state.pt", ["--factory", "tests.llc.test_cli_estimate:nothing"], "--factory"),
        ("model.pt", ["--factory", "tests.llc.test_cli_estimate:make_model"], "--factory"),
        ("missing.pt", [], "missing.pt"),
        ("model.pt", ["--max-memory", "2 parsecs"], "max_memory"),
        ("model.pt", ["--max-memory", "1B"], "max_memory=1 B is below"),
    ],
)
def test_refusals_name_the_argument(saved, capsys, model_file, extra, message):
    _, _, d = saved
    with pytest.raises(SystemExit) as e:
        main(["estimate", str(d / model_file), str(d / "data.pt"), *ARGS, *extra])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_data_without_known_keys(saved, capsys):
    _, (x, _), d = saved
    torch.save({"features": x}, d / "bad.pt")
    with pytest.raises(SystemExit):
        main(["estimate", str(d / "model.pt"), str(d / "bad.pt"), *ARGS])
    assert "data:" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::llc.LLCWarning")
def test_spread_and_budget_options_reach_the_library(saved, capsys, one_thread):
    model, data, d = saved
    plot = d / "trace.png"
    argv = ["estimate", str(d / "model.pt"), str(d / "data.pt"), "--num-draws", "100"]
    assert main([*argv, "--no-spread", "--plot", str(plot)]) == 0
    expected = llc.estimate_llc(model, data, progress=False, num_draws=100, spread=False).mean
    assert math.isclose(_printed_llc(capsys.readouterr().out), expected, rel_tol=1e-3, abs_tol=1e-3)
    assert main([*argv, "--budget", "1e-3", "--plot", str(plot)]) == 0  # one window a phase
    assert "λ̂ =" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::llc.LLCWarning")
def test_precision_and_threads_options_reach_the_library(saved, capsys, one_thread):
    model, data, d = saved
    plot = d / "trace.png"
    argv = ["estimate", str(d / "model.pt"), str(d / "data.pt"), "--num-draws", "100"]
    extra = ["--matmul-precision", "medium", "--num-threads", "1", "--plot", str(plot),
             "--max-memory", "1GiB"]  # fmt: skip
    assert main([*argv, *extra]) == 0
    expected = llc.estimate_llc(
        model, data, progress=False, num_draws=100, matmul_precision="medium", num_threads=1
    ).mean
    assert math.isclose(_printed_llc(capsys.readouterr().out), expected, rel_tol=1e-3, abs_tol=1e-3)
