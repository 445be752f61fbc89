"""Language-model losses: next-token cross-entropy per sequence and per token.

>>> llc.estimate_llc(model, tokens, loss="next_token")                        # doctest: +SKIP
>>> llc.estimate_llc(model, {"input_ids": ids, "attention_mask": mask},
...                  loss="next_token")                                       # doctest: +SKIP

Data are token ids of shape ``(n, seq)``: a tensor, or a dict with ``input_ids`` and an
``attention_mask`` (passed to the model as keyword arguments, as a Hugging Face tokenizer's
output is). The targets are the ids themselves, with padded positions (mask 0) set to
:data:`IGNORE`, so that they are not counted; explicit ``(inputs, labels)`` with ``IGNORE``
entries work too.
"""

from __future__ import annotations

import torch

__all__ = ["IGNORE", "next_token", "next_token_per_token", "token_targets"]

IGNORE = -100  # a target that is not counted (Hugging Face's convention)


def token_targets(input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
    """The next-token targets of ``input_ids`` (n, seq): the ids, ``IGNORE`` where the mask is 0."""
    if attention_mask is None:
        return input_ids
    return input_ids.masked_fill(attention_mask == 0, IGNORE)


def _check(outputs: torch.Tensor, targets: torch.Tensor) -> None:
    if outputs.ndim != 3 or targets.shape != outputs.shape[:2]:
        raise ValueError(
            "loss='next_token' needs logits of shape (batch, seq, vocab) and token targets "
            f"(batch, seq); got outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)}"
        )
    if targets.is_floating_point():
        raise TypeError(f"loss='next_token' needs integer token targets, got {targets.dtype}")


def next_token_per_token(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``−log p_w(t_{s+1} | t_{≤s})`` for each predicted position, shape ``(batch, seq − 1)``.

    Positions whose target is ``IGNORE`` are 0.
    """
    _check(outputs, targets)
    logits, nxt = outputs[:, :-1], targets[:, 1:]
    counted = nxt != IGNORE
    logp = torch.log_softmax(logits, dim=-1)
    picked = logp.gather(-1, nxt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(picked * counted)


def next_token(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of each sequence: the mean over its counted positions, ``(batch,)``.

    Notes
    -----
    ``ℓ_i(w) = (1/|S_i|) Σ_{s ∈ S_i} −log p_w(t_{i,s+1} | t_{i,≤s})`` with ``S_i`` the positions
    ``s`` whose next token is counted (not ``IGNORE``). A sequence with no counted position has
    loss 0.
    """
    per_token = next_token_per_token(outputs, targets)
    count = (targets[:, 1:] != IGNORE).sum(dim=1).clamp(min=1)
    return per_token.sum(dim=1) / count


next_token.per_token = next_token_per_token  # what ProbeLosses(per_token=True) records
