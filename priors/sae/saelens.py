"""SAELens adapter: an SAE whose sparsity penalty and encoder activation come from a prior.

:class:`PriorTrainingSAE` is a SAELens ``TrainingSAE`` (architecture ``"prior"``) whose loss is

.. math::

    \\lVert x - \\hat x \\rVert^2 + \\lambda_{\\text{step}} \\cdot \\frac{1}{N}\\sum_{\\text{rows}}
    \\sum_i \\mathrm{pen}\\big(f_i \\lVert W_{dec,i} \\rVert\\big),
    \\qquad f = \\mathrm{prox}_{t\\,\\mathrm{pen}}\\big((x - b_{dec}) W_{enc} + b_{enc}\\big),

with ``pen = −log p`` of the prior (:class:`priors.sae.SparsityPenalty`), λ scheduled by
SAELens' coefficient warm-up (key ``"prior"``), and the encoder nonlinearity the proximal
operator of the penalty (:class:`priors.sae.ProxActivation`) or a ReLU.  For the Laplace prior
with ``b = 1`` and a ReLU this is SAELens' ``StandardTrainingSAE`` (L1 weighted by decoder
norms); for an L0 penalty the prox activation is SAELens' JumpReLU with threshold
``θ = sqrt(2t)``.

:func:`train_saelens` trains any SAELens ``TrainingSAE`` on an in-memory activation tensor
through SAELens' own ``SAETrainer`` (no wandb, nothing written to disk).

Importing this module imports SAELens (a few seconds), so ``import priors.sae`` does not.

>>> import torch, priors
>>> from priors.sae.saelens import PriorTrainingSAEConfig, build_training_sae, train_saelens
>>> cfg = PriorTrainingSAEConfig(d_in=8, d_sae=16, prior=priors.get("laplace", b=1),
...                              coefficient=1e-2)
>>> sae = build_training_sae(cfg, seed=0)
>>> sae, log = train_saelens(sae, torch.randn(256, 8), steps=5, batch_size=32, lr=1e-3,
...                          seed=0, progress=False)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

try:
    from sae_lens import SAE, SAEConfig, TrainingSAE, TrainingSAEConfig
    from sae_lens import registry as _registry
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.sae import TrainCoefficientConfig, TrainStepInput
    from sae_lens.training.sae_trainer import SAETrainer
except ImportError as _err:  # pragma: no cover - only without the extra
    raise ImportError(
        'priors.sae.saelens needs SAELens; install it with pip install "slt-interp[sae]"'
    ) from _err

from ._checks import as_penalty, check_activations, check_count, check_nonnegative, generator
from .activation import ProxActivation
from .sparsity import SparsityPenalty

__all__ = [
    "PriorSAE",
    "PriorSAEConfig",
    "PriorTrainingSAE",
    "PriorTrainingSAEConfig",
    "build_training_sae",
    "train_saelens",
]

ARCHITECTURE = "prior"
_ACTIVATIONS = ("prox", "relu")


@dataclass(kw_only=True)
class _PriorFields:
    """Fields shared by the inference and training configs (SAELens copies them across)."""

    prior: Any = None
    params: dict | None = None
    activation: str = "prox"
    t: float = 1.0
    threshold: float | None = None
    learn: bool = True
    nonnegative: bool = True
    bandwidth: float = 0.05

    def _check_prior_fields(self) -> None:
        if self.prior is None:
            raise TypeError(
                "prior: expected a priors.Prior, priors.Penalty or fit report, got None"
            )
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {self.activation!r}")

    def _to_dict(self, base_to_dict) -> dict[str, Any]:
        # SAELens' to_dict runs dataclasses.asdict, which recurses into a Prior (itself a
        # dataclass, possibly self-referencing); the saved config records a description.
        prior = self.prior
        self.prior = _describe(prior)
        try:
            return base_to_dict()
        finally:
            self.prior = prior


def _describe(prior: Any) -> str:
    expr = getattr(prior, "expr", None)
    name = getattr(prior, "name", None)
    return str(name) if name else str(expr) if expr is not None else type(prior).__name__


@dataclass(kw_only=True)
class PriorSAEConfig(SAEConfig, _PriorFields):
    """Inference config of :class:`PriorSAE` (architecture ``"prior"``).

    The prior is a Python object, so a saved config can only be loaded back in a session
    that passes the same prior; the weights (including ``activation_fn.log_t``) load as usual.
    """

    def __post_init__(self):
        self._check_prior_fields()
        super().__post_init__()

    def to_dict(self) -> dict[str, Any]:
        """SAELens' config dict, with the prior recorded by its name (not reloadable)."""
        return self._to_dict(super().to_dict)

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE


