"""Streamed data (llc.Streamed) against data in memory, side by side in one run.

    python bench/llc_streamed.py [--quick]

1. Variance. The same MLP and data, six seeds: minibatches drawn per chain from data in memory
   against batches streamed from a shuffling iterable and shared by all chains (batch 256,
   8 chains, default warm-up, max_draws 3000). Columns: mean λ̂ over seeds, its spread across
   seeds (the true error of one call), the mean reported MCSE, their ratio, and the mean
   spread between chains.
2. Memory. A one-layer causal-attention language model on random token ids: the peak memory
   of making the data and the whole call (the pass for L_n(w*) included), streamed against in
   memory, at 10⁶ and 10⁷ tokens (fixed steps: the figures are about memory, not about λ̂).
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import llc
from llc._memory import PeakMemory, format_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "llc"))
from _models import Shuffled  # noqa: E402  (the tests' shuffling stream)


def variance(seeds) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 2))
    x = torch.randn(4000, 5)
    with torch.no_grad():
        y = model(x) + 0.3 * torch.randn(4000, 2)
    print(f"{'data':<32} {'mean λ̂':>8} {'sd over seeds':>13} {'mean MCSE':>9} "
          f"{'sd/MCSE':>7} {'sd chains':>9} {'s/call':>6}")  # fmt: skip
    for label in ("in memory, own minibatches", "streamed, shared minibatches"):
        means, mcses, chain_sd, sec = [], [], [], []
        for seed in seeds:
            data = (x, y) if label.startswith("in") else llc.Streamed(Shuffled(x, y, 256, seed))
            extra = {"batch_size": 256} if label.startswith("in") else {}
            t = time.perf_counter()
            r = llc.estimate_llc(model, data, seed=seed, progress=False, max_draws=3000, **extra)
            sec.append(time.perf_counter() - t)
            means.append(r.mean), mcses.append(r.mcse), chain_sd.append(r.std)
        sd = float(np.std(means, ddof=1))
        print(f"{label:<32} {np.mean(means):8.3f} {sd:13.3f} {np.mean(mcses):9.3f} "
              f"{sd / np.mean(mcses):7.2f} {np.mean(chain_sd):9.3f} {np.mean(sec):6.1f}",
              flush=True)  # fmt: skip


class TinyLM(nn.Module):
    def __init__(self, vocab=64, width=32):
        super().__init__()
        self.embed, self.qkv = nn.Embedding(vocab, width), nn.Linear(width, 3 * width)
        self.head = nn.Linear(width, vocab)

    def forward(self, ids):
        h = self.embed(ids)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        return self.head(h + F.scaled_dot_product_attention(q, k, v, is_causal=True))


class Tokens(torch.utils.data.IterableDataset):
    """``total`` random token ids as batches of (batch, seq), made on the fly (each batch
    from its own seed, the same at every pass)."""

    def __init__(self, total, batch=256, seq=64, vocab=64):
        self.num, self.batch, self.seq, self.vocab = total // (batch * seq), batch, seq, vocab

    def __iter__(self):
        for b in range(self.num):
            g = torch.Generator().manual_seed(b)
            yield torch.randint(self.vocab, (self.batch, self.seq), generator=g)

    def all(self):
        return torch.cat(list(self))


def memory(sizes) -> None:
    torch.manual_seed(0)
    model = TinyLM()
    kw = dict(loss="next_token", step_size=1e-5, num_burnin=50, num_draws=100, num_chains=4,
              progress=False, seed=0)  # fmt: skip
    print(f"\n{'tokens':>10} {'data':<10} {'peak of the call':>16} {'seconds':>8} {'L_n(w*)':>8}")
    for total in sizes:
        for label in ("in memory", "streamed"):
            stream = Tokens(total)
            t = time.perf_counter()
            with PeakMemory(torch.device("cpu")) as meter:  # the data's making counts too
                data = stream.all() if label == "in memory" else llc.Streamed(stream)
                r = llc.estimate_llc(model, data, **kw, **({} if label == "streamed" else
                                                           {"batch_size": 256}))  # fmt: skip
            print(f"{total:>10.0e} {label:<10} {format_bytes(meter.peak):>16} "
                  f"{time.perf_counter() - t:8.1f} {r.init_loss:8.4f}", flush=True)  # fmt: skip
            del data


def main() -> None:
    quick = "--quick" in sys.argv
    torch.set_num_threads(1)
    variance(range(2) if quick else range(6))
    memory([10**5] if quick else [10**6, 10**7])


if __name__ == "__main__":
    main()
