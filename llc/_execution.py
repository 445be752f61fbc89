"""How the chains' gradients are evaluated: all chains in one vmapped pass, or one after another.

Batching the chains removes per-operation overhead, which dominates small models, but ``vmap``
gives some layers layouts that torch's CPU kernels handle slowly: a convolution with per-chain
weights becomes a grouped convolution over ``(batch, chain·channels, H, W)``, and the pooling and
elementwise operations after it work on strided views of it. On a small CNN at batch 512 the
batched step measured 1.5–2× slower than eight plain passes.

Attention batched over chains is written out as matmuls (:mod:`llc._attention`), where one chain
at a time uses torch's fused attention kernel. On transformers on the CPU batching pays while
the tensors are small (per-operation overhead dominates) and costs once they are large
(``docs/design.md``): the measure is the mean size of the tensors the forward pass's torch
calls return (:func:`mean_call_size`), on one chain's minibatch.

The default way (:func:`default_way`) is decided from the model and the batch size, never from
the clock, so that the same seed gives the same bits on a loaded machine as on an idle one: one
chain after another on the CPU for a model that calls a convolution, or attention with calls of
more than :data:`ATTENTION_CALL_SIZE` elements on average; all chains in one pass otherwise.
:class:`FasterOf` (``vectorize="timed"``) times both ways on the first steps instead and keeps
the faster; the two ways compute the same gradient up to float rounding, so a timed run is
reproducible only up to rounding.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = [
    "ATTENTION_CALL_SIZE", "CONVOLUTIONS", "FasterOf", "ForwardCalls", "MARGIN", "TRIALS",
    "check_vectorize", "default_way", "mean_call_size", "probe_calls",
]  # fmt: skip

# the functional forms that nn.Conv*d and nn.ConvTranspose*d call
CONVOLUTIONS = (F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d,
                F.conv_transpose3d, torch.convolution)  # fmt: skip

# elements per call above which an attention model runs one chain at a time on the CPU; the
# batched step measured 1.17× the sequential one at 11.5k (TinyTransformer d_model 16), 0.89× and
# 0.98× at 21.4k and 21.9k (GPT-2 16, TinyTransformer 32), 0.74–0.88× from 42k (docs/design.md)
ATTENTION_CALL_SIZE = 16_000
TRIALS = 3  # timed calls of each way, after one untimed call each
MARGIN = 1.2  # the loop must be this much faster to be chosen (keeps borderline models batched)


class FasterOf:
    """A callable that times ``batched`` and ``sequential`` on its first calls, then keeps one.

    Calls 1–2 run each way once untimed (first-call allocations); the next ``2·trials`` calls
    alternate between them, timed. Then ``sequential`` is kept if its fastest call beat the
    batched way's fastest by ``margin``, else ``batched``. Every call returns a real result:
    the timing costs no extra evaluation.

    Attributes
    ----------
    choice : {"batched", "sequential"} or None
        None until decided.
    seconds : dict of str to list of float
        The timed calls of each way.
    """

    def __init__(
        self,
        batched: Callable,
        sequential: Callable,
        *,
        device: torch.device,
        trials: int = TRIALS,
        margin: float = MARGIN,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self._ways = {"batched": batched, "sequential": sequential}
        self._order = ["batched", "sequential"] * (trials + 1)
        self._device, self._margin, self._clock = device, margin, clock
        self.choice: str | None = None
        self.seconds: dict[str, list[float]] = {"batched": [], "sequential": []}
        self._calls = 0

    def __call__(self, *args, **kwargs):
        if self.choice is not None:
            return self._ways[self.choice](*args, **kwargs)
        way = self._order[self._calls]
        self._sync()
        start = self._clock()
        out = self._ways[way](*args, **kwargs)
        self._sync()
        if self._calls >= 2:
            self.seconds[way].append(self._clock() - start)
        self._calls += 1
        if self._calls == len(self._order):
            self.choice = self._decide()
        return out

    def _decide(self) -> str:
        fast_loop, fast_batch = min(self.seconds["sequential"]), min(self.seconds["batched"])
        return "sequential" if fast_loop * self._margin < fast_batch else "batched"

    def _sync(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def describe(self) -> str:
        """How the choice was made, for ``config["execution"]``."""
        if self.choice is None:
            return "undecided (fewer steps than the timing needs): batched and sequential in turn"
        ratio = min(self.seconds["batched"]) / min(self.seconds["sequential"])
        return (
            f"{self.choice}: chosen by timing (one chain at a time took {1 / ratio:.2g}× the "
            "batched step)"
        )


class ForwardCalls(TorchFunctionMode):
    """Within this context, records the torch functions called and the sizes of the tensors
    they return."""

    def __init__(self):
        super().__init__()
        self.funcs: set = set()
        self.calls, self.elements = 0, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.funcs.add(func)
        if isinstance(out, torch.Tensor):
            self.calls += 1
            self.elements += out.numel()
        return out

    def called(self, funcs) -> bool:
        """Whether any of ``funcs`` was called."""
        return any(f in self.funcs for f in funcs)

    @property
    def mean_size(self) -> float:
        """The mean number of elements of the tensors returned (0 without a call)."""
        return self.elements / max(self.calls, 1)


def probe_calls(fn, *args) -> ForwardCalls:
    """The torch calls of ``fn(*args)``, one evaluation without gradients."""
    calls = ForwardCalls()
    with torch.no_grad(), calls:
        fn(*args)
    return calls


def mean_call_size(fn, *args) -> float:
    """The mean number of elements of the tensors that the torch calls of ``fn(*args)`` return
    (one evaluation, without gradients)."""
    return probe_calls(fn, *args).mean_size


def default_way(pot, batch_size: int) -> tuple[str, str]:
    """``(way, why)`` for ``vectorize=None`` and minibatches of ``batch_size`` samples:
    ``"sequential"`` for a model on the generic path that draws no random numbers and, on the
    CPU, calls a convolution, or attention with calls above :data:`ATTENTION_CALL_SIZE`
    elements (``pot.call_size(batch_size)``); else ``"batched"``."""
    if not pot.generic:
        return "batched", "the MLP path"
    if pot.stochastic:
        return "batched", "the model draws random numbers"
    if pot.convolutional and pot.device.type == "cpu":
        return "sequential", (
            "the model calls a convolution on the CPU (batched, it becomes a slower grouped "
            "convolution)"
        )
    if pot.attention and pot.device.type == "cpu":
        size = pot.call_size(batch_size)
        if size > ATTENTION_CALL_SIZE:
            return "sequential", (
                f"the model calls attention on the CPU, on tensors of {size:,.0f} elements per "
                f"call (over {ATTENTION_CALL_SIZE:,}: one chain at a time, torch's fused kernel)"
            )
        return "batched", (
            f"the generic path (attention on tensors of {size:,.0f} elements per call, at most "
            f"{ATTENTION_CALL_SIZE:,})"
        )
    return "batched", "the generic path"


def check_vectorize(vectorize) -> None:
    """A TypeError unless ``vectorize`` is True, False, ``"timed"`` or None."""
    if not (vectorize is None or isinstance(vectorize, bool) or vectorize == "timed"):
        raise TypeError(f"vectorize must be True, False, 'timed' or None, got {vectorize!r}")
