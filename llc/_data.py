"""Normalise the user's data and loss into tensors and a per-sample loss function."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from ._randomness import forked_global_rng
from .language import next_token, token_targets

__all__ = [
    "DIVERGENCES",
    "LossFn",
    "check_loss",
    "narrow",
    "num_samples",
    "prepare_data",
    "resolve_loss",
    "take",
]

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


_NAMED_LOSSES: dict[str, LossFn] = {
    "mse": _mse,
    "cross_entropy": _cross_entropy,
    "next_token": next_token,
}
DIVERGENCES: dict[str, LossFn] = {"mse": _mse, "kl": _kl}


def resolve_loss(loss: str | LossFn) -> LossFn:
    """Return a function ``(outputs, targets) -> per-sample losses`` of shape ``(batch,)``.

    ``"mse"`` is ``½‖y − f(x)‖²`` summed over output dimensions (a unit-variance Gaussian
    likelihood up to constants), ``"cross_entropy"`` the negative log-likelihood of a classifier,
    ``"next_token"`` a language model's mean next-token cross-entropy per sequence
    (:func:`llc.language.next_token`).
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


# -- inputs: a tensor, or a dict of tensors passed to the model as keyword arguments ---------
def num_samples(x) -> int:
    """Number of samples (the leading dimension) of inputs ``x``."""
    return int(next(iter(x.values())).shape[0]) if isinstance(x, dict) else int(x.shape[0])


def narrow(x, start: int, length: int):
    """Samples ``start`` to ``start + length`` of inputs ``x``."""
    if isinstance(x, dict):
        return {k: v[start : start + length] for k, v in x.items()}
    return x[start : start + length]


def take(x, idx: torch.Tensor):
    """Samples ``idx`` (any shape) of inputs ``x``, shaped ``(*idx.shape, ...)``."""
    if isinstance(x, dict):
        return {k: take(v, idx) for k, v in x.items()}
    # index_select on flat indices: measured about 4x faster than advanced indexing
    return torch.index_select(x, 0, idx.reshape(-1)).view(*idx.shape, *x.shape[1:])


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
        with forked_global_rng():
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


def _keyword_inputs(data: Mapping) -> dict[str, torch.Tensor]:
    out = {str(k): _as_tensor(f"data[{k!r}]", v) for k, v in data.items()}
    if not out:
        raise ValueError("data is an empty dict: pass at least input_ids")
    lengths = {k: (v.shape[0] if v.ndim else None) for k, v in out.items()}
    if len(set(lengths.values())) != 1 or None in lengths.values():
        raise ValueError(f"data's entries must hold the same number of samples, got {lengths}")
    return out


def _token_inputs(data: object) -> object:
    """Sequences given as a list of 1-D token tensors: stacked if they share a length."""
    if (
        isinstance(data, list | tuple)
        and len(data) > 0
        and all(isinstance(d, torch.Tensor) and d.ndim == 1 for d in data)
    ):  # token ids are (n, seq): 1-D entries are sequences, not (inputs, targets)
        lengths = sorted({int(d.shape[0]) for d in data})
        if len(lengths) > 1:
            raise ValueError(
                f"data holds sequences of different lengths ({lengths[0]} to {lengths[-1]}): "
                "pad them to one length and pass {'input_ids': ..., 'attention_mask': ...} "
                "with 0 at the padded positions"
            )
        return torch.stack(list(data))
    return data


def _check_tokens(name: str, ids: torch.Tensor) -> None:
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(
            f"{name} must be integer token ids for loss='next_token', got dtype {ids.dtype}"
        )
    if ids.ndim != 2:
        raise ValueError(
            f"{name} must be token ids of shape (n, seq) for loss='next_token', got shape "
            f"{tuple(ids.shape)}"
        )


def _next_token_data(inputs, targets):
    """Inputs and targets for ``loss="next_token"``: the targets are the ids, masked."""
    ids = inputs["input_ids"] if isinstance(inputs, dict) else inputs
    if isinstance(inputs, dict) and "input_ids" not in inputs:
        raise ValueError(f"data must hold 'input_ids', got keys {sorted(inputs)}")
    _check_tokens("data's input_ids" if isinstance(inputs, dict) else "data", ids)
    if targets is None:
        mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
        if mask is not None and mask.shape != ids.shape:
            raise ValueError(
                f"data's attention_mask must have the shape of input_ids {tuple(ids.shape)}, got "
                f"{tuple(mask.shape)}"
            )
        targets = token_targets(ids, mask)
    _check_tokens("data's targets", targets)
    return inputs, targets


def prepare_data(
    data: object,
    *,
    device: torch.device,
    dtype: torch.dtype,
    require_targets: bool = True,
    tokens: bool = False,
) -> tuple[torch.Tensor | dict[str, torch.Tensor], torch.Tensor | None]:
    """Turn ``data`` into ``(inputs, targets)`` on ``device``.

    Accepts an ``(inputs, targets)`` tuple, a :class:`TensorDataset`, a map-style dataset or a
    :class:`DataLoader` (whose dataset is materialised once: the estimator samples its own
    minibatches), or, when ``require_targets`` is false, inputs alone. Inputs may be a dict of
    tensors (keyword arguments of the model). Floating-point tensors are cast to ``dtype``;
    integer tensors (class labels, token ids) are kept. With ``tokens`` (``loss="next_token"``)
    inputs are token ids ``(n, seq)`` (or a list of equal-length 1-D sequences) and the targets,
    when not given, are the ids with padding (``attention_mask == 0``) ignored.
    """
    if getattr(data, "streamed", False):
        raise TypeError("streamed data (llc.Streamed) is taken by llc.estimate_llc only")
    if tokens:
        data = _token_inputs(data)
    if isinstance(data, Mapping):
        data = (data,)
    if isinstance(data, list | tuple) and data and isinstance(data[0], Mapping):
        if len(data) > 2:
            raise ValueError(f"data must be (inputs, targets), got {len(data)} entries")
        inputs = _keyword_inputs(data[0])
        targets = _as_tensor("targets", data[1]) if len(data) == 2 else None
        return _finish(inputs, targets, device, dtype, require_targets, tokens)
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
    targets = tensors[1] if len(tensors) == 2 else None
    return _finish(tensors[0], targets, device, dtype, require_targets, tokens)


def _finish(inputs, targets, device, dtype, require_targets: bool, tokens: bool):
    if tokens:
        inputs, targets = _next_token_data(inputs, targets)
    if targets is None and require_targets:
        raise ValueError("data must contain targets: pass (inputs, targets)")
    first = next(iter(inputs.values())) if isinstance(inputs, dict) else inputs
    if first.ndim == 0 or first.shape[0] == 0:
        raise ValueError("data is empty: inputs must have at least one sample along dimension 0")
    if targets is not None and (targets.ndim == 0 or targets.shape[0] != first.shape[0]):
        got = "a scalar" if targets.ndim == 0 else f"{targets.shape[0]} targets"
        raise ValueError(f"data has mismatched lengths: {first.shape[0]} inputs and {got}")
    if isinstance(inputs, dict):
        inputs = {k: _to(f"inputs[{k!r}]", v, device, dtype) for k, v in inputs.items()}
    else:
        inputs = _to("inputs", inputs, device, dtype)
    return inputs, None if targets is None else _to("targets", targets, device, dtype)


def _to(name: str, t: torch.Tensor, device, dtype) -> torch.Tensor:
    if t.is_floating_point() or t.is_complex():
        if not torch.isfinite(t).all():
            raise ValueError(f"data {name} contain non-finite values (NaN or inf)")
        return t.to(device=device, dtype=dtype)
    return t.to(device=device)


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
