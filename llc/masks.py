"""Masks over parameter entries for component-refined LLCs of transformers: heads, MLPs, embeddings.

>>> masks = llc.param_masks(model, "l0h1")              # layer 0, head 1: its Q, K, V, O slices
>>> llc.estimate_llc(model, tokens, loss="next_token", params=masks)    # doctest: +SKIP

A restriction is a string, or a list of them (their union):

- ``"l0h1"``: head 1 of layer 0, the rows of W_Q, W_K, W_V (and their biases) and the columns
  of W_O that belong to it; ``"l0h1 qk"`` only some of them (letters among ``q k v o``);
- ``"l0 attn"``, ``"l0 mlp"``, ``"l0"``: a layer's attention, MLP, or both (whole tensors);
- ``"embed"``, ``"unembed"``: the token embedding and the unembedding (readout).

Supported: ``nn.MultiheadAttention`` (also inside ``nn.TransformerEncoderLayer`` /
``DecoderLayer``; its packed ``in_proj_weight`` is ``[W_Q; W_K; W_V]``, head h the rows
``h·d_head … (h+1)·d_head`` of each, ``out_proj.weight`` its columns), Hugging Face GPT-2
blocks (``Conv1D`` weights stored transposed: ``c_attn`` columns, ``c_proj`` rows), and
TransformerLens 3 ``HookedTransformer`` attention (``W_Q[h]``, …; TransformerLens 4 removed
``HookedTransformer``, and its ``TransformerBridge`` is not supported). Layers are numbered in
the order their attention modules appear in ``model.modules()``. The output bias of attention
is shared by all heads and belongs to no head. The result is ``{parameter name: bool mask, or
True for a whole tensor}``, what ``params=`` takes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["param_masks"]

Masks = dict[str, "torch.Tensor | bool"]
_HEAD = re.compile(r"^l(\d+)h(\d+)(?:\s+([qkvo]+))?$")
_LAYER = re.compile(r"^l(\d+)(?:\s+(attn|mlp))?$")
_FORMS = (
    '"l<layer>h<head>" (optionally with parts, "l0h1 qk"), "l<layer>", "l<layer> attn", '
    '"l<layer> mlp", "embed" or "unembed"'
)


def param_masks(model: nn.Module, restriction: str | Sequence[str]) -> Masks:
    """Masks selecting the entries of a component; a list of restrictions gives their union.

    Parameters
    ----------
    model : nn.Module
    restriction : str or list of str
        See the module notes.

    Returns
    -------
    dict
        ``{name: mask}`` with boolean masks shaped like the parameters (``True`` where a whole
        tensor is selected), for ``params=`` of :func:`llc.estimate_llc`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(restriction, str):
        restriction = [restriction]
    if not isinstance(restriction, Sequence) or not restriction:
        raise TypeError(f"restriction must be a string or a non-empty list of strings ({_FORMS})")
    out: Masks = {}
    for item in restriction:
        if not isinstance(item, str):
            raise TypeError(f"restriction entries must be strings, got {type(item).__name__}")
        for name, mask in _one(model, item.strip().lower()).items():
            out[name] = _union(out.get(name), mask)
    return out


def _union(a, b):
    if a is None:
        return b
    if a is True or b is True:
        return True
    both = a | b
    return True if bool(both.all()) else both


def _one(model: nn.Module, spec: str) -> Masks:
    names = {id(p): n for n, p in model.named_parameters()}
    if spec == "embed":
        return _whole(names, _embedding(model).parameters())
    if spec == "unembed":
        return _whole(names, _unembedding(model).parameters())
    head, layer = _HEAD.match(spec), _LAYER.match(spec)
    if not head and not layer:
        raise ValueError(f"restriction {spec!r} is not one of the forms {_FORMS}")
    attns = _attentions(model)
    index = int((head or layer).group(1))
    if not attns:
        raise ValueError(
            "restriction names a layer, but the model has no attention module this function "
            "knows (nn.MultiheadAttention, a GPT-2 block, a TransformerLens block)"
        )
    if index >= len(attns):
        raise ValueError(
            f"restriction {spec!r}: layer {index} is out of range, the model has {len(attns)} "
            "layers"
        )
    attn, parent = attns[index]
    if head:
        out = _head(names, attn, int(head.group(2)), head.group(3) or "qkvo", spec)
        if not out:
            raise ValueError(f"restriction {spec!r} selects no parameter of this attention module")
        return out
    part = layer.group(2)
    out: Masks = {}
    if part in (None, "attn"):
        out.update(_whole(names, attn.parameters()))
    if part in (None, "mlp"):
        out.update(_whole(names, _mlp(attn, parent, spec).parameters()))
    return out


