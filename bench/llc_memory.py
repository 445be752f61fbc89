"""Peak memory of the chains and ``max_memory=`` on this CPU, side by side in one run.

    python bench/llc_memory.py

For each model: the default call's chunking (all 8 chains at once) and budgets that force fewer
chains at once. Columns: the chain batch chosen, the evaluation's planned bytes (measured at one
and two chains), the run's measured peak (``LLCResult.peak_memory``), seconds, and whether λ̂
is unchanged (it must be: chunking does not change a chain's arithmetic). Fixed step and step
counts, one thread.
"""

import time

import torch
from torch import nn

import llc


class Block(nn.Module):  # a custom forward: the generic path
    def __init__(self, width: int):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(64, width), nn.Linear(width, width), nn.Linear(width, 8)
        self.norm = nn.LayerNorm(width)

    def forward(self, x):
        return self.c(torch.tanh(self.b(self.norm(torch.tanh(self.a(x))))))


def models():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 512), nn.Tanh(), nn.Linear(512, 512), nn.Tanh(),
                        nn.Linear(512, 8))  # fmt: skip
    yield "MLP 64-512-512-8", mlp
    yield "LayerNorm block 512", Block(512)


def main() -> None:
    torch.set_num_threads(1)
    print(f"{'model':<20} {'d':>8} {'max_memory':>10} {'chain_batch':>11} {'planned eval':>13} "
          f"{'peak':>9} {'seconds':>8} {'same λ̂':>7}")  # fmt: skip
    for name, model in models():
        x = torch.randn(4000, 64)
        with torch.no_grad():
            y = model(x) + 0.1 * torch.randn(4000, 8)
        d = sum(p.numel() for p in model.parameters())
        base = None
        for budget in (None, "256MiB", "64MiB"):
            t = time.perf_counter()
            r = llc.estimate_llc(
                model, (x, y), step_size=1e-6, num_burnin=100, num_draws=200, progress=False,
                max_memory=budget, num_threads=1,
            )  # fmt: skip
            sec = time.perf_counter() - t
            base = base if base is not None else r.mean
            mem = r.config["memory"]
            planned = mem.get("evaluation", "").split(" for ")[0] or "—"
            print(f"{name:<20} {d:>8} {budget or '—':>10} {r.config['chain_batch']:>11} "
                  f"{planned:>13} {mem['peak']:>9} {sec:8.1f} {str(r.mean == base):>7}",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
