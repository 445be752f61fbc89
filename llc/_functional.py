"""The model as a pure function of one flat parameter vector, batched over chains.

Chain parameters are stored as one tensor of shape ``(chain, D)``; :class:`FlatModel` splits a
flat vector into views shaped like the model's parameters and calls the model through
:func:`torch.func.functional_call`. That call swaps tensors into the module's parameter tables
for the duration of a forward pass, so it is made on a private view of the module tree
(:func:`private_view`), never on the user's module: other threads, or an interrupt mid-pass,
never see or leave sampled tensors inside it. A parameter may be
sampled in part (a boolean mask over its entries): its other entries stay at w*.

Inputs are a tensor, or a dict of tensors passed to the model as keyword arguments (Hugging
Face's ``input_ids``/``attention_mask``). Outputs may be a tensor, a tuple (its first entry) or
an object with ``.logits`` (a Hugging Face ``ModelOutput``). Models that call torch's attention
run their vmapped passes inside :class:`llc._attention.ChainBatchedAttention`.
"""

from __future__ import annotations

import copy
import types
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.func import functional_call, vmap

from ._attention import ChainBatchedAttention
from ._data import LossFn, narrow, num_samples
from ._mlp import mlp_plan

__all__ = ["FlatModel", "private_view"]


@dataclass(frozen=True)
class FlatModel:
    """A model seen as ``f(w, x)`` with ``w`` a flat vector of the selected parameters.

    Attributes
    ----------
    names : tuple of str
        Names of the sampled parameters, in flattening order.
    shapes : tuple of torch.Size
    center : Tensor, shape (D,)
        The flattened reference parameters w*.
    frozen : dict
        Parameters not sampled and buffers, passed to the model unchanged (detached copies),
        and the w* values of the parameters sampled in part.
    entries : dict
        For a parameter sampled in part, the flat indices ``(k,)`` of its sampled entries.
    attention : bool
        Run the chain-batched passes inside :class:`ChainBatchedAttention`.
    """

    module: nn.Module
    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    center: torch.Tensor
    frozen: dict[str, torch.Tensor]
    entries: dict[str, torch.Tensor] = field(default_factory=dict)
    attention: bool = False

    @classmethod
    def from_module(
        cls,
        module: nn.Module,
        *,
        select: Callable[[str, torch.Tensor], bool] | None = None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> FlatModel:
        names, shapes, flat, frozen, entries = [], [], [], {}, {}
        for name, p in module.named_parameters():
            value = p.detach().to(device=device, dtype=dtype).clone()
            chosen = True if select is None else select(name, p)
            if isinstance(chosen, torch.Tensor):  # a mask over the entries
                idx = chosen.to(device).reshape(-1).nonzero().squeeze(1)
                names.append(name)
                shapes.append(value.shape)
                flat.append(value.reshape(-1)[idx])
                frozen[name], entries[name] = value, idx
            elif chosen:
                names.append(name)
                shapes.append(value.shape)
                flat.append(value.reshape(-1))
            else:
                frozen[name] = value
        for name, b in module.named_buffers():  # float buffers (BatchNorm statistics) in dtype
            b = b.detach().to(device=device, dtype=dtype if b.is_floating_point() else b.dtype)
            frozen[name] = b.clone()
        if not names:
            raise ValueError(
                "params selects no parameter of the model (check params=); the model has "
                f"{[n for n, _ in module.named_parameters()]}"
            )
        view = private_view(module)
        return cls(view, tuple(names), tuple(shapes), torch.cat(flat), frozen, entries)

    def with_attention(self, attention: bool) -> FlatModel:
        return replace(self, attention=attention)

    @property
    def dim(self) -> int:
        return int(self.center.numel())

    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of sampled entries of each parameter in :attr:`names`."""
        return tuple(
            int(self.entries[n].numel()) if n in self.entries else s.numel()
            for n, s in zip(self.names, self.shapes)
        )

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(flat, self.sizes)
        out = {}
        for n, p, s in zip(self.names, parts, self.shapes):
            if n in self.entries:  # w* everywhere but the sampled entries
                p = self.frozen[n].reshape(-1).scatter(0, self.entries[n], p)
            out[n] = p.view(s)
        return out

    def forward(self, flat: torch.Tensor, x) -> torch.Tensor:
        """``f_w(x)``: the model's output tensor (a tuple's first entry, or ``.logits``)."""
        args, kwargs = ((), x) if isinstance(x, dict) else ((x,), {})
        out = functional_call(self.module, {**self.frozen, **self.unflatten(flat)}, args, kwargs)
        return model_output(out)

    def _context(self):
        return ChainBatchedAttention() if self.attention else nullcontext()

    def per_sample_loss(self, flat: torch.Tensor, x, y: torch.Tensor, loss: LossFn) -> torch.Tensor:
        out = loss(self.forward(flat, x), y)
        m = num_samples(x)
        if not isinstance(out, torch.Tensor) or out.shape != (m,):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"loss must return one value per sample, shape ({m},), got {got}")
        return out

    @torch.no_grad()
    def losses_at(
        self,
        flat: torch.Tensor,
        x,
        y: torch.Tensor,
        loss: LossFn,
        chunk: int = 8192,
    ) -> torch.Tensor:
        """Per-sample losses at one parameter vector over the whole data, shape ``(n,)``."""
        return torch.cat(
            [
                self.per_sample_loss(flat, narrow(x, i, chunk), y[i : i + chunk], loss)
                for i in range(0, num_samples(x), chunk)
            ]
        )

    def batched_loss(self, loss: LossFn) -> Callable[..., torch.Tensor]:
        """``(W, X, Y) -> mean losses (C,)``, chains ``W: (C, D)``, batches ``X: (C, B, ...)``."""

        def mean_loss(flat, x, y):
            return self.per_sample_loss(flat, x, y, loss).mean()

        batched = vmap(mean_loss, in_dims=(0, 0, 0), randomness="different")
        return self._in_context(_loop_when_unbatchable(batched, mean_loss))

    def _in_context(self, fn: Callable) -> Callable:
        if not self.attention:
            return fn

        def wrapped(*args):
            with self._context():
                return fn(*args)

        return wrapped

    def batched_per_sample_loss(self, loss: LossFn) -> Callable[..., torch.Tensor]:
        """``(W, X, Y) -> per-sample losses (C, m)``, chains ``W: (C, D)``, shared ``X: (m, …)``."""

        def per_sample(flat, x, y):
            return self.per_sample_loss(flat, x, y, loss)

        return self._in_context(vmap(per_sample, in_dims=(0, None, None), randomness="different"))

    def batched_outputs_loss(self, fn: Callable) -> Callable[..., torch.Tensor]:
        """``(W, X, Y) -> fn(f_{W_c}(X), Y)`` per chain, ``X`` shared, of any output shape."""

        def one(flat, x, y):
            return fn(self.forward(flat, x), y)

        return self._in_context(vmap(one, in_dims=(0, None, None), randomness="different"))

    def per_sample_loss_fn(self, loss: LossFn, sequential: bool) -> Callable[..., torch.Tensor]:
        """:meth:`batched_per_sample_loss`, or the same one chain after another."""
        if not sequential:
            return self.batched_per_sample_loss(loss)
        return _one_chain_at_a_time(lambda w, x, y: self.per_sample_loss(w, x, y, loss))

    def outputs_loss_fn(self, fn: Callable, sequential: bool) -> Callable[..., torch.Tensor]:
        """:meth:`batched_outputs_loss`, or the same one chain after another."""
        if not sequential:
            return self.batched_outputs_loss(fn)
        return _one_chain_at_a_time(lambda w, x, y: fn(self.forward(w, x), y))

    def batched_value_and_grad(
        self, loss: LossFn, *, mlp_path: bool = True, plan=None
    ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """``(W, X, Y) -> (grads (C, D), mean losses (C,))``; ``plan``: the :meth:`mlp_plan`
        when the caller has it already.

        The forward pass is vectorised over chains with :func:`torch.func.vmap` and differentiated
        by one ordinary backward pass (chains share no parameters, so the gradient of the summed
        loss is each chain's own gradient); measured faster than vmapping ``torch.func.grad``.
        Plain MLPs (``nn.Sequential`` of ``nn.Linear`` and common activations) take the
        hand-written batched path of :mod:`llc._mlp` instead, unless ``mlp_path=False``.
        """
        if plan is None and mlp_path:
            plan = self.mlp_plan()
        if plan is not None:
            return plan.value_and_grad(loss)
        fwd = self.batched_loss(loss)

        def value_and_grad(w, x, y):
            w = w.detach().requires_grad_(True)
            with torch.enable_grad():
                values = fwd(w, x, y)
                (g,) = torch.autograd.grad(values.sum(), w)
            return g, values.detach()

        return value_and_grad

    def mlp_plan(self):
        """The hand-written batched path of :mod:`llc._mlp` for this model, or None."""
        return None if self.entries else mlp_plan(self.module, self.names, self.frozen)

    def sequential_value_and_grad(
        self, loss: LossFn
    ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """``(W, X, Y) -> (grads (C, D), mean losses (C,))``, one chain after another.

        Plain forward and backward passes without ``vmap``: torch's own kernels and layouts
        for every layer (fused attention included), at the cost of one pass per chain.
        """

        def value_and_grad(w, x, y):
            grads, values = [], []
            for c in range(w.shape[0]):
                wc = w[c].detach().requires_grad_(True)
                with torch.enable_grad():
                    value = self.per_sample_loss(wc, _chain(x, c), y[c], loss).mean()
                    (g,) = torch.autograd.grad(value, wc)
                grads.append(g)
                values.append(value.detach())
            return torch.stack(grads), torch.stack(values)

        return value_and_grad

    def batched_hvp(self, loss: LossFn) -> Callable[..., torch.Tensor]:
        """``(W, V, X, Y) -> H(W) V`` per chain, the Hessian of the batch-mean loss."""
        fwd = self.batched_loss(loss)

        def hvp(w, v, x, y):
            w = w.detach().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(fwd(w, x, y).sum(), w, create_graph=True)
                (hv,) = torch.autograd.grad((g * v).sum(), w)
            return hv

        return hvp


def private_view(module: nn.Module, memo: dict | None = None) -> nn.Module:
    """A copy of the module tree that shares every tensor but owns its tables.

    Each module is copied shallowly with its own ``_parameters``, ``_buffers`` and ``_modules``
    dicts (no tensor is copied: the view costs no memory), and methods bound to the original
    module (a patched ``forward``) are rebound to the copy. ``functional_call`` on the view
    swaps entries of the view's tables only, so the user's module is never changed, even
    transiently: several threads may sample one model at once. A module shared at two places
    (tied submodules) is copied once.
    """
    memo = {} if memo is None else memo
    if id(module) in memo:
        return memo[id(module)]
    view = copy.copy(module)
    memo[id(module)] = view
    view._parameters = dict(module._parameters)
    view._buffers = dict(module._buffers)
    view._modules = {
        k: None if m is None else private_view(m, memo) for k, m in module._modules.items()
    }
    for key, value in vars(module).items():
        if isinstance(value, types.MethodType) and value.__self__ is module:
            setattr(view, key, types.MethodType(value.__func__, view))
    return view


# vmap's messages for Python control flow on a batched tensor's values
_UNBATCHABLE = ("data-dependent control flow", ".item() on a Tensor")


def _loop_when_unbatchable(batched: Callable, one: Callable) -> Callable:
    """``batched`` (vmapped over chains), or a loop of ``one`` over chains from the first call
    on which vmap refuses the model's data-dependent control flow.

    Per-chain minibatches make a model's input-dependent Python branches batched: Hugging Face's
    check whether a padding mask is all ones (``masking_utils``) is one. Such a model is still
    sampled, chain after chain, at the cost of a sequential loop.
    """
    looping = False

    def call(w, x, y):
        nonlocal looping
        if not looping:
            try:
                return batched(w, x, y)
            except RuntimeError as e:
                if not any(m in str(e) for m in _UNBATCHABLE):
                    raise
                looping = True
                warnings.warn(
                    "the model's forward branches on its inputs' values, which vmap cannot "
                    "batch over chains (e.g. a Hugging Face padding-mask check); its chains run "
                    "one after another",
                    UserWarning,
                    stacklevel=2,
                )
        return torch.stack([one(w[c], _chain(x, c), y[c]) for c in range(w.shape[0])])

    return call


def _one_chain_at_a_time(one: Callable) -> Callable[..., torch.Tensor]:
    """``(W, X, Y) -> stack of one(W_c, X, Y)``: chains ``W: (C, D)``, ``X`` shared."""

    def call(w, x, y):
        return torch.stack([one(wc, x, y) for wc in w])

    return call


def _chain(x, c: int):
    return {k: v[c] for k, v in x.items()} if isinstance(x, dict) else x[c]


def model_output(out) -> torch.Tensor:
    """The output tensor of a model: ``out`` itself, ``out.logits``, or a tuple's first entry."""
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(
        "the model must return a tensor, a tuple whose first entry is a tensor, or an object "
        f"with a .logits tensor (a Hugging Face ModelOutput), got {type(out).__name__}"
    )


def chunked(
    fn: Callable[..., tuple[torch.Tensor, ...] | torch.Tensor],
    args: Sequence[torch.Tensor],
    chunk: int,
) -> tuple[torch.Tensor, ...] | torch.Tensor:
    """Apply a chain-batched function to chunks of at most ``chunk`` chains and concatenate."""
    c = args[0].shape[0]
    if chunk >= c:
        return fn(*args)
    outs = [fn(*(a[i : i + chunk] for a in args)) for i in range(0, c, chunk)]
    if isinstance(outs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outs))
    return torch.cat(outs)
