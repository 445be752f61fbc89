"""The potential: model, data and loss turned once into the functions every sampler needs.

>>> pot = llc.Potential(model, (inputs, targets), loss="mse")        # doctest: +SKIP
>>> losses, grads = pot.value_and_grad(w, pot.minibatch(idx))  # w: (chain, D); doctest: +SKIP

The estimator (:func:`llc.estimate_llc`), the curvature bounds (:mod:`llc.bounds`) and the
free-energy oracle of :mod:`theory.free_energy` (through :meth:`Potential.excess_loss`) all build
their objective here, so the loss table and the parameter selection exist once.

Dependencies run one way: ``llc`` imports :mod:`theory` (exact values and models to validate
against), and :mod:`theory` never imports ``llc``, so the ground truth cannot depend on the
estimator it checks.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from torch import nn

from ._attention import ATTENTION
from ._checks import (
    check_class_targets,
    check_finite_parameters,
    check_kl_outputs,
    check_norm_modes,
    probe_forward,
    resolve_device,
)
from ._data import (
    DIVERGENCES,
    LossFn,
    check_loss,
    narrow,
    num_samples,
    prepare_data,
    resolve_loss,
    take,
)
from ._execution import CONVOLUTIONS, default_way, mean_call_size, probe_calls
from ._functional import FlatModel, chunked
from ._precision import check_precision, precise
from ._precision import matmul_precision as precision_context
from ._randomness import forked_global_rng, global_rng_state, same_rng_state
from .language import next_token
from .symmetry import linear_links

__all__ = ["ExcessLoss", "Potential", "selected_parameters"]

REFERENCE_CHUNK = 8192  # samples per forward pass for the reference outputs and L_n(w*)


def _selector(params, model: nn.Module) -> Callable[[str, torch.Tensor], bool] | None:
    """Turn ``params=`` (names, a predicate, modules or parameters) into a name predicate."""
    if params is None:
        return None
    if isinstance(params, Mapping):
        return _mask_selector(params, model)
    if callable(params) and not isinstance(params, nn.Module):
        return lambda name, p: bool(params(name, p))
    if isinstance(params, str | nn.Module | nn.Parameter):
        params = [params]
    if not isinstance(params, Iterable):
        raise TypeError(
            "params must be parameter names, a predicate (name, param) -> bool, or modules"
        )
    wanted, ids = set(), {}
    for item in params:
        if isinstance(item, str):
            wanted.add(item)
        elif isinstance(item, nn.Module):
            what = f"a parameter of the {type(item).__name__} module given"
            ids.update((id(p), what) for p in item.parameters())
        elif isinstance(item, torch.Tensor):
            ids[id(item)] = f"a tensor of shape {tuple(item.shape)}"
        else:
            raise TypeError(
                f"params entries must be names, modules or parameters, got {type(item).__name__}"
            )

    def hit(n: str, name: str) -> bool:
        return name == n or name.startswith(n + ".")

    names = [name for name, _ in model.named_parameters()]
    own = {id(p) for p in model.parameters()}
    for key, what in ids.items():  # a module or tensor from another model selects nothing
        if key not in own:
            raise ValueError(f"params includes {what}, which is not a parameter of the model")

    for n in sorted(wanted):  # a misspelled name must not silently drop out of the selection
        if not any(hit(n, name) for name in names):
            close = difflib.get_close_matches(n, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"params names {n!r}, which matches no parameter of the model{hint} "
                f"(the model has {names})"
            )
    return lambda name, p: id(p) in ids or any(hit(n, name) for n in wanted)


def _mask_selector(params: Mapping, model: nn.Module):
    """``{name: mask}``: a boolean mask over a parameter's entries, or True for all of them."""
    named = dict(model.named_parameters())
    chosen = {}
    for name, mask in params.items():
        if name not in named:
            close = difflib.get_close_matches(str(name), list(named), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"params names {name!r}, which is not a parameter of the model{hint} "
                f"(the model has {list(named)})"
            )
        if mask is True:
            chosen[name] = True
            continue
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError(
                f"params[{name!r}] must be a boolean mask tensor or True, got "
                f"{getattr(mask, 'dtype', type(mask).__name__)}"
            )
        if mask.shape != named[name].shape:
            raise ValueError(
                f"params[{name!r}] must have the parameter's shape {tuple(named[name].shape)}, "
                f"got {tuple(mask.shape)}"
            )
        if not bool(mask.any()):
            raise ValueError(f"params[{name!r}] is a mask that selects no entry")
        chosen[name] = True if bool(mask.all()) else mask.detach().cpu()
    return lambda name, p: chosen.get(name, False)


