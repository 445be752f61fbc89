"""Every ```python block of README.md runs as written.

The README's snippets build on each other (later sections reuse ``model``, ``x`` and ``y`` from
the first), so the blocks run in order in one namespace, as a reader pasting them into one
session would. They run in a temporary folder (the tracking snippet writes a checkpoint) with
one torch thread.
"""

import importlib.util
import re
from pathlib import Path

import pytest
import sympy
import torch

README = Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text(encoding="utf-8")
BLOCKS = [
    (TEXT[: m.start()].count("\n") + 2, m.group(1))
    for m in re.finditer(r"^```python\n(.*?)^```", TEXT, re.S | re.M)
]


@pytest.fixture(scope="module")
def namespace(tmp_path_factory):
    """One namespace for all blocks, in a temporary folder, with one torch thread."""
    import matplotlib

    matplotlib.use("Agg")
    mp = pytest.MonkeyPatch()
    mp.chdir(tmp_path_factory.mktemp("readme"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {"__name__": "readme"}
    torch.set_num_threads(threads)
    mp.undo()


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 10


@pytest.mark.slow
@pytest.mark.parametrize("line, source", BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_readme_block_runs(line, source, namespace):
    import matplotlib.pyplot as plt

    if "devinterp" in source and importlib.util.find_spec("devinterp") is None:
        pytest.skip("needs the devinterp extra")
    try:
        exec(compile(source, f"README.md:{line}", "exec"), namespace)
    finally:
        plt.close("all")


def test_readme_prior_from_penalty_gives_the_documented_prior():
    """The README's line with a ``positive=True`` symbol, as written, against its comment."""
    import priors  # noqa: F401  (the README line uses it)

    line = next(ln for ln in TEXT.splitlines() if "priors.prior_from_penalty(" in ln)
    symbols = next(ln for ln in TEXT.splitlines() if "sympy.Symbol" in ln and "lam" in ln)
    ns = {"priors": priors, "sympy": sympy}
    exec(symbols.split("#")[0], ns)
    prior = eval(line.split("#")[0].strip(), ns)
    a, lam = ns["a"], ns["lam"]
    # the generalized double Pareto; a symbol declared positive means the support a > 0
    expected = (lam - 1) / 2 * (1 + sympy.Abs(a)) ** (-lam)
    if a.is_positive:
        expected = (lam - 1) * (1 + a) ** (-lam)
    assert sympy.simplify(prior.density - expected) == 0
