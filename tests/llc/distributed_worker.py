"""One rank of an LLC estimate split across processes (gloo), for the tests and the bench.

    python tests/llc/distributed_worker.py RANK WORLD RENDEZVOUS_FILE OUT.npz MODEL [THREADS]

MODEL is ``mlp`` (the MLP path), ``generic`` (a custom forward), ``mlp-cK`` (K chains, a
fixed step and 100 steps), or ``wide-mlp`` /
``wide-generic`` (1.1·10⁵ parameters, a fixed step and step counts: for timing); with WORLD 1
no process group is made. The result's traces and settings go to OUT.npz.
"""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


class Generic(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.norm = nn.Linear(6, 24), nn.Linear(24, 2), nn.LayerNorm(24)

    def forward(self, x):
        return self.b(torch.tanh(self.norm(self.a(x))))


class WideGeneric(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(32, width), nn.Linear(width, width), nn.Linear(width, 4)
        self.norm = nn.LayerNorm(width)

    def forward(self, x):
        return self.c(torch.tanh(self.b(self.norm(torch.tanh(self.a(x))))))


def problem(kind: str):
    torch.manual_seed(0)
    if kind.startswith("wide"):
        width, inputs = 300, 32
        model = WideGeneric(width) if kind == "wide-generic" else nn.Sequential(
            nn.Linear(32, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
            nn.Linear(width, 4),
        )  # fmt: skip
    else:
        inputs = 6
        model = (
            nn.Sequential(nn.Linear(6, 24), nn.Tanh(), nn.Linear(24, 2))
            if kind == "mlp"
            else (Generic())
        )
    x = torch.randn(1000, inputs)
    with torch.no_grad():
        y = model(x) + 0.3 * torch.randn(1000, model(x).shape[1])
    return model, (x, y)


def main(rank: int, world: int, rendezvous: str, out: str, kind: str, threads: int = 1):
    import llc

    torch.set_num_threads(threads)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                                world_size=world)  # fmt: skip
    model, data = problem(kind)
    began = time.perf_counter()
    if kind.startswith("wide"):
        settings = dict(step_size=1e-5, num_burnin=100, num_draws=200)
    elif kind.startswith("mlp-c"):  # fewer chains than, or not divisible by, the ranks
        settings = dict(num_chains=int(kind[5:]), step_size=1e-3, num_burnin=50, num_draws=50)
    else:  # adaptive, kept short for the tests
        settings = dict(num_chains=4, max_draws=300)
    r = llc.estimate_llc(model, data, seed=7, progress=False, num_threads=threads, **settings)
    seconds = time.perf_counter() - began
    np.savez(
        out, mean=r.mean, mcse=r.mcse, llc_trace=r.llc_trace, warmup_llc=r.warmup_llc,
        step_size=r.step_size, num_burnin=r.num_burnin, seconds=seconds,
        processes=r.config["processes"],
    )  # fmt: skip
    if world > 1:
        dist.destroy_process_group()


def launch(kind: str, world: int, tmp: Path, threads: int = 1) -> list[dict]:
    """Run ``world`` ranks of this script (one process when ``world`` is 1) and return each
    rank's saved result; a failed rank raises with its error output."""
    outs = [tmp / f"{kind}-{world}-{threads}-{r}.npz" for r in range(world)]
    rdv = tmp / f"rdv-{kind}-{world}-{threads}"
    argv = [sys.executable, __file__]
    procs = [
        subprocess.Popen(
            [*argv, str(r), str(world), str(rdv), str(outs[r]), kind, str(threads)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for r in range(world)
    ]
    try:
        errors = [p.communicate(timeout=300)[1] for p in procs]
    finally:  # a rank that failed leaves the others waiting in a gather
        for p in procs:
            p.kill()
    for p, err in zip(procs, errors):
        if p.returncode != 0:
            raise RuntimeError(f"a rank failed ({kind}, {world} processes):\n{err[-3000:]}")
    return [dict(np.load(o)) for o in outs]


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5],
         *(int(a) for a in sys.argv[6:]))  # fmt: skip
