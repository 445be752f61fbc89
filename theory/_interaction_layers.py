"""Layers of a network as maps between node layers in homogeneous coordinates.

Private helper of :mod:`theory.interaction`.  Every node layer carries a constant slot appended
as the last coordinate, ``f = (x, c)`` with ``c = 1`` on data, so that biases become weights of
the constant direction (Bushnaq et al. 2024, "biases folded in").

Folding rules, applied to the modules of a layer in order (nested ``nn.Sequential`` flattened):

* ``nn.Linear``: ``(x, c) -> (x Wᵀ + c b, c)`` (the bias is a weight of the constant slot);
* parameter-free elementwise activations (``nn.ReLU``, ``nn.GELU``, ``nn.Tanh`` ...):
  ``(x, c) -> (σ(x), c)``, as in the reference implementation;
* ``nn.Identity`` and ``nn.Dropout`` (taken in evaluation mode): no-ops;
* any other module or callable ``g``: the degree-one homogeneous extension
  ``(x, c) -> (c g(x / c), c)``, the unique extension that agrees with ``g`` at ``c = 1`` and is
  linear along the ray ``α (x, c)``; its affine offset ``g(x) - J(x) x`` becomes the weight of
  the constant slot.

A layer made of affine maps around at most one elementwise activation, ``f ↦ σ̃(f P) Q``, is
handled in closed form (``_AffineAct``): its Jacobian is ``Pdiag(σ̃')Q`` so every quantity of
the transform reduces to Hadamard products with ``Σ_x σ̃'σ̃'ᵀ`` and no per-sample Jacobian is
ever formed.  Anything else (``_Generic``) uses per-sample Jacobians from ``torch.func``, streamed
in chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

_ELEMENTWISE = (
    nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.ELU, nn.Softplus,
    nn.ReLU6, nn.Hardtanh, nn.Mish, nn.CELU, nn.SELU, nn.Softsign, nn.Tanhshrink,
    nn.Hardswish, nn.Hardsigmoid, nn.LogSigmoid,
)
_NOOP = (nn.Identity, nn.Dropout)
# Modules whose training-mode output depends on the whole batch (and which update buffers).
_BATCH_STATS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)

# Largest number of entries of a per-chunk Jacobian block (2**24 float64 = 128 MiB).
MAX_BLOCK = 2**24


def _flatten(layer: object) -> list[object]:
    if isinstance(layer, nn.Sequential):
        return [op for child in layer for op in _flatten(child)]
    return [layer]


def _homogeneous_linear(lin: nn.Linear, device, dtype) -> Tensor:
    """``H`` with ``(x, c) H = (x Wᵀ + c b, c)``, shape ``(in + 1, out + 1)``."""
    w = lin.weight.detach().to(device=device, dtype=dtype)
    h = torch.zeros(w.shape[1] + 1, w.shape[0] + 1, device=device, dtype=dtype)
    h[:-1, :-1] = w.T
    if lin.bias is not None:
        h[-1, :-1] = lin.bias.detach().to(device=device, dtype=dtype)
    h[-1, -1] = 1.0
    return h


class _Opaque:
    """Homogeneous extension ``(x, c) -> c g(x / c)`` of a module or callable ``g``."""

    def __init__(self, fn: Callable, device, dtype):
        self.fn = fn
        self.params = None
        if isinstance(fn, nn.Module):
            # functional_call with cast copies: the user's module is never modified.
            # copy=True: ``.to`` returns the very tensor when nothing changes, and a module that
            # updates a buffer in place (running statistics) would then change the user's model.
            self.params = {
                k: (v.detach().to(device=device, dtype=dtype, copy=True) if v.is_floating_point()
                    else v.detach().to(device=device, copy=True))
                for k, v in [*fn.named_parameters(), *fn.named_buffers()]
            }

    def __call__(self, x: Tensor) -> Tensor:
        if self.params is not None:
            return torch.func.functional_call(self.fn, self.params, (x,))
        return self.fn(x)

    def hom(self, x: Tensor, c: Tensor) -> Tensor:
        return c * self(x / c)


class _Block:
    """One layer as a map between homogeneous node layers."""

    fast = False

    def __init__(self, ops: list, device, dtype):
        self.ops = ops  # ("linear", H) | ("act", module) | ("opaque", _Opaque)
        self.device, self.dtype = device, dtype

    def forward_hom(self, f: Tensor) -> Tensor:
        """``f`` of shape ``(..., d + 1)`` (constant slot last) to the next node layer."""
        for kind, op in self.ops:
            if kind == "linear":
                f = f @ op
            elif kind == "act":
                f = torch.cat([op(f[..., :-1].clone()), f[..., -1:]], dim=-1)
            else:
                c = f[..., -1:]
                f = torch.cat([op.hom(f[..., :-1], c), c], dim=-1)
        return f

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_hom(_hom(x))[..., :-1]


class _AffineAct(_Block):
    """``f ↦ σ̃(f P) Q`` with ``σ̃`` elementwise on all but the constant slot."""

    fast = True

    def __init__(self, ops, device, dtype):
        super().__init__(ops, device, dtype)
        mats_before, mats_after, act, seen = [], [], None, False
        for kind, op in ops:
            if kind == "act":
                act, seen = op, True
            else:
                (mats_after if seen else mats_before).append(op)
        self.act = act
        self.P = _chain(mats_before)
        self.Q = _chain(mats_after)

    def slopes(self, f: Tensor, alphas: Tensor, weights: Tensor) -> Tensor:
        """``Σ_q w_q σ̃'(α_q f P)``, shape ``(B, m + 1)``; the constant slot has slope 1."""
        z = f if self.P is None else f @ self.P
        if self.act is None:
            return torch.ones_like(z) * weights.sum()
        out = torch.zeros_like(z)
        for a, w in zip(alphas.tolist(), weights.tolist()):
            out[:, :-1] += w * _elementwise_derivative(self.act, a * z[:, :-1])
        out[:, -1] = weights.sum()
        return out

    def forward_with_slopes(self, f: Tensor) -> tuple[Tensor, Tensor]:
        """Next node layer and the slopes ``σ̃'(f P)`` (constant slot 1), one pass."""
        z = f if self.P is None else f @ self.P
        s = torch.ones_like(z)
        if self.act is not None:
            with torch.enable_grad():
                zz = z[:, :-1].detach().requires_grad_(True)
                y = self.act(zz * 1.0)  # non-leaf input so that in-place activations work
                (s[:, :-1],) = torch.autograd.grad(y.sum(), zz)
            z = torch.cat([y.detach(), z[:, -1:]], dim=-1)
        return (z if self.Q is None else z @ self.Q), s

    def mdash_finish(self, ss: Tensor, c_next: Tensor, n: int) -> Tensor:
        """``M' = P ((Q C)(Q C)ᵀ ⊙ Σ s̃ s̃ᵀ) Pᵀ / N``."""
        k = c_next if self.Q is None else self.Q @ c_next
        inner = (k @ k.T) * ss
        if self.P is not None:
            inner = self.P @ inner @ self.P.T
        return inner / n

    def jhat_blocks(self, f, c_in_pinv, c_next, alphas, weights):
        """Yield ``(rows, Ĵ)`` with ``Ĵ[b] = Σ_q w_q ∂f̂^{l+1}/∂f̂^l`` at ``α_q f_b``."""
        r = c_next if self.Q is None else self.Q @ c_next  # (m+1, k_out)
        lm = c_in_pinv if self.P is None else c_in_pinv @ self.P  # (k_in, m+1)
        s = self.slopes(f, alphas, weights)
        step = max(1, MAX_BLOCK // max(1, r.shape[1] * (r.shape[0] + lm.shape[0])))
        for i in range(0, f.shape[0], step):
            sb = s[i:i + step]
            yield slice(i, i + step), (r.T.unsqueeze(0) * sb.unsqueeze(1)) @ lm.T


class _Generic(_Block):
    """Any layer: per-sample Jacobians with ``torch.func``, chunked."""

    def _proj_jac(self, f: Tensor, c_next: Tensor) -> Tensor:
        """``∂(f^{l+1} C)/∂f`` per sample, shape ``(k, B, d + 1)``."""
        k = c_next.shape[1]
        _, vjp_fn = torch.func.vjp(self.forward_hom, f)
        cot = c_next.T.unsqueeze(1).expand(k, f.shape[0], c_next.shape[0])
        try:
            return torch.func.vmap(vjp_fn)(cot)[0]
        except (RuntimeError, NotImplementedError):  # ops without batching rules
            return torch.stack([vjp_fn(cot[i].contiguous())[0] for i in range(k)])

    def _step(self, n_out: int, d_in: int) -> int:
        return max(1, MAX_BLOCK // max(1, n_out * d_in))

    def mdash_batch(self, f: Tensor, c_next: Tensor) -> Tensor:
        """Batch sum ``Σ_x J_xᵀ C Cᵀ J_x``, shape ``(d + 1, d + 1)``."""
        out = torch.zeros(f.shape[1], f.shape[1], dtype=f.dtype, device=f.device)
        step = self._step(c_next.shape[1], f.shape[1])
        for i in range(0, f.shape[0], step):
            g = self._proj_jac(f[i:i + step], c_next).detach().reshape(-1, f.shape[1])
            out += g.T @ g
        return out

    def jhat_blocks(self, f, c_in_pinv, c_next, alphas, weights):
        step = self._step(c_next.shape[1], f.shape[1] + c_in_pinv.shape[0])
        for i in range(0, f.shape[0], step):
            fb = f[i:i + step]
            acc = 0.0
            for a, w in zip(alphas.tolist(), weights.tolist()):
                acc = acc + w * (self._proj_jac(a * fb, c_next) @ c_in_pinv.T)
            yield slice(i, i + step), acc.permute(1, 0, 2)


def _chain(mats: list[Tensor]) -> Tensor | None:
    if not mats:
        return None
    out = mats[0]
    for m in mats[1:]:
        out = out @ m
    return out


def _hom(x: Tensor) -> Tensor:
    return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)


def _elementwise_derivative(act: nn.Module, z: Tensor) -> Tensor:
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        y = act(zz * 1.0)  # non-leaf input so that in-place activations are allowed
        (g,) = torch.autograd.grad(y.sum(), zz)
    return g


def check_batch_independent(layers: Sequence[object]) -> None:
    """Refuse batch-statistics modules in training mode: per-sample maps are needed."""
    for i, layer in enumerate(layers):
        if not isinstance(layer, nn.Module):
            continue
        for m in layer.modules():
            if isinstance(m, _BATCH_STATS) and m.training:
                raise ValueError(
                    f"layers[{i}] contains {type(m).__name__} in training mode, whose output "
                    "depends on the whole batch (and would update its running statistics); "
                    "call model.eval() first"
                )


def make_block(layer: object, index: int, device, dtype) -> _Block:
    """Parse ``layers[index]`` into a block; raise ``TypeError`` if it is not callable."""
    if not callable(layer):
        raise TypeError(
            f"layers[{index}] must be an nn.Module or a callable, got {type(layer).__name__}"
        )
    ops = []
    for op in _flatten(layer):
        if isinstance(op, nn.Linear):
            ops.append(("linear", _homogeneous_linear(op, device, dtype)))
        elif isinstance(op, _NOOP):
            continue
        elif isinstance(op, _ELEMENTWISE):
            ops.append(("act", op))
        elif callable(op):
            ops.append(("opaque", _Opaque(op, device, dtype)))
        else:
            raise TypeError(f"layers[{index}] contains a non-callable {type(op).__name__}")
    kinds = [k for k, _ in ops]
    if "opaque" not in kinds and kinds.count("act") <= 1:
        return _AffineAct(ops, device, dtype)
    return _Generic(ops, device, dtype)


def check_chain(blocks: Sequence[_Block], x: Tensor) -> list[int]:
    """Run a few samples through the layers; return the node-layer widths."""
    widths = [x.shape[1]]
    for i, block in enumerate(blocks):
        try:
            y = block.forward(x)
        except (RuntimeError, ValueError, IndexError, TypeError) as err:
            raise ValueError(
                f"layers[{i}] cannot be applied to node layer {i} of shape "
                f"{tuple(x.shape)} (the layers' shapes do not chain): {err}"
            ) from err
        if not isinstance(y, Tensor) or y.ndim != 2 or y.shape[0] != x.shape[0]:
            shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(
                f"layers[{i}] must map (batch, features) to (batch, features'), got {shape}"
            )
        widths.append(y.shape[1])
        x = y
    return widths
