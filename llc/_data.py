"""Normalise the user's data and loss into tensors and a per-sample loss function."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

__all__ = ["DIVERGENCES", "LossFn", "check_loss", "prepare_data", "resolve_loss"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if outputs.shape != targets.shape:  # broadcasting (n, 1) against (n,) would pair all samples
        raise ValueError(
            "loss='mse' needs targets shaped like the model's outputs: outputs "
            f"{tuple(outputs.shape)}, targets {tuple(targets.shape)}"
        )
    diff = (outputs - targets).reshape(outputs.shape[0], -1)
    return 0.5 * (diff * diff).sum(dim=1)


def _cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs, targets, reduction="none")


def _kl(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # targets are the reference network's logits: KL(softmax f_{w*} ‖ softmax f_w)
    log_p = F.log_softmax(targets, dim=-1)
    log_q = F.log_softmax(outputs, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    return kl.reshape(outputs.shape[0], -1).sum(dim=1)


_NAMED_LOSSES: dict[str, LossFn] = {"mse": _mse, "cross_entropy": _cross_entropy}
DIVERGENCES: dict[str, LossFn] = {"mse": _mse, "kl": _kl}


def resolve_loss(loss: str | LossFn) -> LossFn:
    """Return a function ``(outputs, targets) -> per-sample losses`` of shape ``(batch,)``.

    ``"mse"`` is ``½‖y − f(x)‖²`` summed over output dimensions (a unit-variance Gaussian
    likelihood up to constants), ``"cross_entropy"`` the negative log-likelihood of a classifier.
    """
    if isinstance(loss, str):
        if loss not in _NAMED_LOSSES:
            raise ValueError(
                f"loss must be one of {sorted(_NAMED_LOSSES)} or a callable "
                f"(outputs, targets) -> per-sample losses, got {loss!r}"
            )
        return _NAMED_LOSSES[loss]
    if not callable(loss):
        raise TypeError(f"loss must be a string or a callable, got {type(loss).__name__}")
    return loss


def _as_tensor(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except Exception as exc:  # noqa: BLE001 - re-raised with the argument's name
            raise TypeError(
                f"{name} must be a tensor or array-like, got {type(value).__name__}"
            ) from exc
    return value


def _loader_batches(loader: DataLoader) -> list:
    """Every sample of a loader's dataset once, in order, through its ``collate_fn``.

    Its sampler is not used: shuffling and ``drop_last`` would change or drop samples, and
    iterating a DataLoader draws its base seed from torch's global RNG.
    """
    ds = loader.dataset
    if isinstance(ds, IterableDataset):
        with torch.random.fork_rng(devices=[]):
            return list(loader)
    size = loader.batch_size or 1
    return [
        loader.collate_fn([ds[i] for i in range(j, min(j + size, len(ds)))])
        for j in range(0, len(ds), size)
    ]


def _collect_dataset(data: Dataset | DataLoader) -> tuple[torch.Tensor, ...]:
    if isinstance(data, DataLoader) and data.batch_size is None:
        data = data.dataset  # no automatic batching: the loader yields single samples
    if isinstance(data, DataLoader):
        if isinstance(data.dataset, TensorDataset):
            return tuple(data.dataset.tensors)
        parts: list[list[torch.Tensor]] = []
        for batch in _loader_batches(data):
            batch = batch if isinstance(batch, list | tuple) else (batch,)
            if not parts:
                parts = [[] for _ in batch]
            for store, item in zip(parts, batch):
                store.append(_as_tensor("data", item))
        return tuple(torch.cat(store) for store in parts)
    if isinstance(data, TensorDataset):
        return tuple(data.tensors)
    if isinstance(data, IterableDataset):
        raise TypeError(
            "data is an IterableDataset, which has no length; wrap it in a DataLoader with a "
            "batch_size, or pass (inputs, targets) tensors"
        )
    items = [data[i] for i in range(len(data))]  # a map-style Dataset
    if items and isinstance(items[0], list | tuple):
        return tuple(
            torch.stack([_as_tensor("data", it[j]) for it in items]) for j in range(len(items[0]))
        )
    return (torch.stack([_as_tensor("data", it) for it in items]),)


def prepare_data(
    data: object,
    *,
    device: torch.device,
    dtype: torch.dtype,
    require_targets: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Turn ``data`` into ``(inputs, targets)`` tensors on ``device``.

    Accepts an ``(inputs, targets)`` tuple, a :class:`TensorDataset`, a map-style dataset or a
    :class:`DataLoader` (whose dataset is materialised once: the estimator samples its own
    minibatches), or, when ``require_targets`` is false, inputs alone. Floating-point tensors are
    cast to ``dtype``; integer targets (class labels) are kept.
    """
    if isinstance(data, torch.Tensor):
        tensors: tuple[torch.Tensor, ...] = (data,)
    elif isinstance(data, list | tuple):
        if len(data) not in (1, 2):
            raise ValueError(
                f"data must be (inputs, targets) or (inputs,), got a sequence of length {len(data)}"
            )
        tensors = tuple(_as_tensor("data", d) for d in data)
    elif isinstance(data, Dataset | DataLoader):
        tensors = _collect_dataset(data)
    else:
        raise TypeError(
            "data must be an (inputs, targets) tuple of tensors, a TensorDataset or a DataLoader, "
            f"got {type(data).__name__}"
        )
    if len(tensors) > 2:
        raise ValueError(
            f"data must yield (inputs, targets), got {len(tensors)} tensors per sample"
        )
    inputs = tensors[0]
    targets = tensors[1] if len(tensors) == 2 else None
    if targets is None and require_targets:
        raise ValueError("data must contain targets: pass (inputs, targets)")
    if inputs.ndim == 0 or inputs.shape[0] == 0:
        raise ValueError("data is empty: inputs must have at least one sample along dimension 0")
    if targets is not None and (targets.ndim == 0 or targets.shape[0] != inputs.shape[0]):
        got = "a scalar" if targets.ndim == 0 else f"{targets.shape[0]} targets"
        raise ValueError(f"data has mismatched lengths: {inputs.shape[0]} inputs and {got}")
    out = []
    for name, t in (("inputs", inputs), ("targets", targets)):
        if t is None:
            out.append(None)
            continue
        if t.is_floating_point() or t.is_complex():
            if not torch.isfinite(t).all():
                raise ValueError(f"data {name} contain non-finite values (NaN or inf)")
            t = t.to(device=device, dtype=dtype)
        else:
            t = t.to(device=device)
        out.append(t)
    return out[0], out[1]


def check_loss(loss_fn: LossFn, outputs: torch.Tensor, targets: torch.Tensor) -> None:
    """Raise a ValueError naming ``loss`` unless it returns one differentiable value per sample."""
    out = outputs.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        values = loss_fn(out, targets)
        if not isinstance(values, torch.Tensor) or values.shape != (out.shape[0],):
            got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise ValueError(
                f"loss must return one value per sample, shape ({out.shape[0]},), got {got}"
            )
        if not values.requires_grad:
            raise ValueError(
                "loss must be differentiable in the model outputs (its value does not depend on "
                "them through autograd: detached, integer-valued or constant?)"
            )
        (g,) = torch.autograd.grad(values.sum(), out, allow_unused=True)
    if g is None:
        raise ValueError("loss must be differentiable in the model outputs (gradient is None)")
