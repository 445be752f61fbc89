"""Evaluating a CharLM: next-character loss, activations at a site, loss with a site replaced."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._charlm_model import CharLM, CharLMConfig
from ._checks import check_count

_EVAL_BATCH = 64  # windows per forward pass when evaluating


def _check_tokens(tokens: object, vocab_size: int, name: str = "tokens") -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tokens).__name__}")
    if tokens.dtype != torch.long or tokens.ndim != 1:
        raise ValueError(f"{name} must be a 1-D torch.long tensor, got {tokens.dtype} "
                         f"of shape {tuple(tokens.shape)}")  # fmt: skip
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"{name} must be ids in [0, {vocab_size}), got [{int(tokens.min())}, "
                         f"{int(tokens.max())}]")  # fmt: skip
    return tokens


def _check_model(model: object) -> CharLM:
    if not isinstance(model, CharLM):
        raise TypeError(f"model must be a CharLM, got {type(model).__name__}")
    return model


def _check_seq_len(seq_len: object, config: CharLMConfig) -> None:
    check_count("seq_len", seq_len)
    if seq_len > config.context:
        raise ValueError(f"seq_len must be <= the model's context {config.context}, got {seq_len}")


def _windows(tokens: torch.Tensor, seq_len: int, n: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Consecutive non-overlapping windows covering the first ``n`` positions: inputs, targets."""
    check_count("n", n)
    available = (tokens.numel() - 1) // seq_len * seq_len
    if n > available:
        raise ValueError(f"n must be <= {available}, the positions that {tokens.numel()} tokens "
                         f"give in windows of seq_len={seq_len}; got {n}")  # fmt: skip
    w = -(-n // seq_len)
    body = tokens[: w * seq_len + 1]
    return body[:-1].view(w, seq_len), body[1:].view(w, seq_len)


def _run(model: CharLM, inputs: torch.Tensor, targets: torch.Tensor, n: int, edits) -> float:
    """Mean next-token cross-entropy over the first ``n`` positions (float64 sum)."""
    total = torch.zeros((), dtype=torch.float64)
    for i in range(0, inputs.shape[0], _EVAL_BATCH):
        logits = model(inputs[i : i + _EVAL_BATCH], edits)
        ce = F.cross_entropy(logits.transpose(1, 2), targets[i : i + _EVAL_BATCH], reduction="none")
        total += ce.reshape(-1)[: max(0, n - i * inputs.shape[1])].double().sum()
    return float(total / n)


def next_char_loss(model: CharLM, tokens: torch.Tensor, *, seq_len: int, n: int) -> float:
    """The model's mean next-character loss (nats) over the first ``n`` positions of ``tokens``.

    The positions are those of :func:`collect_activations`: windows ``tokens[j·seq_len :
    (j+1)·seq_len]``, each predicting its successor tokens.
    """
    _check_model(model)
    _check_tokens(tokens, model.config.vocab_size)
    _check_seq_len(seq_len, model.config)
    inputs, targets = _windows(tokens, seq_len, n)
    with torch.no_grad():
        return _run(model, inputs, targets, n, None)


def unigram_loss(train: torch.Tensor, held: torch.Tensor, vocab_size: int) -> float:
    """Cross-entropy (nats) on ``held`` of the character frequencies of ``train`` (add-one).

    The baseline a language model must beat: a model that ignores context does no better.
    """
    check_count("vocab_size", vocab_size)
    _check_tokens(train, vocab_size, "train")
    _check_tokens(held, vocab_size, "held")
    if held.numel() == 0:
        raise ValueError("held must hold at least one token")
    counts = torch.bincount(train, minlength=vocab_size).double() + 1
    return float(-(counts / counts.sum()).log()[held].mean())


def collect_activations(
    model: CharLM, tokens: torch.Tensor, *, site: str, seq_len: int, n: int
) -> torch.Tensor:
    """Activations of ``model`` at ``site`` for the first ``n`` positions of ``tokens``.

    Parameters
    ----------
    model : CharLM
        Not modified; evaluated under ``torch.no_grad`` with an explicit forward (no hooks).
    tokens : torch.Tensor
        1-D ``torch.long`` ids.
    site : str
        One of ``model.config.sites()``, e.g. ``"resid_post.0"`` or ``"mlp_hidden.0"``.
    seq_len : int
        Length of the consecutive windows the text is cut into (``<= model.config.context``);
        row ``j`` is position ``j % seq_len`` of window ``j // seq_len``.
    n : int
        Number of rows, at most ``(len(tokens) - 1) // seq_len * seq_len``.

    Returns
    -------
    torch.Tensor
        Shape ``(n, model.config.site_width(site))``, float32, detached.

    Raises
    ------
    TypeError, ValueError
        For a wrong model or tokens, an unknown site, ``seq_len`` over the context, ``n`` over
        the positions available, or non-finite activations (a model with NaN weights).
    """
    _check_model(model)
    _check_tokens(tokens, model.config.vocab_size)
    model.config.check_site(site)
    _check_seq_len(seq_len, model.config)
    inputs, _ = _windows(tokens, seq_len, n)
    out: list[torch.Tensor] = []

    def grab(x: torch.Tensor) -> torch.Tensor:
        out.append(x.reshape(-1, x.shape[-1]))
        return x

    with torch.no_grad():
        for i in range(0, inputs.shape[0], _EVAL_BATCH):
            model(inputs[i : i + _EVAL_BATCH], {site: grab})
    acts = torch.cat(out)[:n]
    if not torch.isfinite(acts).all():
        raise ValueError(f"the activations at site {site!r} are not finite: check the model")
    return acts


@dataclass(frozen=True)
class SplicedLoss:
    """Next-character losses (nats): clean, with the site replaced, and with the site zeroed."""

    clean: float
    spliced: float
    zero_ablation: float

    @property
    def fraction_recovered(self) -> float:
        """``(zero − spliced) / (zero − clean)``: 1 if splicing is free, 0 if as bad as zeros."""
        return (self.zero_ablation - self.spliced) / (self.zero_ablation - self.clean)


def spliced_loss(
    model: CharLM,
    tokens: torch.Tensor,
    reconstruct: Callable[[torch.Tensor], torch.Tensor],
    *,
    site: str,
    seq_len: int,
    n: int,
) -> SplicedLoss:
    """The model's loss with the activations at ``site`` replaced by ``reconstruct(acts)``.

    Over the same ``n`` positions as :func:`collect_activations` (every position of each window
    is replaced; the loss averages the first ``n``).

    Parameters
    ----------
    model, tokens, site, seq_len, n
        As in :func:`collect_activations`.
    reconstruct : callable
        Maps activations of shape ``(rows, width)`` to a tensor of the same shape, e.g. an
        SAE's reconstruction ``lambda x: sae(x)`` (for :class:`priors.sae.SparseAutoencoder`,
        whose forward returns ``(f, x_hat)``: ``lambda x: sae(x)[1]``). Called under
        ``torch.no_grad``.

    Returns
    -------
    SplicedLoss
        ``clean``, ``spliced`` and ``zero_ablation`` losses and the ``fraction_recovered``.

    Raises
    ------
    TypeError, ValueError
        As :func:`collect_activations`; also a non-callable ``reconstruct``, or one returning
        something other than a finite tensor of the input's shape.
    """
    if not callable(reconstruct):
        raise TypeError(f"reconstruct must be callable, got {type(reconstruct).__name__}")
    _check_model(model)
    _check_tokens(tokens, model.config.vocab_size)
    model.config.check_site(site)
    _check_seq_len(seq_len, model.config)
    inputs, targets = _windows(tokens, seq_len, n)

    def splice(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        y = reconstruct(flat)
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"reconstruct must return a torch.Tensor, got {type(y).__name__}")
        if y.shape != flat.shape:
            raise ValueError(f"reconstruct must return shape {tuple(flat.shape)}, got "
                             f"{tuple(y.shape)}")  # fmt: skip
        if not torch.isfinite(y).all():
            raise ValueError("reconstruct returned non-finite values")
        return y.to(x.dtype).reshape(x.shape)

    with torch.no_grad():
        clean = _run(model, inputs, targets, n, None)
        spliced = _run(model, inputs, targets, n, {site: splice})
        zero = _run(model, inputs, targets, n, {site: torch.zeros_like})
    return SplicedLoss(clean=clean, spliced=spliced, zero_ablation=zero)
