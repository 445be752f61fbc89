"""dictionary_learning adapter: a trainer whose penalty and activation come from a prior.

:class:`PriorTrainer` follows the trainer protocol of ``dictionary_learning`` (Marks et al.):
``PriorTrainer(steps=..., activation_dim=..., dict_size=..., prior=..., seed=...)`` builds
``.ae``; ``update(step, activations)`` takes one optimiser step; ``loss(x, step, logging)``
returns the loss (or, with ``logging=True``, a ``LossLog(x, x_hat, f, losses)``);
``config`` is a JSON-serialisable dict.  It subclasses ``dictionary_learning``'s
``SAETrainer`` when that package imports, so it can be passed to its ``trainSAE`` as
``{"trainer": PriorTrainer, ...}``; otherwise it stands alone with the same methods.

The loss of a batch of ``N`` rows is

.. math::

    \\frac{1}{N}\\sum \\lVert x - \\hat x \\rVert^2 + w(\\text{step})\\,\\lambda\\,\\frac{1}{N}
    \\sum_{\\text{rows}} \\sum_i \\mathrm{pen}(a_i),\\qquad
    a_i = f_i \\lVert W_{dec,i} \\rVert \\text{ (decoder_norm) or } f_i,

with ``w`` a linear sparsity warm-up.  ``decoder_norm=True`` leaves the decoder free (the
Anthropic April-update recipe, gradient norm clipped to 1); ``decoder_norm=False`` keeps its
rows at unit norm after every step (the recipe of their ``StandardTrainer``).

``dictionary_learning`` is not a dependency: its PyPI release pins ``nnsight<0.4``, which pulls
another torch.  Nothing here imports it unless it is installed.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import torch
from torch import nn

from ._checks import as_penalty, check_activations, check_count, check_nonnegative, generator
from .activation import ProxActivation
from .sparsity import SparsityPenalty

try:  # their protocol's base class, when the package (and its nnsight) imports
    from dictionary_learning.trainers.trainer import SAETrainer as _TrainerBase
except ImportError:

    class _TrainerBase:
        """Stand-in for ``dictionary_learning.trainers.trainer.SAETrainer``."""

        def __init__(self, seed=None):
            self.seed = seed
            self.logging_parameters: list[str] = []

        def get_logging_parameters(self) -> dict[str, Any]:
            return {p: getattr(self, p) for p in self.logging_parameters if hasattr(self, p)}


__all__ = ["PriorAutoEncoder", "PriorTrainer"]

LossLog = namedtuple("LossLog", ["x", "x_hat", "f", "losses"])


class PriorAutoEncoder(nn.Module):
    """One-layer SAE in ``dictionary_learning``'s conventions, with any encoder activation.

    ``f = act((x − b_dec) W_enc + b_enc)``, ``x̂ = f W_dec + b_dec``; ``W_enc`` is
    ``(activation_dim, dict_size)`` and ``W_dec`` ``(dict_size, activation_dim)`` as in their
    ``JumpReluAutoEncoder``.  Initialised from a generator: unit decoder rows, ``W_enc = W_decᵀ``.
    """

    def __init__(
        self, activation_dim: int, dict_size: int, activation: nn.Module, *, seed: int = 0
    ):
        super().__init__()
        check_count("activation_dim", activation_dim)
        check_count("dict_size", dict_size)
        self.activation_dim, self.dict_size = activation_dim, dict_size
        w = torch.randn(dict_size, activation_dim, generator=generator(seed))
        w = w / w.norm(dim=1, keepdim=True)
        self.W_enc = nn.Parameter(w.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(dict_size))
        self.W_dec = nn.Parameter(w.clone())
        self.b_dec = nn.Parameter(torch.zeros(activation_dim))
        self.activation = activation

    def encode(self, x: torch.Tensor, output_pre: bool = False):
        """Latents ``f`` (and the pre-activations with ``output_pre=True``)."""
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        f = self.activation(pre)
        return (f, pre) if output_pre else f

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor, output_features: bool = False):
        """``x̂``, or ``(x̂, f)`` with ``output_features=True`` (their convention)."""
        f = self.encode(x)
        x_hat = self.decode(f)
        return (x_hat, f) if output_features else x_hat

    @torch.no_grad()
    def scale_biases(self, scale: float) -> None:
        """Rescale for inputs multiplied by ``scale`` (``trainSAE(normalize_activations=True)``).

        Exact for a ReLU; a prox activation ``prox_{t·pen}`` commutes with rescaling only for
        homogeneous penalties, so any ``scale != 1`` is refused for it.
        """
        if scale == 1:
            return
        if not isinstance(self.activation, nn.ReLU):
            raise ValueError(
                "scale: a prox activation does not commute with rescaling the inputs for a "
                "general penalty; normalise the activations before training instead of "
                "trainSAE(normalize_activations=True)"
            )
        self.b_enc.mul_(scale)
        self.b_dec.mul_(scale)


def _decoder_rows(ae: nn.Module, dict_size: int, activation_dim: int) -> torch.Tensor | None:
    """Decoder rows ``(dict_size, activation_dim)`` of a dictionary, or None if it has none.

    ``W_dec`` of that shape (SAELens, their ``JumpReluAutoEncoder``) or an ``nn.Linear``
    ``decoder`` (their ``AutoEncoder``, weight ``(activation_dim, dict_size)``).
    """
    w = getattr(ae, "W_dec", None)
    if isinstance(w, torch.Tensor) and tuple(w.shape) == (dict_size, activation_dim):
        return w
    dec = getattr(ae, "decoder", None)
    w = getattr(dec, "weight", None)
    if isinstance(w, torch.Tensor) and tuple(w.shape) == (activation_dim, dict_size):
        return w.T
    return None


class PriorTrainer(_TrainerBase):
    """``dictionary_learning``-protocol trainer with a penalty derived from a prior.

    Parameters
    ----------
    steps, activation_dim, dict_size : int
        Training steps (for the schedules), activation and dictionary sizes.
    layer, lm_name : optional
        Recorded in ``config`` (their trainers require them; here they are optional).
    dict_class : type, optional
        Default :class:`PriorAutoEncoder` with the activation below.  Another dictionary class
        (called as ``dict_class(activation_dim, dict_size)``, e.g. their ``AutoEncoder``) keeps
        its own encoder, ``activation`` must then be None, and only the penalty is derived.
    prior : priors.Prior, priors.Penalty or priors.FitReport
    params : dict, optional
        Values for the prior's free parameters.
    coefficient : float
        λ.
    decoder_norm : bool
        Penalise ``f_i·‖W_dec,i‖`` (decoder free) or ``f_i`` (decoder rows kept at unit norm).
    activation : {"prox", "relu"} or None
        Encoder nonlinearity of the default dictionary (None: ``"prox"``).
    t, threshold, learn, nonnegative, bandwidth
        Passed to :class:`priors.sae.ProxActivation` for ``activation="prox"``: initial
        penalty weight (or dead-zone threshold), whether it trains, the restriction to
        ``f ≥ 0`` and the pseudo-derivative's kernel width.
    lr : float
        Adam's learning rate.
    warmup_steps : int
        Linear learning-rate warm-up.
    sparsity_warmup_steps : int, optional
        Linear warm-up of λ from 0.
    seed : int
        Initialises the dictionary inside ``torch.random.fork_rng`` (the caller's global RNG
        state is unchanged; their trainers reseed it instead).
    device : str
    wandb_name, submodule_name : str, optional
        Recorded in ``config``.

    Raises
    ------
    TypeError, ValueError
        A bad prior (improper, unbound parameters), ``decoder_norm=True`` for a dictionary
        without decoder weights, counts or rates out of range; in :meth:`update`,
        activations that are not finite.
    FloatingPointError
        The loss became non-finite.
    """

    def __init__(
        self,
        steps: int,
        activation_dim: int,
        dict_size: int,
        layer: int | None = None,
        lm_name: str | None = None,
        dict_class: type | None = None,
        *,
        prior: Any,
        params: dict | None = None,
        coefficient: float = 1.0,
        decoder_norm: bool = True,
        activation: str | None = None,
        t: float = 1.0,
        threshold: float | None = None,
        learn: bool = True,
        nonnegative: bool = True,
        bandwidth: float = 0.05,
        lr: float = 1e-3,
        warmup_steps: int = 0,
        sparsity_warmup_steps: int | None = None,
        seed: int = 0,
        device: str = "cpu",
        wandb_name: str = "PriorTrainer",
        submodule_name: str | None = None,
    ):
        super().__init__(seed)
        check_count("steps", steps)
        check_nonnegative("lr", lr, strict=True)
        for name, value in (
            ("warmup_steps", warmup_steps),
            ("sparsity_warmup_steps", sparsity_warmup_steps or 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        pen = as_penalty(prior, params)
        check_nonnegative("coefficient", coefficient)
        # λ kept apart so that losses["sparsity_loss"] is the bare penalty, as in their trainers
        self.sparsity = SparsityPenalty(pen, decoder_norm=decoder_norm)
        self.coefficient = float(coefficient)
        self.steps, self.lr, self.device = steps, float(lr), device
        self.layer, self.lm_name = layer, lm_name
        self.wandb_name, self.submodule_name = wandb_name, submodule_name
        self.warmup_steps, self.sparsity_warmup_steps = warmup_steps, sparsity_warmup_steps
        self.activation = activation
        self._act_args = {
            "t": t,
            "threshold": threshold,
            "learn": learn,
            "nonnegative": nonnegative,
            "bandwidth": bandwidth,
        }
        self.ae = self._build_dictionary(dict_class, activation_dim, dict_size, pen, seed)
        self.ae.to(device)
        self._dims = (dict_size, activation_dim)
        if decoder_norm and self._decoder() is None:
            raise ValueError(
                f"decoder_norm=True needs decoder weights, but {type(self.ae).__name__} has "
                "neither W_dec of shape (dict_size, activation_dim) nor an nn.Linear decoder; "
                "pass decoder_norm=False"
            )
        self.optimizer = torch.optim.Adam(self.ae.parameters(), lr=self.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warmup_steps) if warmup_steps else 1.0
        )
        self.logging_parameters = ["effective_coefficient"]
        self.effective_coefficient = self._sparsity_scale(0) * self.coefficient

    def _build_dictionary(self, dict_class, activation_dim, dict_size, pen, seed) -> nn.Module:
        check_count("activation_dim", activation_dim)
        check_count("dict_size", dict_size)
        if dict_class is not None:
            if self.activation is not None:
                raise ValueError(
                    f"activation must be None with a dict_class (it keeps its own encoder), "
                    f"got {self.activation!r}"
                )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return dict_class(activation_dim, dict_size)
        self.activation = "prox" if self.activation is None else self.activation
        if self.activation == "relu":
            act = nn.ReLU()
        elif self.activation == "prox":
            if dict_size % pen.dim:
                raise ValueError(
                    f"dict_size ({dict_size}) must be a multiple of the prior's dimension "
                    f"k = {pen.dim}"
                )
            act = ProxActivation(pen, dict_size, **self._act_args)
        else:
            raise ValueError(f"activation must be 'prox', 'relu' or None, got {self.activation!r}")
        return PriorAutoEncoder(activation_dim, dict_size, act, seed=seed)

    def _decoder(self) -> torch.Tensor | None:
        return _decoder_rows(self.ae, *self._dims)

    def _sparsity_scale(self, step: int | None) -> float:
        if step is None or not self.sparsity_warmup_steps:
            return 1.0
        return min(1.0, step / self.sparsity_warmup_steps)

    def loss(self, x: torch.Tensor, step: int | None = None, logging: bool = False, **_: Any):
        """Reconstruction plus warmed-up penalty on a batch ``x`` (see the module docstring)."""
        x = check_activations(x, "activations").to(self.device)
        W_dec = self._decoder() if self.sparsity.decoder_norm else None
        act = getattr(self.ae, "activation", None)
        if getattr(act, "has_jump", False) and hasattr(self.ae, "encode"):
            # the penalty's jump at the threshold trains it too (SAELens' Step for L0)
            f, pre = self.ae.encode(x, output_pre=True)
            x_hat = self.ae.decode(f)
            sparsity = self.sparsity(f, W_dec, hidden_pre=pre, activation=act)
        else:
            x_hat, f = self.ae(x, output_features=True)
            sparsity = self.sparsity(f, W_dec)
        recon = (x - x_hat).pow(2).sum(dim=-1).mean()
        scale = self._sparsity_scale(step)
        loss = recon + scale * self.coefficient * sparsity
        if not logging:
            return loss
        with torch.no_grad():
            losses = {
                "l2_loss": float(torch.linalg.norm(x - x_hat, dim=-1).mean()),
                "mse_loss": float(recon),
                "sparsity_loss": float(sparsity),
                "loss": float(loss),
            }
        return LossLog(x, x_hat, f, losses)

    def update(self, step: int, activations: torch.Tensor) -> float:
        """One Adam step on ``activations`` (batch, activation_dim); returns the loss."""
        loss = self.loss(activations, step=step)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the SAE loss became {float(loss)} at step {step}: lower lr or the coefficient"
            )
        self.optimizer.zero_grad()
        loss.backward()
        if self.sparsity.decoder_norm:
            torch.nn.utils.clip_grad_norm_(self.ae.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        rows = self._decoder()
        if not self.sparsity.decoder_norm and rows is not None:
            with torch.no_grad():
                rows.div_(rows.norm(dim=1, keepdim=True).clamp_min(1e-8))
        self.effective_coefficient = self._sparsity_scale(step + 1) * self.coefficient
        return float(loss.detach())

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings (``trainSAE`` writes them next to the weights)."""
        return {
            "trainer_class": "PriorTrainer",
            "dict_class": type(self.ae).__name__,
            "activation_dim": self.ae.activation_dim
            if hasattr(self.ae, "activation_dim")
            else None,
            "dict_size": self.ae.dict_size if hasattr(self.ae, "dict_size") else None,
            "penalty": str(self.sparsity.penalty.expr),
            "coefficient": self.coefficient,
            "decoder_norm": self.sparsity.decoder_norm,
            "activation": self.activation,
            **{k: v for k, v in self._act_args.items()},
            "lr": self.lr,
            "warmup_steps": self.warmup_steps,
            "sparsity_warmup_steps": self.sparsity_warmup_steps,
            "steps": self.steps,
            "seed": self.seed,
            "device": str(self.device),
            "layer": self.layer,
            "lm_name": self.lm_name,
            "wandb_name": self.wandb_name,
            "submodule_name": self.submodule_name,
        }
