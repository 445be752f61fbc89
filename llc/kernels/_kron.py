"""The per-layer Kronecker metric of :mod:`llc.kernels.kron_sgld`, and its powers.

Block l holds ``[W_l | b_l]``, shape ``(out_l, in_l + 1)`` (no last column without a bias); its
metric is ``M_l = nβ (R_l ⊗ S_l) + γ I`` with ``S_l`` the second moment of the layer's augmented
inputs over a fixed set of metric inputs and ``R_l = J_lᵀ J_l``, ``J_l = W_L ⋯ W_{l+1}``. With
``R_l = U diag(a) Uᵀ`` and ``S_l = V diag(b) Vᵀ``, ``M_l^p X = U ((Uᵀ X V) ⊙ D^p) Vᵀ`` with
``D_ij = nβ a_i b_j + γ``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["BlockMetric", "apply_power", "langevin_move", "layer_metric"]


class BlockMetric(NamedTuple):
    """One block's eigenfactors, stacked over chains: ``u`` (chain, out, out), ``v`` (chain,
    in', in'), ``d`` (chain, out, in') with ``in' = in + 1`` when the layer has a bias."""

    u: torch.Tensor
    v: torch.Tensor
    d: torch.Tensor


def _weights(position: torch.Tensor, layer) -> torch.Tensor:
    return position[:, layer.weight].view(position.shape[0], *layer.shape)


def _augmented(position: torch.Tensor, layer) -> torch.Tensor:
    """``[W_l | b_l]`` (chain, out, in + 1), with a zero column for a layer without a bias."""
    w = _weights(position, layer)
    b = position[:, layer.bias] if layer.bias is not None else w.new_zeros(w.shape[:2])
    return torch.cat([w, b.unsqueeze(2)], dim=2)


def _second_moment(h: torch.Tensor) -> torch.Tensor:
    """``mean_x (h, 1)(h, 1)ᵀ`` over the rows of ``h`` (..., m, k): shape (..., k + 1, k + 1)."""
    ha = torch.cat([h, torch.ones_like(h[..., :1])], dim=-1)
    return ha.transpose(-1, -2) @ ha / h.shape[-2]


def input_moments(position: torch.Tensor, layers, inputs: torch.Tensor) -> list[torch.Tensor]:
    """``S_l = mean_x h̃_l h̃_lᵀ`` per layer, (chain, in', in'), over the network's own forward
    pass on ``inputs`` (m, in_0), so that ``S_l`` depends on the layers below l only.

    Through a layer without an activation the moment is carried exactly as
    ``T_{l+1} = W̃ T_l W̃ᵀ`` (``W̃ = [W_l | b_l]`` with the row ``(0, …, 0, 1)`` appended), in
    O(k³) per chain; the inputs themselves go only as far as the last activation.
    """
    c = position.shape[0]
    last_act = max((i for i, lay in enumerate(layers) if lay.act is not None), default=-1)
    h = inputs.to(position.dtype)
    moment = _second_moment(h).expand(c, -1, -1)
    out = []
    for i, layer in enumerate(layers):
        out.append(moment if layer.bias is not None else moment[:, :-1, :-1])
        if i == len(layers) - 1:
            break
        wt = _augmented(position, layer)
        if i < last_act:  # samples are needed up to the last activation
            a = (h if h.ndim == 3 else h.expand(c, *h.shape)) @ wt[:, :, :-1].transpose(1, 2)
            a = a + wt[:, :, -1].unsqueeze(1)
            h = a if layer.act is None else layer.act(a)
            moment = _second_moment(h)
        else:  # linear from here on: carry the moment
            top = wt @ moment  # (chain, out, in + 1)
            inner = top @ wt.transpose(1, 2)
            mean = top[:, :, -1:]
            one = torch.ones_like(mean[:, :1])
            moment = torch.cat(
                [torch.cat([inner, mean], 2), torch.cat([mean.transpose(1, 2), one], 2)], 1
            )
    return out


def output_moments(position: torch.Tensor, layers) -> list[torch.Tensor]:
    """``R_l = J_lᵀ J_l`` per layer, (chain, out, out), ``J_l`` the product of the weights above
    l (activations left out, so ``R_l`` depends on the layers above l only)."""
    c = position.shape[0]
    last = layers[-1].shape[0]
    acc = torch.eye(last, dtype=position.dtype, device=position.device).expand(c, last, last)
    out = [None] * len(layers)
    for i in range(len(layers) - 1, -1, -1):
        out[i] = acc if i == len(layers) - 1 else acc.transpose(1, 2) @ acc
        acc = acc @ _weights(position, layers[i])
    return out


def layer_metric(position, layers, inputs, nbeta, localization) -> tuple[BlockMetric, ...]:
    """Every block's metric at ``position`` (chain, D); ``nbeta``, ``localization`` floats or
    per-chain (chain, 1) tensors."""
    nb = _per_chain(nbeta, position)
    gamma = _per_chain(localization, position)
    factors = output_moments(position, layers) + input_moments(position, layers, inputs)
    eig = _eigh_by_size(factors)
    half = len(layers)
    blocks = []
    for (a, u), (b, v) in zip(eig[:half], eig[half:]):
        d = nb * a.clamp_min(0)[:, :, None] * b.clamp_min(0)[:, None, :] + gamma
        blocks.append(BlockMetric(u, v, d))
    return tuple(blocks)


def _eigh_by_size(mats: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``torch.linalg.eigh`` of each (chain, k, k) matrix, one batch per size k; a matrix the
    chains share (expanded, stride 0 over chains: the first layer's input moment, the top
    layer's identity) is decomposed once."""
    out: list = [None] * len(mats)
    sizes: dict[int, list[int]] = {}
    for i, m in enumerate(mats):
        if m.stride(0) == 0:
            vals, vecs = torch.linalg.eigh(m[0])
            out[i] = (vals.expand(m.shape[0], -1), vecs.expand_as(m))
        else:
            sizes.setdefault(m.shape[-1], []).append(i)
    for group in sizes.values():
        vals, vecs = torch.linalg.eigh(torch.cat([mats[i] for i in group]))
        c = mats[group[0]].shape[0]
        for j, i in enumerate(group):
            out[i] = (vals[j * c : (j + 1) * c], vecs[j * c : (j + 1) * c])
    return out


def _per_chain(value, like: torch.Tensor):
    if isinstance(value, torch.Tensor):
        return value.to(like.dtype).view(-1, 1, 1)
    return value


def apply_power(metric: tuple[BlockMetric, ...], layers, vec: torch.Tensor, power: float):
    """``M^power vec`` for a flat ``vec`` (chain, D) laid out as the layers (a new tensor)."""
    out = torch.empty_like(vec)
    for (u, v, d), layer in zip(metric, layers):
        t = u.transpose(1, 2) @ _block(vec, layer) @ v
        _scatter(out, u @ (t * d.pow(power)) @ v.transpose(1, 2), layer)
    return out


def langevin_move(metric: tuple[BlockMetric, ...], layers, grad, noise, step_size: float):
    """``−(ε/2) M⁻¹ grad + √ε M^{−1/2} noise`` for flat ``grad``, ``noise`` (chain, D): both in
    the eigenbases at once, one transform back (a new tensor)."""
    out = torch.empty_like(grad)
    half, root = 0.5 * step_size, step_size**0.5
    for (u, v, d), layer in zip(metric, layers):
        ut = u.transpose(1, 2)
        tg = ut @ _block(grad, layer) @ v
        tn = ut @ _block(noise, layer) @ v
        r = d.rsqrt()
        t = u @ ((root * tn - half * r * tg) * r) @ v.transpose(1, 2)
        _scatter(out, t, layer)
    return out


def _block(vec: torch.Tensor, layer) -> torch.Tensor:
    """Block l of a flat ``vec`` (chain, D): ``[W | b]`` (chain, out, in') as the metric's."""
    block = vec[:, layer.weight].view(vec.shape[0], *layer.shape)
    if layer.bias is None:
        return block
    return torch.cat([block, vec[:, layer.bias].unsqueeze(2)], dim=2)


def _scatter(out: torch.Tensor, t: torch.Tensor, layer) -> None:
    """Write block ``t`` (chain, out, in') into the flat ``out`` (chain, D)."""
    c = out.shape[0]
    if layer.bias is None:
        out[:, layer.weight] = t.reshape(c, -1)
    else:
        out[:, layer.weight] = t[:, :, :-1].reshape(c, -1)
        out[:, layer.bias] = t[:, :, -1]
