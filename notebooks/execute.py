"""Re-execute notebooks in place and store their outputs (what a reader sees on the repository).

    PYTHONPATH=$PWD python notebooks/execute.py                 # every notebook
    PYTHONPATH=$PWD python notebooks/execute.py notebooks/10_llc_quickstart.ipynb

Each notebook runs from notebooks/ with a kernel of this interpreter, one torch thread and
figures at 72 dpi (small PNGs). Machine-specific text in stored warnings is normalised (the
checkout's path, the kernel's temporary cell file names) and tqdm's notice that ipywidgets is
missing is dropped, so that re-running on another machine changes only what the code changed.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _kernel(tmp: Path) -> str:
    spec = tmp / "kernels" / "slt-interp-execute"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "language": "python", "display_name": "slt-interp"})
    )
    rc = tmp / "matplotlibrc"
    rc.mkdir()
    rc.joinpath("matplotlibrc").write_text("figure.dpi: 72\nsavefig.dpi: 72\n")
    os.environ.update(JUPYTER_PATH=str(tmp), MATPLOTLIBRC=str(rc), OMP_NUM_THREADS="1")
    os.environ.update(MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    os.environ.pop("MPLBACKEND", None)  # the inline backend, so that figures are stored
    return "slt-interp-execute"


def _normalise(nb) -> None:
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.outputs:
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = out["text"]
                if "TqdmWarning: IProgress not found" in text:
                    continue
                text = text.replace(str(ROOT) + os.sep, "")
                out["text"] = re.sub(r"/tmp/ipykernel_\d+/\d+\.py", "<cell>", text)
            kept.append(out)
        cell.outputs = kept


def main(paths: list[str]) -> int:
    notebooks = [Path(p).resolve() for p in paths] or sorted(HERE.glob("*.ipynb"))
    kernel = _kernel(Path(tempfile.mkdtemp()))
    failed = 0
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        spec = nb.metadata.get("kernelspec")
        start = time.time()
        client = NotebookClient(
            nb, timeout=1200, kernel_name=kernel, record_timing=False,
            resources={"metadata": {"path": str(path.parent)}},
        )  # fmt: skip
        try:
            client.execute()
            status = "ok"
        except Exception as err:  # keep going: report every notebook
            status, failed = f"FAILED: {type(err).__name__}", failed + 1
        nb.metadata["kernelspec"] = spec
        _normalise(nb)
        nbformat.write(nb, path)
        size = path.stat().st_size / 1024
        print(f"{path.name}: {status}, {time.time() - start:.0f} s, {size:.0f} KiB", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
