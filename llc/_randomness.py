"""Per-chain random streams: minibatch indices and normal noise from one generator per chain.

A chain's trajectory depends only on its seed, never on how many chains run beside it or on how
they are chunked (``chain_batch``) to fit in memory. Kernels stay pure: the loop draws here and
hands them the noise.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch

__all__ = [
    "ChainRandomness", "chain_seeds", "forked_global_rng", "global_rng_state", "same_rng_state",
]  # fmt: skip

# torch's global generators are process state: a fork saved by one thread and restored after
# another thread's fork would leave that thread's seeded state behind, so forks take turns
_GLOBAL_RNG_LOCK = threading.RLock()


@contextmanager
def forked_global_rng(devices: Sequence = ()) -> Iterator[None]:
    """torch's global RNG (CPU and the CUDA ``devices``) forked and restored on exit, held by
    one thread at a time: concurrent forks in several threads never mix their states."""
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=list(devices)):
        yield


def global_rng_state(device: torch.device) -> list[torch.Tensor]:
    """The states of torch's global generators that a model on ``device`` may draw from."""
    cuda = [torch.cuda.get_rng_state(device)] if device.type == "cuda" else []
    return [torch.get_rng_state(), *cuda]


def same_rng_state(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


PARALLEL_NOISE = 1 << 18  # normal draws per block above which chains draw in parallel


def chain_seeds(seed: int | torch.Generator, num_chains: int) -> list[int]:
    """``num_chains + 1`` seeds: one per chain and one for the warm-up's own draws."""
    if isinstance(seed, torch.Generator):
        return torch.randint(0, 2**62, (num_chains,), generator=seed).tolist()
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    ss = np.random.SeedSequence(seed)
    return [
        int(s.generate_state(2, np.uint64)[0] >> np.uint64(2)) for s in ss.spawn(num_chains + 1)
    ]


class ChainRandomness:
    """One :class:`torch.Generator` per chain, drawing indices and noise in blocks of steps.

    Parameters
    ----------
    seeds : list of int
        One per chain; a further entry, if present, seeds :attr:`aux` (warm-up's own draws).
    n, batch_size, dim : int
        Samples, minibatch size (``>= n``: the full data every step) and parameters.
    stream : callable, optional
        Streamed data: returns the indices of the next batch, shape (batch,), which every
        chain takes (:class:`llc.streaming.StreamedPotential.advance`).
    device, dtype : torch.device, torch.dtype
        Of the noise.

    Notes
    -----
    Each generator fills a block of several steps at once: one generator call per chain per block
    instead of per step (measurably cheaper for small models), with the same stream per seed
    whatever the number of chains.
    """

    def __init__(
        self,
        seeds: list[int],
        num_chains: int,
        *,
        n: int,
        batch_size: int,
        dim: int,
        device: torch.device,
        dtype: torch.dtype,
        stream=None,
    ):
        self.num_chains, self.n, self.dim = num_chains, n, dim
        self.stream = stream
        self.batch_size = min(batch_size, n)
        self.device, self.dtype = device, dtype
        self.generators = [
            torch.Generator(device=device).manual_seed(s) for s in seeds[:num_chains]
        ]
        self.aux = torch.Generator(device=device).manual_seed(
            seeds[-1] if len(seeds) > num_chains else seeds[0] + 1
        )
        self._idx_buf: list[torch.Tensor] = []
        self._noise_buf: list[torch.Tensor] = []
        self._noise_store: list[torch.Tensor | None] = [None, None]
        self._noise_flip = 0
        self._pool: ThreadPoolExecutor | None = None

    def block_steps(self) -> int:
        """Steps of noise and indices each generator draws at once."""
        # independent of the number of chains, so a chain's stream depends on its seed alone
        per_step = self.dim + self.batch_size
        return int(max(1, min(64, (1 << 20) // per_step)))

    def indices(self) -> torch.Tensor:
        """Each chain's next minibatch indices, shape (chain, batch)."""
        if self.stream is not None:  # streamed data: the next batch, shared by all chains
            return self.stream().expand(self.num_chains, -1)
        if self.batch_size >= self.n:
            return torch.arange(self.n, device=self.device).expand(self.num_chains, -1)
        if not self._idx_buf:
            k = self.block_steps()
            blocks = [
                torch.randint(self.n, (k, self.batch_size), generator=g, device=self.device)
                for g in self.generators
            ]
            self._idx_buf = list(torch.stack(blocks, dim=1).unbind(0))[::-1]
        return self._idx_buf.pop()

    def noise(self) -> torch.Tensor:
        """Each chain's next standard normal draw, shape (chain, D).

        The tensor is a view into a reused buffer that is refilled two blocks later: a caller that
        keeps it longer must copy it.
        """
        if not self._noise_buf:
            self._noise_buf = list(self._fill().unbind(1))[::-1]
        return self._noise_buf.pop()

    def _fill(self) -> torch.Tensor:
        d, dev, dt, k = self.dim, self.device, self.dtype, self.block_steps()
        # two buffers in turn: refilling one never touches the other, which holds the last draw
        # ξ_t that the Leimkuhler–Matthews step still needs (a fresh 16 MB tensor per step cost
        # measurable page faults on wide models)
        shape = (self.num_chains, k, d)
        buf = self._noise_store[self._noise_flip]
        if buf is None or buf.shape != shape:
            buf = torch.empty(shape, device=dev, dtype=dt)
            self._noise_store[self._noise_flip] = buf
        self._noise_flip ^= 1

        def fill(chains):
            for c in chains:
                torch.randn(k, d, generator=self.generators[c], device=dev, dtype=dt, out=buf[c])

        chains = range(self.num_chains)
        workers = torch.get_num_threads() if dev.type == "cpu" else 1
        if workers > 1 and k * d * self.num_chains >= PARALLEL_NOISE:
            # the generators are independent, so their draws run in parallel threads (torch
            # releases the GIL); measured 2x faster on 2 cores for large models
            if self._pool is None:
                self._pool = ThreadPoolExecutor(workers)
            list(self._pool.map(fill, [chains[i::workers] for i in range(workers)]))
        else:
            fill(chains)
        return buf

    def close(self) -> None:
        """Stop the noise threads."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