@dataclass(kw_only=True)
class PriorTrainingSAEConfig(TrainingSAEConfig, _PriorFields):
    """Training config of :class:`PriorTrainingSAE`.

    Parameters
    ----------
    d_in, d_sae : int
        Activation and dictionary sizes (SAELens' ``SAEConfig`` fields; the others keep
        SAELens' defaults, e.g. ``decoder_init_norm=0.1``, ``apply_b_dec_to_input=True``).
        With ``activation="prox"`` pass ``decoder_init_norm=1.0`` (or None): the prox acts on
        ``f`` while a decoder-norm penalty sees ``f·‖W_dec‖``, and from SAELens' small decoder
        every latent can start below the threshold and stay dead (measured on real
        activations in ``bench/priors_sae_real.py``).
    prior : priors.Prior, priors.Penalty or priors.FitReport
        The prior (catalog, fitted, joint or user density) or a penalty written directly.
    params : dict, optional
        Values for the prior's free parameters.
    coefficient : float
        λ, the weight of the penalty; SAELens warms it up from 0 over
        ``coefficient_warm_up_steps`` (its ``"prior"`` coefficient).
    coefficient_warm_up_steps : int
    decoder_norm : bool
        Penalise ``f_i·‖W_dec,i‖`` (default, as SAELens' L1) instead of ``f_i``.
    activation : {"prox", "relu"}
        Encoder nonlinearity: ``prox_{t·pen}`` of the penalty (:class:`ProxActivation`) or ReLU.
    t, threshold, learn, nonnegative, bandwidth
        Passed to :class:`priors.sae.ProxActivation` (``activation="prox"`` only): the initial
        penalty weight ``t`` of the prox (or, for a prox with a dead zone, its initial
        threshold), whether it trains (per latent), the restriction to ``f ≥ 0``, and the
        width of the rectangle kernel of the pseudo-derivative at the prox's jumps.
    """

    coefficient: float = 1.0
    coefficient_warm_up_steps: int = 0
    decoder_norm: bool = True

    def __post_init__(self):
        self._check_prior_fields()
        check_nonnegative("coefficient", self.coefficient)
        if (
            isinstance(self.coefficient_warm_up_steps, bool)
            or not isinstance(self.coefficient_warm_up_steps, int)
            or self.coefficient_warm_up_steps < 0
        ):
            raise ValueError(
                "coefficient_warm_up_steps must be an integer >= 0, got "
                f"{self.coefficient_warm_up_steps!r}"
            )
        if not isinstance(self.decoder_norm, bool):
            raise TypeError(f"decoder_norm must be a bool, got {type(self.decoder_norm).__name__}")
        super().__post_init__()

    def to_dict(self) -> dict[str, Any]:
        """SAELens' config dict, with the prior recorded by its name (not reloadable)."""
        return self._to_dict(super().to_dict)

    def get_inference_sae_cfg_dict(self) -> dict[str, Any]:
        """The inference config dict SAELens saves, with the prior recorded by its name."""
        return self._to_dict(super().get_inference_sae_cfg_dict)

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE


def _activation_and_penalty(cfg: _PriorFields, d_sae: int) -> tuple[nn.Module, Any]:
    pen = as_penalty(cfg.prior, cfg.params)
    if d_sae % pen.dim:
        raise ValueError(
            f"d_sae ({d_sae}) must be a multiple of the prior's dimension k = {pen.dim}"
        )
    if cfg.activation == "relu":
        return nn.ReLU(), pen
    act = ProxActivation(
        pen,
        d_sae,
        t=cfg.t,
        threshold=cfg.threshold,
        learn=cfg.learn,
        nonnegative=cfg.nonnegative,
        bandwidth=cfg.bandwidth,
    )
    return act, pen


class _PriorEncoder:
    """What the inference and the training SAE share: the activation from the prior and a
    zero-initialised encoder bias."""

    def get_activation_fn(self) -> nn.Module:
        act, self._penalty = _activation_and_penalty(self.cfg, self.cfg.d_sae)
        return act

    def initialize_weights(self) -> None:
        super().initialize_weights()
        self.b_enc = nn.Parameter(torch.zeros(self.cfg.d_sae, dtype=self.dtype, device=self.device))


class PriorSAE(_PriorEncoder, SAE[PriorSAEConfig]):
    """Inference SAE with a prox (or ReLU) encoder activation from a prior."""

    b_enc: nn.Parameter

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        sae_in = self.process_sae_in(x)
        hidden_pre = self.hook_sae_acts_pre(sae_in @ self.W_enc + self.b_enc)
        return self.hook_sae_acts_post(self.activation_fn(hidden_pre))

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        sae_out = self.hook_sae_recons(feature_acts @ self.W_dec + self.b_dec)
        sae_out = self.run_time_activation_norm_fn_out(sae_out)
        return self.reshape_fn_out(sae_out, self.d_head)