def selected_parameters(model: nn.Module, params=None) -> list[tuple[str, nn.Parameter]]:
    """The ``(name, parameter)`` pairs that ``params=`` selects (all when None), in model order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    named = list(model.named_parameters())
    if not named:
        raise ValueError("model has no parameters")
    select = _selector(params, model)
    chosen = [(n, p) for n, p in named if select is None or _is_chosen(select(n, p))]
    if not chosen:
        raise ValueError(
            f"params selects no parameter of the model (check params=); the model has "
            f"{[n for n, _ in named]}"
        )
    return chosen


def _is_chosen(value) -> bool:
    return isinstance(value, torch.Tensor) or bool(value)


def _input_embedding(model: nn.Module) -> nn.Embedding | None:
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    if isinstance(emb, nn.Embedding):
        return emb
    return next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)


def _check_token_range(model: nn.Module, inputs) -> None:
    """Integer inputs of a model with an embedding must be ids the embedding has."""
    ids = inputs.get("input_ids") if isinstance(inputs, dict) else inputs
    emb = _input_embedding(model)
    if emb is None or not isinstance(ids, torch.Tensor) or ids.is_floating_point():
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= emb.num_embeddings:
        raise ValueError(
            f"data holds token ids from {low} to {high}, outside the range [0, "
            f"{emb.num_embeddings}) of the model's input embedding"
        )


class Potential:
    """``L_B(w)`` and its derivatives for stacked chains, built once from model, data and loss.

    Parameters
    ----------
    model : nn.Module
        The network at w*. It is called through :func:`torch.func.functional_call`; its
        parameters, buffers, ``requires_grad`` flags and train/eval mode are left untouched.
    data : (inputs, targets) tuple, TensorDataset, Dataset or DataLoader
        The n samples, read into memory once; inputs alone with ``loss="behavioral"``.
    loss : {"mse", "cross_entropy", "next_token", "behavioral"} or callable
        Per-sample loss ``ℓ(f_w(x), y)``. ``"mse"`` is ``½‖y − f(x)‖²`` summed over output
        dimensions, ``"cross_entropy"`` the classifier's negative log-likelihood,
        ``"next_token"`` a language model's mean next-token cross-entropy per sequence (data:
        token ids ``(n, seq)``, see :mod:`llc.language`); a callable maps ``(outputs, targets)``
        to per-sample losses of shape ``(batch,)``. ``"behavioral"`` is the ``divergence`` of
        ``f_w(x)`` from the reference outputs ``f_{w*}(x)``, computed once.
    params : optional
        The parameters to sample (names, a predicate ``(name, p) -> bool``, modules or parameter
        tensors), or a dict ``{name: mask}`` of boolean masks over entries (``True`` for a whole
        tensor; :func:`llc.masks.param_masks` builds them for heads, MLPs and embeddings); the
        rest stays frozen at w*. Default: all.
    divergence : {"mse", "kl"}
        With ``loss="behavioral"``: ``½‖f_w(x) − f_{w*}(x)‖²`` or
        ``KL(softmax f_{w*}(x) ‖ softmax f_w(x))``.
    device, dtype : optional
        Where and in what precision to evaluate (default: the model's).
    matmul_precision : {"highest", "high", "medium"}, optional
        torch's float32 matmul precision during every evaluation of this potential, the
        caller's restored after each (:mod:`llc._precision`); None leaves it alone.

    Attributes
    ----------
    center : Tensor, shape (D,)
        w*, the selected parameters flattened.
    names : tuple of str
        The selected parameters, in flattening order.
    inputs : Tensor or dict of Tensor
        The data on ``device``, shape ``(n, ...)``; a dict is passed as keyword arguments.
    targets : Tensor
        Shape ``(n, ...)``; the reference outputs for ``"behavioral"``.
    center_losses : Tensor, shape (n,)
        ``ℓ_i(w*)``, the control variate of every minibatch.
    loss_name : str
        ``"mse"``, ``"cross_entropy"``, ``"behavioral"`` or ``"callable"``.
    generic : bool
        The gradients go through ``vmap`` (False: the hand-written MLP path of :mod:`llc._mlp`).
    convolutional : bool
        The model calls a convolution (``torch.nn.functional.conv*``).
    attention : bool
        The model calls torch's attention (``F.scaled_dot_product_attention`` or
        ``F.multi_head_attention_forward``).
    links : tuple of llc.symmetry.Link
        Consecutive linear layers joined by the identity in a plain MLP (a deep linear
        network): the loss is constant along their orbits (:mod:`llc.symmetry`). Empty for
        other models.
    layers : tuple
        A plain MLP's layers (``weight`` and ``bias`` slices of the flat parameters, ``shape``,
        ``act``), for :mod:`llc.kernels.kron_sgld`. Empty for other models.

    Notes
    -----
    With ``ℓ_i(w) = ℓ(f_w(x_i), y_i)`` and a minibatch B, ``L_B(w) = (1/|B|) Σ_{i∈B} ℓ_i(w)``;
    ``L_n`` is the mean over all n samples. The sampled potential is
    ``U(w) = nβ L_B(w) + (γ/2)‖w − w*‖²``; the kernels add the localization term.

    The model's own random draws (dropout in train mode) come from torch's global RNG. The
    constructor (seeded at 0), :func:`llc.estimate_llc` (seeded from its ``seed``) and
    :meth:`excess_loss` evaluate inside :meth:`isolated_rng`, so that state is never advanced
    and the draws depend on the seed alone; a loop of one's own over :meth:`value_and_grad`
    should do the same. With such a model the result depends on ``chain_batch`` (the chunks
    draw their masks in turn).

    Models that call torch's scaled dot-product attention (``F.scaled_dot_product_attention``,
    ``nn.MultiheadAttention``, ``nn.Transformer*Layer``, Hugging Face models) are detected by
    one probing forward pass; their chain-batched passes compute attention as
    ``softmax(q kᵀ/√E + mask) v`` out of matmuls, whose batching rules fold the chain dimension
    into the attention's batch dimension. Torch's fused kernels have no such rule (a per-chain
    loop on CPU, a failing backward on CUDA). This is done by a torch-function mode entered
    around those passes only (:mod:`llc._attention`); torch's global SDPA settings are
    untouched.
    """

    def __init__(
        self,
        model: nn.Module,
        data,
        *,
        loss: str | LossFn = "mse",
        params=None,
        divergence: str = "mse",
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        matmul_precision: str | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_precision(matmul_precision)
        self.matmul_precision = matmul_precision
        first = next(iter(model.parameters()), None)
        if first is None:
            raise ValueError("model has no parameters")
        self.device = resolve_device(device, first.device)
        check_norm_modes(model)
        check_finite_parameters(model)
        dtype = dtype or (first.dtype if first.is_floating_point() else torch.float32)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype}")
        self.dtype = dtype
        self.behavioral = isinstance(loss, str) and loss == "behavioral"
        if not isinstance(divergence, str) or divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {sorted(DIVERGENCES)}, got {divergence!r}")
        if self.behavioral:
            self.loss_fn = DIVERGENCES[divergence]
        else:
            self.loss_fn = resolve_loss(loss)
        self.loss_name = loss if isinstance(loss, str) else "callable"
        self.divergence = divergence if self.behavioral else None
        tokens = self.loss_fn is next_token
        x, y = prepare_data(
            data,
            device=self.device,
            dtype=dtype,
            require_targets=not (self.behavioral or tokens),
            tokens=tokens,
        )
        _check_token_range(model, x)
        self._flat = FlatModel.from_module(
            model, select=_selector(params, model), device=self.device, dtype=dtype
        )
        self.inputs = x
        self.stochastic = True  # until the first passes show the model leaves the RNG alone
        with (
            torch.no_grad(),
            self.isolated_rng(0),  # seeded: dropout must not read global state
            precision_context(self.matmul_precision),
        ):
            before = global_rng_state(self.device)
            head = narrow(x, 0, 8)
            per_sample = isinstance(loss, str)  # the named losses take outputs (n, ...)
            out = probe_forward(
                self.forward, self.center, head, model, num_samples(head), per_sample
            )
            if self.behavioral:  # the reference outputs f_{w*}(x)
                if divergence == "kl":
                    check_kl_outputs(out)
                step = REFERENCE_CHUNK
                y = torch.cat(
                    [self.forward(self.center, narrow(x, i, step)) for i in range(0, self.n, step)]
                )
            if isinstance(loss, str) and loss == "cross_entropy":
                y = check_class_targets(out, y)
            self.targets = y
            check_loss(self.loss_fn, self.forward(self.center, head), y[:8])
            calls = probe_calls(self.forward, self.center, head)
            self.attention, self.convolutional = calls.called(ATTENTION), calls.called(CONVOLUTIONS)
            self._flat = self._flat.with_attention(self.attention)
            self.center_losses = self.losses(self.center)
            self.stochastic = not same_rng_state(before, global_rng_state(self.device))
        if not torch.isfinite(self.center_losses).all():
            raise ValueError("the loss at the model's current weights is not finite")
        plan = self._flat.mlp_plan()
        self.generic = plan is None
        # consecutive linear layers joined by the identity: orbits the loss is constant on
        self.links = () if plan is None else linear_links(plan.layers)
        self.layers = () if plan is None else plan.layers
        self._value_and_grad = self._flat.batched_value_and_grad(
            self.loss_fn, mlp_path=not self.generic, plan=plan
        )
        self._sequential = self._flat.sequential_value_and_grad(self.loss_fn)
        self._hvp = self._flat.batched_hvp(self.loss_fn)
        self._call_sizes: dict[int, float] = {}
        self._per_sample = {  # by way: one chain at a time or batched
            one: self._flat.per_sample_loss_fn(self.loss_fn, one) for one in (False, True)
        }

    # -- what it is ---------------------------------------------------------------------------
    @property
    def center(self) -> torch.Tensor:
        return self._flat.center

    @property
    def names(self) -> tuple[str, ...]:
        return self._flat.names

    @property
    def dim(self) -> int:
        return self._flat.dim

    @property
    def n(self) -> int:
        return num_samples(self.inputs)

    @property
    def center_loss_mean(self) -> float:
        """``L_n(w*)``."""
        return float(self.center_losses.double().mean())

    @property
    def flat_model(self) -> FlatModel:
        """The model as ``f(w, x)`` of one flat parameter vector (for curvature computations)."""
        return self._flat

    @contextmanager
    def isolated_rng(self, seed: int | None = None):
        """A context in which the model's own random draws (dropout in train mode) leave
        torch's global RNG untouched; with ``seed`` they are seeded from it inside, so that they
        depend on ``seed`` and not on the global state. One thread at a time holds it."""
        devices = [self.device] if self.device.type == "cuda" else []
        with forked_global_rng(devices):
            if seed is not None:
                torch.random.default_generator.manual_seed(seed)
                if self.device.type == "cuda":
                    with torch.cuda.device(self.device):
                        torch.cuda.manual_seed(seed)
            yield

    def model_rng(self, seed: int):
        """:meth:`isolated_rng` for a model that draws from torch's global RNG (dropout in train
        mode, seen in the constructor's passes); nothing for one that does not, so that
        estimates on deterministic models in several threads run side by side."""
        return self.isolated_rng(seed) if self.stochastic else nullcontext()

    # -- evaluations --------------------------------------------------------------------------
    @precise
    def forward(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``f_w(x)`` at one flat parameter vector ``w`` of shape (D,)."""
        return self._flat.forward(w, x)

    @torch.no_grad()
    @precise
    def losses(self, w: torch.Tensor, chunk: int = REFERENCE_CHUNK) -> torch.Tensor:
        """Per-sample losses ``ℓ_i(w)`` at one parameter vector over all n samples, shape (n,)."""
        return self._flat.losses_at(w, self.inputs, self.targets, self.loss_fn, chunk)

    def minibatch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-chain minibatches ``(X, Y)`` of shape ``(chain, batch, ...)`` for indices ``idx``."""
        return take(self.inputs, idx), take(self.targets, idx)

    def center_loss(self, idx: torch.Tensor) -> torch.Tensor:
        """``L_B(w*)`` for each chain's minibatch indices ``idx`` (chain, batch), shape (chain,)."""
        return self.center_losses[idx].mean(dim=1)

    @precise
    def value_and_grad(
        self,
        w: torch.Tensor,
        batch: tuple[torch.Tensor, torch.Tensor],
        chain_batch: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_B(w_c), ∇L_B(w_c))`` for chains ``w`` (chain, D): shapes (chain,), (chain, D).

        ``chain_batch`` chains at a time (default all); the result does not depend on it.
        """
        grads, losses = chunked(self._value_and_grad, (w, *batch), chain_batch or w.shape[0])
        return losses.detach(), grads.detach()

    @precise
    def sequential_value_and_grad(
        self, w: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`value_and_grad`, one chain after another without ``vmap`` (the same values
        up to float rounding)."""
        grads, losses = self._sequential(w, *batch)
        return losses.detach(), grads.detach()

    @precise
    def hvp(
        self,
        w: torch.Tensor,
        v: torch.Tensor,
        batch: tuple[torch.Tensor, torch.Tensor],
        chain_batch: int | None = None,
    ) -> torch.Tensor:
        """``∇²L_B(w_c) v_c`` per chain, shape (chain, D)."""
        return chunked(self._hvp, (w, v, *batch), chain_batch or w.shape[0]).detach()

    def call_size(self, batch_size: int) -> float:
        """The mean number of elements of the tensors that the forward pass's torch calls
        return, on the first ``batch_size`` samples (:func:`llc._execution.mean_call_size`)."""
        m = min(batch_size, self.n)
        if m not in self._call_sizes:
            with self.model_rng(0), precision_context(self.matmul_precision):
                head = narrow(self.inputs, 0, m)
                self._call_sizes[m] = mean_call_size(self.forward, self.center, head)
        return self._call_sizes[m]

    def _one_at_a_time(self, m: int) -> bool:
        """Whether probe losses on ``m`` samples are evaluated one chain at a time: the default
        way of :func:`llc._execution.default_way` at that size."""
        return default_way(self, m)[0] == "sequential"

    @torch.no_grad()
    @precise
    def per_sample_losses(
        self, w: torch.Tensor, inputs, targets: torch.Tensor, chunk: int = 4096
    ) -> torch.Tensor:
        """``ℓ(f_{w_c}(x_i), y_i)`` for chains ``w`` (chain, D) on shared samples (m, ...):
        shape (chain, m), evaluated ``chunk`` samples at a time."""
        fn = self._per_sample[self._one_at_a_time(min(chunk, targets.shape[0]))]
        parts = [
            fn(w, narrow(inputs, i, chunk), targets[i : i + chunk])
            for i in range(0, targets.shape[0], chunk)
        ]
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    @precise
    def per_token_losses(
        self, w: torch.Tensor, inputs, targets: torch.Tensor, chunk: int = 1024
    ) -> torch.Tensor:
        """Per-token losses for chains ``w`` (chain, D) on shared sequences: shape
        ``(chain, m, seq − 1)`` for ``loss="next_token"`` (ignored positions are 0)."""
        per_token = getattr(self.loss_fn, "per_token", None)
        if per_token is None:
            raise ValueError(
                f"per-token losses need loss='next_token' (a loss with .per_token), got "
                f"{self.loss_name!r}"
            )
        fn = self._flat.outputs_loss_fn(
            per_token, self._one_at_a_time(min(chunk, targets.shape[0]))
        )
        parts = [
            fn(w, narrow(inputs, i, chunk), targets[i : i + chunk])
            for i in range(0, targets.shape[0], chunk)
        ]
        return torch.cat(parts, dim=1)

    def excess_loss(self, chunk: int = 4096) -> ExcessLoss:
        """``K_n(w) = L_n(w) − L_n(w*)`` as a NumPy function of points ``(m, D) -> (m,)``, for
        the quadrature of :mod:`theory.free_energy` (evaluated in this potential's dtype)."""
        return ExcessLoss(self, chunk)


class ExcessLoss:
    """``K_n(w) = L_n(w) − L_n(w*)`` on NumPy points ``(m, D)``; ``center`` is w* as an array."""

    def __init__(self, potential: Potential, chunk: int):
        self._pot, self._chunk = potential, chunk
        self.center = potential.center.cpu().double().numpy()
        self.names = potential.names
        self.n = potential.n
        self._base = potential.center_losses.double().mean()

    @property
    def dim(self) -> int:
        return int(self.center.size)

    def __call__(self, w: np.ndarray) -> np.ndarray:
        pot = self._pot
        w_t = torch.as_tensor(np.asarray(w, dtype=np.float64), device=pot.device).to(pot.dtype)
        out = []
        with pot.isolated_rng():
            for i in range(0, w_t.shape[0], self._chunk):
                losses = pot.per_sample_losses(w_t[i : i + self._chunk], pot.inputs, pot.targets)
                out.append(losses.double().mean(1) - self._base)
        return torch.cat(out).cpu().numpy()
