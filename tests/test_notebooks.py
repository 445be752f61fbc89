"""Every notebook in notebooks/ runs top to bottom, the slow ones at smaller sizes."""

import json
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))

# Sizes for the test run, set in a cell put right after the notebook's cell tagged "parameters"
# (papermill's convention). The stored outputs keep the sizes written in the notebook; these run
# every cell at a third to a half of the cost.
SMALL = {
    "12_llc_transformers": "FAST = dict(num_burnin=100, max_draws=200, batch_size=32)",
    "13_llc_training": "FAST = dict(num_chains=4, max_draws=100)\nESTIMATES = 5",
    "14_llc_observables": (
        "BIF = dict(num_chains=4, num_draws=200, every=2)\n"
        "SUSC = dict(num_chains=2, num_burnin=50, num_draws=100)"
    ),
    "22_priors_sae_real": "steps = 300",
}


def with_small_sizes(nb, name):
    """``nb`` with the test's sizes after its "parameters" cell (a notebook in SMALL has one)."""
    if name not in SMALL:
        return nb
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: one cell tagged 'parameters' expected, found {len(tagged)}"
    nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(SMALL[name]))
    return nb


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_outputs_are_stored_and_small(path):
    """A reader on the repository page sees the results: every code cell was run and kept its
    output, there are no errors, and the file stays under 1 MB."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "a code cell was not executed"
    assert any(c.get("outputs") for c in code)
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
    assert path.stat().st_size < 1_000_000


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch, tmp_path):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))  # the kernel's share
    # a kernel of this interpreter, found first on JUPYTER_PATH: a "python3" kernelspec left
    # in the user's folder may point at another environment
    spec = tmp_path / "kernels" / "slt-interp-tests"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "language": "python", "display_name": "slt-interp tests"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    nb = with_small_sizes(nbformat.read(path, as_version=4), path.stem)
    # run from an empty folder, outside the checkout, as after a plain pip install: a notebook
    # must not need bench/ or files beside it
    work = tmp_path / "run"
    work.mkdir()
    client = NotebookClient(
        nb, timeout=600, kernel_name="slt-interp-tests", resources={"metadata": {"path": str(work)}}
    )
    client.execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