class PriorTrainingSAE(_PriorEncoder, TrainingSAE[PriorTrainingSAEConfig]):
    """SAELens training SAE with a penalty (and activation) derived from a prior.

    ``calculate_aux_loss`` returns ``{"prior_loss": λ_step · SparsityPenalty(f, W_dec)}``; the
    penalty module is ``self.sparsity`` (coefficient 1; λ comes from SAELens' scheduler).

    Raises
    ------
    TypeError, ValueError
        From the config or the prior: an improper prior, unbound free parameters, ``d_sae`` not
        a multiple of a joint prior's dimension.
    """

    b_enc: nn.Parameter

    def __init__(self, cfg: PriorTrainingSAEConfig, use_error_term: bool = False):
        if not isinstance(cfg, TrainingSAEConfig) or cfg.architecture() != ARCHITECTURE:
            raise TypeError(f"cfg must be a PriorTrainingSAEConfig, got {type(cfg).__name__}")
        super().__init__(cfg, use_error_term)
        self.sparsity = SparsityPenalty(self._penalty, decoder_norm=cfg.decoder_norm)

    def get_coefficients(self) -> dict[str, float | TrainCoefficientConfig]:
        return {
            ARCHITECTURE: TrainCoefficientConfig(
                value=self.cfg.coefficient, warm_up_steps=self.cfg.coefficient_warm_up_steps
            )
        }

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sae_in = self.process_sae_in(x)
        hidden_pre = self.hook_sae_acts_pre(sae_in @ self.W_enc + self.b_enc)
        return self.hook_sae_acts_post(self.activation_fn(hidden_pre)), hidden_pre

    def prior_loss(
        self, feature_acts: torch.Tensor, coefficient: float, hidden_pre: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``coefficient · SparsityPenalty(feature_acts, W_dec)`` (W_dec only with decoder_norm).

        With ``hidden_pre`` and a prox activation that jumps at its threshold, the penalty's
        jump also trains the threshold (SAELens' ``Step`` for L0).
        """
        W_dec = self.W_dec if self.cfg.decoder_norm else None
        act = self.activation_fn
        if hidden_pre is not None and getattr(act, "has_jump", False):
            return coefficient * self.sparsity(
                feature_acts, W_dec, hidden_pre=hidden_pre, activation=act
            )
        return coefficient * self.sparsity(feature_acts, W_dec)

    def calculate_aux_loss(
        self,
        step_input: TrainStepInput,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        sae_out: torch.Tensor,  # noqa: ARG002 - SAELens' signature
    ) -> dict[str, torch.Tensor]:
        coefficient = step_input.coefficients[ARCHITECTURE]
        return {"prior_loss": self.prior_loss(feature_acts, coefficient, hidden_pre)}


def _register(architecture: str, cls: type, cfg_cls: type, table: dict, register) -> None:
    """Register once; on a re-import of this module, replace our own earlier entry."""
    old = table.get(architecture)
    if old is None:
        register(architecture, cls, cfg_cls)
    elif old[0].__module__ == cls.__module__ and old[0].__qualname__ == cls.__qualname__:
        table[architecture] = (cls, cfg_cls)
    else:
        raise ImportError(
            f"SAELens architecture {architecture!r} is already registered by "
            f"{old[0].__module__}.{old[0].__qualname__}"
        )


_register(
    ARCHITECTURE,
    PriorSAE,
    PriorSAEConfig,
    _registry.SAE_CLASS_REGISTRY,
    _registry.register_sae_class,
)
_register(
    ARCHITECTURE,
    PriorTrainingSAE,
    PriorTrainingSAEConfig,
    _registry.SAE_TRAINING_CLASS_REGISTRY,
    _registry.register_sae_training_class,
)


def build_training_sae(cfg: TrainingSAEConfig, *, seed: int = 0) -> TrainingSAE:
    """The SAELens training SAE of ``cfg``'s architecture, initialised from ``seed``.

    SAELens initialises weights from torch's global RNG; this draws them inside
    ``torch.random.fork_rng`` seeded with ``seed``, so the caller's RNG state is unchanged.

    Parameters
    ----------
    cfg : sae_lens.TrainingSAEConfig
        Any registered architecture (``StandardTrainingSAEConfig``, ``TopKTrainingSAEConfig``,
        ``JumpReLUTrainingSAEConfig``, :class:`PriorTrainingSAEConfig`, ...).
    seed : int

    Returns
    -------
    sae_lens.TrainingSAE
    """
    if not isinstance(cfg, TrainingSAEConfig):
        raise TypeError(f"cfg must be a sae_lens TrainingSAEConfig, got {type(cfg).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    cls = _registry.get_sae_training_class(cfg.architecture())[0]
    with torch.random.fork_rng(devices=_cuda_devices(cfg.device)):
        torch.manual_seed(seed)
        return cls(cfg)


def _cuda_devices(device: Any) -> list:
    device = torch.device(device)
    return [device] if device.type == "cuda" else []


def _batches(x: torch.Tensor, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Minibatches drawn without replacement within each pass over ``x`` (then reshuffled)."""
    while True:
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x) - batch_size + 1, batch_size):
            yield x[order[start : start + batch_size].to(x.device)]


