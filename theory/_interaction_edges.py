"""Streamed accumulation of ``M'`` and of the integrated-gradient edges.

Private helper of :mod:`theory.interaction`.  Both are sums over samples, accumulated batch by
batch; a batch's Jacobian block never exceeds ``_interaction_layers.MAX_BLOCK`` entries, so the
memory is ``O(width²)`` per layer whatever the number of samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from ._interaction_layers import _AffineAct, _Block, _hom


def batches(x: Tensor, size: int, dtype: torch.dtype) -> Iterator[Tensor]:
    """Batches cast one at a time, so no full-size copy of the inputs is made."""
    for i in range(0, x.shape[0], size):
        yield x[i:i + size].to(dtype)


def node_activations(blocks: list[_Block], xb: Tensor, layer: int) -> Tensor:
    """Homogeneous activations ``f^layer = (x^layer, 1)`` of a batch of inputs."""
    f = _hom(xb)
    for block in blocks[:layer]:
        f = block.forward_hom(f)
    return f


def accumulate_stats(
    blocks: list[_Block], x: Tensor, moments: list, batch_size: int,
    tick: Callable[[], None],
) -> list[Tensor | None]:
    """One forward pass: moments of every node layer and, for closed-form layers, the slope
    products ``Σ_x s̃ s̃ᵀ`` that make ``M'`` independent of the data once ``C`` is known."""
    ss: list[Tensor | None] = [None] * len(blocks)
    with torch.no_grad():
        for xb in batches(x, batch_size, moments[0].s1.dtype):
            f = _hom(xb)
            for i, mom in enumerate(moments):
                mom.update(f[:, :-1])
                if i == len(blocks):
                    break
                if isinstance(blocks[i], _AffineAct):
                    f, s = blocks[i].forward_with_slopes(f)
                    ss[i] = s.T @ s if ss[i] is None else ss[i].addmm_(s.T, s)
                else:
                    f = blocks[i].forward_hom(f)
            tick()
    return ss


def accumulate_mdash(
    blocks: list[_Block], x: Tensor, layer: int, c_next: Tensor, batch_size: int,
    tick: Callable[[], None],
) -> Tensor:
    """``M' = (1/N) Σ_x J_xᵀ J_x`` with ``J_x = ∂(f^{l+1} C^{l+1})/∂f^l``, generic layers."""
    block = blocks[layer]
    acc = None
    with torch.no_grad():
        for xb in batches(x, batch_size, c_next.dtype):
            f = node_activations(blocks, xb, layer)
            with torch.enable_grad():
                part = block.mdash_batch(f, c_next)
            acc = part if acc is None else acc + part
            tick()
    return acc / x.shape[0]


def accumulate_edges(
    blocks: list[_Block], x: Tensor, layer: int, c_in: Tensor, c_in_pinv: Tensor,
    c_next: Tensor, alphas: Tensor, weights: Tensor, batch_size: int,
    tick: Callable[[], None],
) -> Tensor:
    """``E_ij = (1/N) Σ_x (Σ_q w_q ∂f̂^{l+1}_i/∂f̂^l_j(α_q f̂^l) · f̂^l_j)²``.

    Shape ``(k_out, k_in)``.
    """
    block = blocks[layer]
    edges = torch.zeros(c_next.shape[1], c_in.shape[1], dtype=c_in.dtype, device=c_in.device)
    with torch.no_grad():
        for xb in batches(x, batch_size, c_next.dtype):
            f = node_activations(blocks, xb, layer)
            fhat = f @ c_in
            with torch.enable_grad():
                for rows, jhat in block.jhat_blocks(f, c_in_pinv, c_next, alphas, weights):
                    jhat = jhat.detach()
                    edges += ((jhat * fhat[rows].unsqueeze(1)) ** 2).sum(0)
            tick()
    return edges / x.shape[0]
