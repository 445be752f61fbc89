"""Checks of a potential's model, device, inputs and targets, run once per call.

Each turns what would otherwise fail deep inside torch (or silently give a wrong λ̂) into a
``ValueError``/``TypeError`` that names the argument and says what was expected.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "check_class_targets",
    "check_finite_parameters",
    "check_kl_outputs",
    "check_norm_modes",
    "probe_forward",
    "resolve_device",
]

IGNORE_INDEX = -100  # torch's default ignore_index of cross_entropy
# layers that update running statistics in place in train mode: impossible under vmap, and a
# change to the user's model
_RUNNING_STATS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)


def resolve_device(device, model_device: torch.device) -> torch.device:
    """``device`` (default: the model's) as a :class:`torch.device` that holds data here."""
    name = "device"
    if device is None:
        device, name = model_device, "model (its parameters' device)"
    elif not isinstance(device, str | torch.device):
        raise TypeError(
            f"device must be a str or torch.device such as 'cpu' or 'cuda:0', got "
            f"{type(device).__name__}"
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(
            f"device must name a torch device such as 'cpu', 'cuda' or 'cuda:0', got {device!r}"
        ) from exc
    if dev.type == "meta":
        raise ValueError(
            f"{name} is 'meta', which holds no values to sample: load the weights and pass "
            "device='cpu' or 'cuda'"
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{name} is {str(dev)!r}, but CUDA is not available on this machine (torch "
                f"{torch.__version__}): pass device='cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"{name} is {str(dev)!r}, but this machine has {torch.cuda.device_count()} CUDA "
                "device(s)"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name} is 'mps', but MPS is not available on this machine")
    return dev


def check_finite_parameters(model: nn.Module) -> None:
    """w* must be a point: NaN or ±inf in any parameter (sampled or frozen) is refused, and NaN
    in a floating buffer. A buffer may hold ±inf: attention masks do (TransformerLens'
    ``IGNORE`` is −inf)."""
    for name, p in model.named_parameters():
        if (p.is_floating_point() or p.is_complex()) and not bool(torch.isfinite(p).all()):
            raise ValueError(
                f"model parameter '{name}' is not finite (NaN or inf): the LLC and its bounds "
                "are defined at finite weights w*"
            )
    for name, b in model.named_buffers():
        if (b.is_floating_point() or b.is_complex()) and bool(torch.isnan(b).any()):
            raise ValueError(f"model buffer '{name}' is not finite (contains NaN)")


def check_norm_modes(model: nn.Module) -> None:
    """Refuse normalisation layers that would update running statistics at every step."""
    for name, m in model.named_modules():
        if isinstance(m, _RUNNING_STATS) and m.training and m.track_running_stats:
            where = f"model.{name}" if name else "model"
            raise ValueError(
                f"model has a {type(m).__name__} layer ({where}) in train mode, which updates "
                "its running statistics at every forward pass: call model.eval() before "
                "estimating (the LLC at w* uses the running statistics), or build the layer "
                "with track_running_stats=False"
            )


def _describe(x) -> str:
    if isinstance(x, dict):
        return ", ".join(f"{k}: {_describe(v)}" for k, v in x.items())
    return f"shape {tuple(x.shape)}, dtype {x.dtype}"


def _hint(x, model: nn.Module) -> str:
    if isinstance(x, dict):
        return ""
    embeds = any(isinstance(m, nn.Embedding | nn.EmbeddingBag) for m in model.modules())
    if not x.is_floating_point() and not embeds:
        return (
            "; integer or boolean inputs go to a model with no embedding: cast them, inputs.float()"
        )
    if x.ndim == 1:
        return (
            "; inputs of shape (n,) are n scalars: a model with one input feature takes (n, 1), "
            "inputs[:, None]"
        )
    return ""


def probe_forward(
    forward: Callable, center: torch.Tensor, x, model: nn.Module, num: int, per_sample: bool
):
    """``forward(center, x)`` on ``num`` samples; a failure is re-raised naming ``data`` and its
    inputs. With ``per_sample`` (the named losses) the outputs must have one row per sample
    (1-D inputs are also tried one sample alone: a model may read ``(n,)`` as one sample)."""
    if per_sample and isinstance(x, torch.Tensor) and x.ndim == 1 and num > 1:
        probe_forward(forward, center, x[:1], model, 1, per_sample)
    try:
        out = forward(center, x)
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        hint = _hint(x, model)
        error = TypeError if hint.startswith("; integer") else ValueError
        raise error(
            f"the model cannot be called on data's inputs ({_describe(x)}){hint}. The model "
            f"raised {type(exc).__name__}: {exc}"
        ) from exc
    if per_sample and (out.ndim == 0 or out.shape[0] != num):
        raise ValueError(
            f"the model's outputs on {num} of data's inputs ({_describe(x)}) have shape "
            f"{tuple(out.shape)}, not one row per sample{_hint(x, model)}"
        )
    return out


def check_class_targets(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Targets of ``loss="cross_entropy"``: class indices in range (returned as int64), or
    class probabilities shaped like the outputs.

    Every sample is counted in n, so torch's ignore index (−100), which would drop a sample
    from the loss while n still counts it, is refused."""
    if outputs.ndim < 2:
        raise ValueError(
            "loss='cross_entropy' needs logits of shape (n, C) from the model, got outputs of "
            f"shape {tuple(outputs.shape)}"
        )
    classes = outputs.shape[1]
    if targets.is_floating_point() or targets.is_complex():
        if targets.shape[1:] == outputs.shape[1:]:
            return targets  # class probabilities
        raise TypeError(
            "targets for loss='cross_entropy' must be integer class indices of shape (n,) (or "
            f"class probabilities shaped like the outputs (n, {classes})), got dtype "
            f"{targets.dtype} and shape {tuple(targets.shape)}"
        )
    if targets.dtype == torch.bool:
        raise TypeError(
            "targets for loss='cross_entropy' must be integer class indices, got dtype "
            "torch.bool: pass targets.long()"
        )
    want = (outputs.shape[0], *outputs.shape[2:])
    if targets.shape[1:] != want[1:]:
        fix = ": pass targets.squeeze(1)" if targets.shape[1:] == (1,) else ""
        raise ValueError(
            "targets for loss='cross_entropy' must be class indices of shape "
            f"{('n', *want[1:])} (one per sample), got shape {tuple(targets.shape)}{fix}"
        )
    low, high = int(targets.min()), int(targets.max())
    if low == IGNORE_INDEX:
        raise ValueError(
            "targets for loss='cross_entropy' hold -100 (torch's ignore_index). Every sample "
            "counts in n (nβ = n/log n, λ̂ = nβ·ΔL), so samples without a label must be left out "
            "of data: keep = targets != -100; data = (inputs[keep], targets[keep])"
        )
    if low < 0 or high >= classes:
        raise ValueError(
            f"targets for loss='cross_entropy' must be class indices in [0, {classes}) (the "
            f"model has {classes} outputs), got values from {low} to {high}"
        )
    return targets.long()


def check_kl_outputs(outputs: torch.Tensor) -> None:
    """``divergence="kl"`` compares softmax distributions over the last output dimension."""
    if outputs.ndim < 2 or outputs.shape[-1] < 2:
        raise ValueError(
            "divergence='kl' compares softmax distributions over the model's last output "
            f"dimension, but the outputs have shape {tuple(outputs.shape)}: with one output the "
            "KL is 0 for every w (λ̂ = 0). Use divergence='mse', or a model returning logits "
            "of at least 2 classes"
        )