def train_saelens(
    sae: TrainingSAE,
    activations: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float = 3e-4,
    seed: int | torch.Generator = 0,
    progress: bool = True,
) -> tuple[TrainingSAE, dict[str, list[float]]]:
    """Train a SAELens ``TrainingSAE`` on in-memory activations with SAELens' ``SAETrainer``.

    Parameters
    ----------
    sae : sae_lens.TrainingSAE
        Any architecture (:class:`PriorTrainingSAE`, ``StandardTrainingSAE``, ...); trained in
        place.
    activations : Tensor (n, d_in)
        Finite floating-point activations, ``n >= batch_size``.
    steps, batch_size : int
        Optimiser steps and rows per step.
    lr : float
        Adam's learning rate (SAELens' trainer: constant schedule, gradient norm clipped to 1).
    seed : int or torch.Generator
        Draws the minibatches (shuffled passes over ``activations``); torch's global RNG is
        neither used nor changed.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    sae : sae_lens.TrainingSAE
        The same object, trained; its train/eval mode is restored.
    log : dict of list of float
        Per step: ``"loss"`` (total) and every loss SAELens reports (``"mse_loss"``, and
        ``"prior_loss"``, ``"l1_loss"``, ``"l0_loss"``... by architecture).

    Raises
    ------
    TypeError, ValueError
        ``sae`` not a SAELens TrainingSAE; ``activations`` not a finite floating-point
        ``(n, sae.cfg.d_in)`` tensor with ``n >= batch_size``; counts or ``lr`` out of range.
    FloatingPointError
        The loss became non-finite (the step is named).

    Notes
    -----
    Runs SAELens' ``SAETrainer.step`` (its public per-step seam, the one ``fit`` uses) so the
    losses can be logged; with no checkpoints and wandb off nothing is written to disk.
    """
    if not isinstance(sae, TrainingSAE):
        raise TypeError(f"sae must be a sae_lens TrainingSAE, got {type(sae).__name__}")
    x = _check_inputs(activations, sae.cfg.d_in, steps, batch_size, lr)
    gen = generator(seed)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * batch_size,
        train_batch_size_samples=batch_size,
        lr=float(lr),
        lr_end=float(lr),  # SAELens' config leaves it to its runner; constant schedule
        device=str(sae.device),
        logger=LoggingConfig(log_to_wandb=False),
    )
    data = _batches(x, batch_size, gen)
    was_training = sae.training
    log: dict[str, list[float]] = {"loss": []}
    with torch.random.fork_rng(devices=_cuda_devices(sae.device)):
        trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=data)
        loop = range(steps)
        if progress:
            from tqdm.auto import tqdm

            loop = tqdm(loop, desc="SAE (SAELens)")
        for step in loop:
            trainer.maybe_reset_sparsity()
            out = trainer.step(next(data))
            trainer.n_training_steps += 1
            loss = float(out.loss.detach())
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"the SAE loss became {loss} at step {step}: lower lr or the coefficient"
                )
            log["loss"].append(loss)
            for name, value in out.losses.items():
                log.setdefault(name, []).append(float(value.detach()))
        trainer.set_final_sae_metadata()
    sae.train(was_training)
    return sae, log


def _check_inputs(activations, d_in, steps, batch_size, lr) -> torch.Tensor:
    x = check_activations(activations, "activations")
    if x.ndim != 2 or x.shape[1] != d_in:
        raise ValueError(f"activations must have shape (n, {d_in}), got {tuple(x.shape)}")
    check_count("steps", steps)
    check_count("batch_size", batch_size)
    if len(x) < batch_size:
        raise ValueError(f"batch_size ({batch_size}) exceeds the number of activations ({len(x)})")
    check_nonnegative("lr", lr, strict=True)
    return x
