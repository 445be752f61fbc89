"""The contract every public function keeps under fuzzing, as reusable checks.

A call either returns a finite result of the expected dtype, or raises ``ValueError`` /
``TypeError`` whose message names the offending argument. It never hangs, never changes the
model it is given, and never touches the global RNG.
"""

from __future__ import annotations

import contextlib
import signal
import threading

import numpy as np
import torch


class Hang(Exception):
    """Raised by :func:`no_hang` when a call runs past its time limit."""


@contextlib.contextmanager
def no_hang(seconds: float):
    """Fail with :class:`Hang` if the block runs longer than ``seconds`` (main thread, Unix)."""
    main = threading.current_thread() is threading.main_thread()
    if not main or not hasattr(signal, "setitimer"):
        yield
        return

    def _raise(signum, frame):
        raise Hang(f"call ran longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def rng_state():
    """The global torch (CPU and CUDA) and NumPy RNG states, comparable with ``==``."""
    cuda = [s.clone() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else []
    return torch.get_rng_state().clone(), cuda, repr(np.random.get_state())  # noqa: NPY002 (the legacy global state)


def same_rng(a, b) -> bool:
    return (
        torch.equal(a[0], b[0])
        and len(a[1]) == len(b[1])
        and all(torch.equal(x, y) for x, y in zip(a[1], b[1]))
        and a[2] == b[2]
    )


def model_snapshot(model: torch.nn.Module):
    """Everything a call must leave unchanged: the state dict (values, dtypes), flags, mode."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    modes = [m.training for m in model.modules()]
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    return state, flags, modes, grads


def _identical(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Equal values with NaN equal to NaN (``torch.equal`` treats NaN as unequal)."""
    if x.dtype != y.dtype or x.shape != y.shape:
        return False
    if x.is_floating_point() or x.is_complex():
        return bool((torch.isnan(x) == torch.isnan(y)).all()) and torch.equal(
            torch.nan_to_num(x), torch.nan_to_num(y)
        )
    return torch.equal(x, y)


def same_model(a, b) -> bool:
    sa, fa, ma, ga = a
    sb, fb, mb, gb = b
    if sa.keys() != sb.keys() or fa != fb or ma != mb or ga.keys() != gb.keys():
        return False
    for k in sa:
        if not _identical(sa[k], sb[k]):
            return False
    for k in ga:
        if (ga[k] is None) != (gb[k] is None):
            return False
        if ga[k] is not None and not _identical(ga[k], gb[k]):
            return False
    return True


def check_error(exc: BaseException, names) -> None:
    """A refusal must be a ValueError/TypeError naming one of ``names`` (argument names)."""
    if not isinstance(exc, (ValueError, TypeError)):
        raise AssertionError(f"expected ValueError/TypeError, got {type(exc).__name__}: {exc}")
    names = [names] if isinstance(names, str) else list(names)
    msg = str(exc)
    if not any(n in msg for n in names):
        raise AssertionError(f"error does not name any of {names}: {type(exc).__name__}: {msg}")


def is_finite(x) -> bool:
    """True when every number in ``x`` (tensor, array, scalar) is finite."""
    if isinstance(x, torch.Tensor):
        return bool(torch.isfinite(x).all())
    arr = np.asarray(x, dtype=float)
    return bool(np.isfinite(arr).all())
