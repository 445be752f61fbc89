"""Data larger than memory: minibatches streamed from an iterable, shared by all chains.

>>> r = llc.estimate_llc(model, llc.Streamed(loader), loss="next_token")  # doctest: +SKIP

The estimator otherwise holds the n samples in memory and draws each chain's minibatch from
them. :class:`Streamed` instead reads batches from a :class:`~torch.utils.data.DataLoader`,
an :class:`~torch.utils.data.IterableDataset` yielding batches, or any re-iterable of batches,
one at a time: one pass first counts n and computes ``L_n(w*)``, then every step takes the
stream's next batch (a new pass when one ends), and all chains share it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ._data import num_samples, prepare_data
from .potential import Potential

__all__ = ["Streamed", "StreamedPotential", "check_streamed_settings"]


class Streamed:
    """Batches read from ``source`` one at a time, for :func:`llc.estimate_llc`.

    Parameters
    ----------
    source : DataLoader, IterableDataset or re-iterable
        Each pass yields batches in any form ``estimate_llc`` takes as data (``(inputs,
        targets)``, a dict of inputs, token ids ``(batch, seq)``); every pass must yield the
        same samples, in any order (a shuffling loader is fine: its own generator sets the
        order, so seed it to repeat a result).

    Notes
    -----
    Sharing each minibatch between chains changes the estimator's variance, not its mean: the
    control variate ``nβ (L_B(w) − L_B(w*))`` of every chain is unbiased for ``nβ (L_n(w) −
    L_n(w*))`` on any one batch. The chains' draws become correlated through the shared batch,
    so the spread between chains no longer measures all of the error; the MCSE comes from the
    pooled trace and its ESS. Measured in ``bench/llc_streamed.py``.
    """

    streamed = True  # read by the in-memory data path, which refuses it

    def __init__(self, source: Iterable):
        # tensors, tuples and dicts are in-memory data (a list is taken as a list of batches)
        if isinstance(source, torch.Tensor | tuple | dict) or not isinstance(source, Iterable):
            raise TypeError(
                "Streamed takes a DataLoader, an IterableDataset or a re-iterable of batches, "
                f"got {type(source).__name__} (in-memory data is passed to estimate_llc as is)"
            )
        self.source = source

    def batches(self):
        """Batches for ever: pass after pass over ``source``."""
        while True:
            empty = True
            for batch in self.source:
                empty = False
                yield batch
            if empty:
                raise ValueError("the streamed data yielded no batch")


class StreamedPotential(Potential):
    """A :class:`~llc.Potential` whose data is the stream's current batch, with ``n`` and
    ``L_n(w*)`` from one pass over the stream.

    :meth:`advance` loads the next batch: ``inputs``, ``targets`` and ``center_losses`` are
    then that batch's, and every chain's minibatch is the whole of it.
    """

    def __init__(self, model, data: Streamed, *, loss="mse", params=None, device=None,
                 dtype=None, matmul_precision=None):  # fmt: skip
        if isinstance(loss, str) and loss == "behavioral":
            raise ValueError("loss='behavioral' is not supported with streamed data")
        self._stream = data.batches()
        first = next(self._stream)
        super().__init__(model, first, loss=loss, params=params, device=device, dtype=dtype,
                         matmul_precision=matmul_precision)  # fmt: skip
        self._tokens = self.loss_name == "next_token"
        self._n, self._center_mean = self._pass(data)
        self._load(first)

    def _prepared(self, batch):
        return prepare_data(
            batch, device=self.device, dtype=self.dtype, require_targets=True, tokens=self._tokens
        )

    def _pass(self, data: Streamed) -> tuple[int, float]:
        """``(n, L_n(w*))`` over one pass, in float64."""
        total, count = 0.0, 0
        with torch.no_grad(), self.model_rng(0):
            for batch in data.source:
                x, y = self._prepared(batch)
                losses = self._flat.losses_at(self.center, x, y, self.loss_fn, 4096)
                if not torch.isfinite(losses).all():
                    raise ValueError("the loss at the model's current weights is not finite")
                total += float(losses.double().sum())
                count += num_samples(x)
        return count, total / count

    def _load(self, batch) -> None:
        self.inputs, self.targets = self._prepared(batch)
        self.center_losses = self.losses(self.center)

    def advance(self) -> torch.Tensor:
        """Load the stream's next batch; the indices of all its samples, shape (batch,)."""
        with self.model_rng(0):
            self._load(next(self._stream))
        return torch.arange(num_samples(self.inputs), device=self.device)

    @property
    def n(self) -> int:
        return self._n if hasattr(self, "_n") else num_samples(self.inputs)

    @property
    def center_loss_mean(self) -> float:
        return self._center_mean

    @property
    def batch_size(self) -> int:
        """The size of the current batch (the stream sets the minibatch)."""
        return num_samples(self.inputs)


def check_streamed_settings(batch_size, observables) -> None:
    """What streamed data does not support, refused by name."""
    if batch_size is not None:
        raise ValueError(
            "batch_size is set by the stream's batches with streamed data; leave it None"
        )
    if observables:
        raise ValueError(
            "observables are not supported with streamed data (they read the data in memory)"
        )
