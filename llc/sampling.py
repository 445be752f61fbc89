"""The sampling loop: a kernel advanced on a potential, with observables recorded at every step.

>>> chains = Chains.from_seed(potential, num_chains=8, seed=0)             # doctest: +SKIP
>>> state, accs = run(chains, kernel, params, state, 1000, [LLCTrace()])  # doctest: +SKIP
>>> values(chains, [LLCTrace()], accs, first=0)["llc"]                 # doctest: +SKIP

The loop draws each step's minibatch and noise from the chains' own generators
(:class:`llc._randomness.ChainRandomness`), evaluates ``L_B`` and ``∇L_B`` for all chains in one
batched call, hands both to the pure kernel, and gives every observable a :class:`Step`. Every
``mala_every`` steps (counted since the chains started, so a run split in two calls gives the
same draws unless the split falls inside a pair) the next step reuses the minibatch, which
yields a MALA acceptance for Langevin kernels. Every ``check_every`` steps it looks for diverged
chains, resets them to w* and records when and why (see :class:`Chains`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from ._distributed import current_shards, split_evaluation
from ._execution import FasterOf, check_vectorize, default_way
from ._randomness import ChainRandomness, chain_seeds
from ._threads import ThreadControl
from .kernels import Kernel, StepInfo, mala_log_acceptance
from .kernels._langevin import per_chain
from .observables import Observable
from .potential import Potential

__all__ = ["CHECK_EVERY", "Chains", "Step", "run", "values"]

CHECK_EVERY = 25  # steps between divergence checks (each check synchronises with the device)


def _given_way(vectorize) -> str | None:
    """The way ``vectorize`` pins (None: chosen from the model or timed)."""
    return None if not isinstance(vectorize, bool) else ("batched" if vectorize else "sequential")


def _planned_way(pot: Potential, vectorize, batch_size: int) -> str:
    """``"batched"``, ``"sequential"`` or ``"timed"`` (a model on the generic path that draws
    no random numbers: with dropout the masks must keep their order)."""
    if vectorize == "timed" and pot.generic and not pot.stochastic:
        return "timed"
    return _given_way(vectorize) or default_way(pot, batch_size)[0]


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (
        isinstance(exc, torch.OutOfMemoryError)
        or "out of memory" in text
        or "can't allocate memory" in text
    )


class Step(NamedTuple):
    """What observables see of one step, taken at ``w_t`` before the kernel moves the chains.

    Attributes
    ----------
    index : int
        Steps since the chains started (warm-up included).
    position : Tensor, shape (chain, D)
    loss, loss_center : Tensor, shape (chain,)
        ``L_B(w_t)`` and the control variate ``L_B(w*)`` on the same minibatch.
    log_accept : Tensor, shape (chain,), float64
        MALA log acceptance of the move into ``w_t`` (NaN on steps without a paired evaluation).
    nbeta : float, or Tensor of shape (chain, 1)
        As in the kernel's parameters (a tensor when each chain has its own nβ).
    info : StepInfo
        The kernel's view of the step (``potential_grad``, ``preconditioner``).
    alive : Tensor of bool, shape (chain,)
        Chains not flagged as diverged (flags are refreshed every ``check_every`` steps).
    potential : Potential
    """

    index: int
    position: torch.Tensor
    loss: torch.Tensor
    loss_center: torch.Tensor
    log_accept: torch.Tensor
    nbeta: float
    info: StepInfo
    alive: torch.Tensor
    potential: Potential


class Chains:
    """The run-time side of sampling: potential, random streams, chunking and divergence record.

    Attributes
    ----------
    chain_batch : int
        Chains per vectorised call; halved (with a warning) on out-of-memory.
    threads : ThreadControl
        Torch's intra-op threads while the chains are entered as a context (``with chains:``).
    vectorize : bool, "timed" or None
        Evaluate the chains in one vmapped pass (True), one after another (False), the way the
        model calls for (None: :func:`llc._execution.default_way`), or whichever the first
        steps time faster (``"timed"``: :class:`llc._execution.FasterOf`). Models on the MLP
        path are always batched. One chain after another on the CPU, torch's threads are kept
        at the caller's count unless ``num_threads`` is given (convolutions round differently
        with the count).
    shards : llc._distributed.Shards or None
        Under an initialized torch.distributed process group of two or more ranks, the block
        of chains this rank evaluates (:mod:`llc._distributed`); None in one process.
    diverged_at : list of (int or None)
        Per chain, the step at which it was found diverged (None: healthy).
    diverged_why : list of str
    steps_done : int
    """

    def __init__(
        self,
        potential: Potential,
        randomness,
        chain_batch: int | None = None,
        vectorize: bool | str | None = None,
        num_threads: int | None = None,
    ):
        check_vectorize(vectorize)
        self.potential, self.randomness = potential, randomness
        self.num_chains = randomness.num_chains
        self.chain_batch = chain_batch or self.num_chains
        self.vectorize = vectorize
        self._evaluate = None  # built at the first evaluation
        self._planned = _planned_way(potential, vectorize, randomness.batch_size)
        # one chain after another, convolutions round differently with the thread count: hold
        # the caller's count, so that no bit depends on the machine's load
        follow = self._planned != "sequential"
        self.threads = ThreadControl(num_threads, potential.device, follow_load=follow)
        self.shards = current_shards()  # this rank's chains, under torch.distributed
        self.diverged_at: list[int | None] = [None] * self.num_chains
        self.diverged_why = [""] * self.num_chains
        self.steps_done = 0

    @classmethod
    def from_seed(
        cls,
        potential: Potential,
        num_chains: int,
        *,
        seed: int | torch.Generator = 0,
        batch_size: int = 512,
        chain_batch: int | None = None,
        vectorize: bool | str | None = None,
        num_threads: int | None = None,
    ) -> Chains:
        """Chains with one generator per chain from ``seed`` (as :func:`llc.estimate_llc`)."""
        if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 1:
            raise ValueError(f"num_chains must be a positive integer, got {num_chains!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        rand = ChainRandomness(
            chain_seeds(seed, num_chains), num_chains, n=potential.n, batch_size=batch_size,
            dim=potential.dim, device=potential.device, dtype=potential.dtype,
            stream=getattr(potential, "advance", None),
        )  # fmt: skip
        return cls(potential, rand, chain_batch, vectorize, num_threads)

    def _sequential(self, w, batch, chain_batch):
        return self.potential.sequential_value_and_grad(w, batch)

    def _way(self):
        pot = self.potential
        if self._planned == "timed":
            return FasterOf(pot.value_and_grad, self._sequential, device=pot.device)
        return self._planned_fn()

    def _planned_fn(self):
        """One chain after another where so planned, else batched (timed: batched)."""
        return self._sequential if self._planned == "sequential" else self.potential.value_and_grad

    @property
    def execution(self) -> str:
        """How the chains' gradients were evaluated, for ``config["execution"]``."""
        if isinstance(self._evaluate, FasterOf):
            return self._evaluate.describe()
        if self._planned == "timed":
            return "timed: not evaluated yet"
        if _given_way(self.vectorize):
            return f"{_given_way(self.vectorize)}: given (vectorize={self.vectorize})"
        return ": ".join(default_way(self.potential, self.randomness.batch_size))

    def close(self) -> None:
        """Stop the noise threads (large models draw their noise on a thread pool)."""
        self.randomness.close()

    def __enter__(self) -> Chains:
        self.threads.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.threads.__exit__(*exc)
        self.close()

    def _retry_oom(self, fn, *args):
        while True:
            try:
                return fn(*args, chain_batch=self.chain_batch)
            except RuntimeError as exc:
                if not _is_oom(exc) or self.chain_batch == 1:
                    raise
                self.chain_batch = max(1, self.chain_batch // 2)
                warnings.warn(
                    f"out of memory: running {self.chain_batch} chains at a time (chain_batch)",
                    RuntimeWarning,
                    stacklevel=4,
                )

    def evaluate(self, position, batch, chain_batch: int):
        """``(L_B, ∇L_B)`` on ``batch``, ``chain_batch`` at a time, one after another where
        the run is planned so (timed: batched, the way that holds more at once)."""
        return self._planned_fn()(position, batch, chain_batch=chain_batch)

    def value_and_grad(self, position, idx):
        """``(L_B, ∇L_B)`` at every chain's position on its minibatch ``idx`` (with a process
        group, this rank evaluates its block of chains and gathers the rest)."""
        self.threads.tick()
        if self._evaluate is None:
            self._evaluate = self._way()
        pot = self.potential

        def local(w, i):
            return self._retry_oom(self._evaluate, w, pot.minibatch(i))

        return split_evaluation(self.shards, local, position, idx)

    def hvp(self, position, vecs, idx):
        pot = self.potential

        def local(w, v, i):
            return self._retry_oom(pot.hvp, w, v, pot.minibatch(i))

        return split_evaluation(self.shards, local, position, vecs, idx)

    def alive(self) -> torch.Tensor:
        return torch.tensor([d is None for d in self.diverged_at], device=self.potential.device)

    def diverged(self) -> list[int]:
        """The chains flagged as diverged."""
        return [c for c, d in enumerate(self.diverged_at) if d is not None]

    def revive(self, chains: list[int]) -> None:
        """Forget the divergence of these chains (their positions were reset to w*)."""
        for c in chains:
            self.diverged_at[c] = None
            self.diverged_why[c] = ""

    def check(self, kernel: Kernel, params, state, nonfinite, excess, nbeta: float):
        """Flag chains with a non-finite loss at any step since the last check (``nonfinite``,
        shape (chain,)) or a non-finite position, or a runaway loss; reset every flagged chain to
        w* (a dead chain keeps stepping, and is reset again at each check)."""
        bad_value = nonfinite | ~torch.isfinite(state.position).all(dim=1)
        # λ ≤ D/2, so an excess energy a hundredfold beyond that means the chain has run away
        runaway = per_chain(nbeta, excess) * excess > 100.0 * self.potential.dim + 1e4
        bad = (bad_value | runaway).tolist()
        if not any(bad) and all(d is None for d in self.diverged_at):
            return state
        for c, b in enumerate(bad):
            if b and self.diverged_at[c] is None:
                self.diverged_at[c] = self.steps_done
                self.diverged_why[c] = (
                    "non-finite loss or parameters"
                    if bad_value[c]
                    else "loss ran away (nβ·(L − L*) > 100·d)"
                )
        # a flagged chain restarts its whole kernel state at w*, as a new chain would
        dead = ~self.alive()
        center = params.center.expand_as(state.position)
        fresh = kernel.init(center.clone(), torch.zeros_like(state.position), params)
        return type(state)(
            *(torch.where(dead.view(-1, *[1] * (f.ndim - 1)), r, f) for f, r in zip(state, fresh))
        )


def _energy(params, position, loss):
    nbeta, gamma = per_chain(params.nbeta, loss), per_chain(params.localization, loss)
    return nbeta * loss + 0.5 * gamma * ((position - params.center) ** 2).sum(1)


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar over chain steps with the time left at the current rate; the caller closes it."""
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, unit="step")


def run(
    chains: Chains,
    kernel: Kernel,
    params,
    state,
    num_steps: int,
    observables: Sequence[Observable] = (),
    *,
    progress: bool = False,
    desc: str = "sampling",
    check_every: int = CHECK_EVERY,
    mala_every: int = 10,
    stop_on_divergence: bool = False,
    accs: list | None = None,
    bar=None,
):
    """Advance every chain ``num_steps`` steps; return the new state and the accumulators.

    ``bar`` is a tqdm bar that spans several calls (each step advances it by one); without it
    the call shows a bar of its own when ``progress``.

    ``accs`` continues accumulators of an earlier call (default: fresh ones); read the values
    with :func:`values`. With ``stop_on_divergence`` the run ends at the first check that finds a
    diverged chain (the observables then hold fewer than ``num_steps`` steps).
    """
    if accs is None:
        accs = [obs.init(chains.num_chains) for obs in observables]
    rand, pot = chains.randomness, chains.potential
    nan = torch.full((chains.num_chains,), float("nan"), device=pot.device, dtype=torch.float64)
    mala_every = mala_every if kernel.langevin else 0
    pending, idx = None, None
    alive = chains.alive()
    # every step's loss is checked at the next check (one stacked test, no per-step cost): a
    # NaN on one minibatch between two checks must not leave NaN draws in a healthy chain
    since_check: list[torch.Tensor] = []
    own = bar is None
    if own:
        bar = progress_bar(num_steps, desc, progress)
    for t in range(num_steps):
        bar.update()
        if pending is None:
            idx = rand.indices()
        loss, grad = chains.value_and_grad(state.position, idx)
        loss_center = pot.center_loss(idx)
        since_check.append(loss)
        new_state, info = kernel.step(state, grad, rand.noise(), params)
        log_accept = nan
        if pending is not None:  # the same minibatch as the previous step: a MALA pair
            w_prev, u_prev, gu_prev, g_prev = pending
            log_accept = mala_log_acceptance(
                w_prev,
                state.position,
                u_prev,
                _energy(params, state.position, loss),
                gu_prev,
                info.potential_grad,
                params.step_size,
                g_prev,
                getattr(params, "noise_scale", None),
            ).to(torch.float64)
            pending = None
        elif mala_every and (chains.steps_done + 1) % mala_every == 0 and t + 1 < num_steps:
            g = info.preconditioner
            g = g.expand_as(state.position) if g is not None else None
            u = _energy(params, state.position, loss)
            pending = (state.position, u, info.potential_grad, g)
        step = Step(
            chains.steps_done, state.position, loss, loss_center, log_accept, params.nbeta,
            info, alive, pot,
        )  # fmt: skip
        accs = [obs.update(acc, step) for obs, acc in zip(observables, accs)]
        state = new_state
        chains.steps_done += 1
        if (t + 1) % check_every == 0 or t + 1 == num_steps:
            nonfinite = ~torch.isfinite(torch.stack(since_check)).all(dim=0)
            excess = loss - loss_center
            state = chains.check(kernel, params, state, nonfinite, excess, params.nbeta)
            since_check = []
            alive = chains.alive()
            if stop_on_divergence and not bool(alive.all()):
                break
    if own:
        bar.close()
    # the last noise draw lives in a buffer that later steps refill: the state owns a copy
    state = type(state)(*(f.clone() for f in state))
    return state, accs


def values(
    chains: Chains,
    observables: Sequence[Observable],
    accs: list,
    first: int,
    check_every: int = CHECK_EVERY,
) -> dict:
    """Each observable's value by name, for steps recorded since step ``first``.

    A chain's values from ``check_every`` steps before its divergence was found on are discarded
    (``finalize`` receives each chain's first invalid step, or None).
    """
    invalid = [None if d is None else max(0, d - first - check_every) for d in chains.diverged_at]
    num_steps = chains.steps_done - first
    return {obs.name: obs.finalize(acc, invalid, num_steps) for obs, acc in zip(observables, accs)}