def _whole(names: dict, params) -> Masks:
    return {names[id(p)]: True for p in params if id(p) in names}


def _attentions(model: nn.Module) -> list[tuple[nn.Module, nn.Module | None]]:
    """Attention modules in order, each with the module that holds it (its block)."""
    found = []
    for parent in [None, *model.modules()]:
        children = model.named_children() if parent is None else parent.named_children()
        for _, child in children:
            if _kind(child) and all(child is not a for a, _ in found):
                found.append((child, parent if parent is not None else model))
    return found


def _kind(m: nn.Module) -> str | None:
    if isinstance(m, nn.MultiheadAttention):
        return "mha"
    if hasattr(m, "c_attn") and hasattr(m, "c_proj") and hasattr(m, "head_dim"):
        return "gpt2"
    if all(isinstance(getattr(m, k, None), nn.Parameter) for k in ("W_Q", "W_K", "W_V", "W_O")):
        return "lens"  # HookedTransformer (TransformerLens 3); 4's bridge computes them
    return None


def _mlp(attn: nn.Module, block: nn.Module | None, spec: str) -> nn.Module:
    for name in ("mlp", "ffn", "feed_forward"):
        if block is not None and isinstance(getattr(block, name, None), nn.Module):
            return getattr(block, name)
    if block is not None and all(hasattr(block, k) for k in ("linear1", "linear2")):
        return nn.ModuleList([block.linear1, block.linear2])  # nn.TransformerEncoderLayer
    raise ValueError(f"restriction {spec!r}: no MLP found next to this layer's attention")


def _heads(attn: nn.Module) -> tuple[int, int, int]:
    """(number of heads, head dimension, embedding dimension) of an attention module."""
    kind = _kind(attn)
    if kind == "mha":
        return attn.num_heads, attn.head_dim, attn.embed_dim
    if kind == "gpt2":
        return attn.num_heads, attn.head_dim, attn.embed_dim
    return attn.W_Q.shape[0], attn.W_Q.shape[-1], attn.W_Q.shape[1]


def _head(names: dict, attn: nn.Module, h: int, parts: str, spec: str) -> Masks:
    count, dh, e = _heads(attn)
    if h >= count:
        raise ValueError(f"restriction {spec!r}: head {h} is out of range, the layer has {count}")
    kind, sl = _kind(attn), slice(h * dh, (h + 1) * dh)
    out: Masks = {}

    def add(param, index):
        if param is None or id(param) not in names:
            return
        mask = torch.zeros(param.shape, dtype=torch.bool)
        mask[index] = True
        out[names[id(param)]] = _union(out.get(names[id(param)]), mask)

    for k, letter in enumerate("qkv"):
        if letter not in parts:
            continue
        rows = slice(k * e + sl.start, k * e + sl.stop)
        if kind == "mha":
            if attn._qkv_same_embed_dim:
                add(attn.in_proj_weight, (rows, slice(None)))
            else:
                add(getattr(attn, f"{letter}_proj_weight"), (sl, slice(None)))
            add(attn.in_proj_bias, (rows,))
        elif kind == "gpt2":  # Conv1D: y = x W + b with W of shape (E, 3E)
            add(attn.c_attn.weight, (slice(None), rows))
            add(attn.c_attn.bias, (rows,))
        else:
            add(getattr(attn, f"W_{letter.upper()}"), (h,))
            add(getattr(attn, f"b_{letter.upper()}", None), (h,))
    if "o" in parts:
        if kind == "mha":
            add(attn.out_proj.weight, (slice(None), sl))
        elif kind == "gpt2":
            add(attn.c_proj.weight, (sl, slice(None)))
        else:
            add(attn.W_O, (h,))
    return out


def _embedding(model: nn.Module) -> nn.Module:
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    if emb is None:
        emb = getattr(model, "embed", None)
    if emb is None:
        emb = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    if emb is None:
        raise ValueError("restriction 'embed': the model has no token embedding")
    return emb


def _unembedding(model: nn.Module) -> nn.Module:
    get = getattr(model, "get_output_embeddings", None)
    out = get() if callable(get) else None
    for name in ("unembed", "lm_head"):
        if out is None and isinstance(getattr(model, name, None), nn.Module):
            out = getattr(model, name)
    if out is None:
        vocab = getattr(_embedding(model), "num_embeddings", None)
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        out = next((m for m in reversed(linears) if m.out_features == vocab), None)
    if out is None:
        raise ValueError("restriction 'unembed': the model has no unembedding (readout) layer")
    return out
