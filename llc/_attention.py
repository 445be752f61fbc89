"""Attention that batches over chains: scaled dot-product attention written out for ``vmap``.

Under :func:`torch.func.vmap` torch has no batching rule for its fused attention kernels
(``_scaled_dot_product_flash_attention_for_cpu`` falls back to a loop over chains with a
warning; on CUDA the vmapped backward of the flash kernel fails with "LSE is not correctly
aligned"). Inside :class:`ChainBatchedAttention`, calls of
``F.scaled_dot_product_attention`` (direct, from Hugging Face models, from ``nn.Module`` code)
are computed by :func:`math_attention`, the same formula out of ``matmul``, ``softmax`` and
``masked_fill``; their batching rules fold the chain dimension into the matmuls' batch
dimensions, so the chains run as one batched attention, forward and backward, on any device.
``F.multi_head_attention_forward`` (``nn.MultiheadAttention``, ``nn.Transformer*Layer``) is
called with ``need_weights=True``, its explicit-softmax branch. The mode is a
:class:`~torch.overrides.TorchFunctionMode` entered only around the vmapped calls: torch's
global SDPA and fast-path settings are never touched, and an active mode also turns off the
fused fast paths of ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer``, which have
no derivative.
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["ATTENTION", "ChainBatchedAttention", "math_attention"]

# the functional forms that attention modules call
ATTENTION = (F.scaled_dot_product_attention, F.multi_head_attention_forward)

_MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)


def math_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """``softmax(q kᵀ · scale + mask) v``, with the arguments of ``F.scaled_dot_product_attention``.

    Notes
    -----
    ``scale`` defaults to ``1/√E``; a boolean mask keeps the ``True`` entries, a float mask is
    added to the scores; ``is_causal`` keeps ``j ≤ i`` (top-left aligned, as torch does).
    """
    length, source = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        repeat = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(repeat, dim=-3)
        value = value.repeat_interleave(repeat, dim=-3)
    scores = (query * scale) @ key.transpose(-2, -1)
    if is_causal:
        keep = torch.ones(length, source, dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    weights = torch.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ value


class ChainBatchedAttention(TorchFunctionMode):
    """Within this context, attention is computed by :func:`math_attention` (see module notes)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return math_attention(*args, **kwargs)
        if func is F.multi_head_attention_forward:
            bound = _MHA_SIGNATURE.bind(*args, **kwargs)
            wanted = bound.arguments.get("need_weights", True)
            bound.arguments["need_weights"] = True
            out, weights = func(*bound.args, **bound.kwargs)
            return out, (weights if wanted else None)
        return func(*args, **kwargs)
