"""Small transformers and a synthetic language, built in code (no downloads).

- :class:`TinyTransformer`: a decoder-only transformer in plain torch (``nn.MultiheadAttention``
  with a causal mask, optional MLPs and LayerNorm); ``d_mlp=None`` makes it attention-only.
- :func:`tiny_gpt2`: a Hugging Face ``GPT2LMHeadModel`` from a config (needs ``.[lm]``).
- :func:`markov_tokens`: sequences from a random Markov chain with full-support transitions.
- :func:`train_next_token`: a seeded Adam loop on the next-token loss.
- :func:`fit_unembedding`: the unembedding alone trained to the minimum of the training loss
  (L-BFGS on a convex problem), and the regular λ it then has; :func:`regular_llc` the value a
  perfect sampler returns there at finite nβ and γ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .language import IGNORE, next_token, token_targets

__all__ = [
    "TinyTransformer",
    "fit_unembedding",
    "markov_tokens",
    "regular_llc",
    "tiny_gpt2",
    "train_next_token",
]


class _Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_mlp: int | None, layer_norm: bool):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model) if layer_norm else nn.Identity()
        self.attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True, bias=False)
        self.ln2 = nn.LayerNorm(d_model) if layer_norm and d_mlp else nn.Identity()
        self.mlp = (
            nn.Sequential(nn.Linear(d_model, d_mlp), nn.GELU(), nn.Linear(d_mlp, d_model))
            if d_mlp
            else None
        )

    def forward(self, h, causal, padding):
        a = self.ln1(h)
        out, _ = self.attn(a, a, a, attn_mask=causal, key_padding_mask=padding, need_weights=False)
        h = h + out
        if self.mlp is not None:
            h = h + self.mlp(self.ln2(h))
        return h


class TinyTransformer(nn.Module):
    """A decoder-only transformer: token and position embeddings, pre-LN blocks, a readout.

    Parameters
    ----------
    vocab, seq_len : int
        Vocabulary size and the longest sequence.
    d_model, n_heads, n_layers : int
    d_mlp : int or None
        Hidden width of each block's MLP; None for an attention-only transformer.
    layer_norm : bool
        Pre-LN in each block and before the readout.

    ``forward(input_ids, attention_mask=None)`` returns logits ``(batch, seq, vocab)``; the
    attention is causal, and keys where ``attention_mask == 0`` are not attended to. The
    readout ``unembed`` has no bias.
    """

    def __init__(
        self,
        vocab: int,
        seq_len: int,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        d_mlp: int | None = 256,
        layer_norm: bool = True,
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(0.02 * torch.randn(seq_len, d_model))
        self.blocks = nn.ModuleList(
            _Block(d_model, n_heads, d_mlp, layer_norm) for _ in range(n_layers)
        )
        self.ln = nn.LayerNorm(d_model) if layer_norm else nn.Identity()
        self.unembed = nn.Linear(d_model, vocab, bias=False)

    def features(self, input_ids: torch.Tensor, attention_mask=None) -> torch.Tensor:
        """The residual stream before the readout, ``(batch, seq, d_model)``."""
        length = input_ids.shape[-1]
        if length > self.pos.shape[0]:
            raise ValueError(f"input_ids are {length} long, the model takes {self.pos.shape[0]}")
        h = self.embed(input_ids) + self.pos[:length]
        causal = torch.ones(length, length, dtype=torch.bool, device=h.device).triu(1)
        padding = None if attention_mask is None else attention_mask == 0
        for block in self.blocks:
            h = block(h, causal, padding)
        return self.ln(h)

    def forward(self, input_ids: torch.Tensor, attention_mask=None) -> torch.Tensor:
        return self.unembed(self.features(input_ids, attention_mask))


def tiny_gpt2(
    vocab: int,
    seq_len: int,
    *,
    n_layer: int = 2,
    n_head: int = 4,
    n_embd: int = 64,
    tie: bool = False,
    seed: int = 0,
) -> nn.Module:
    """A ``transformers.GPT2LMHeadModel`` from a config, seeded, without dropout, in eval mode."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError as exc:  # pragma: no cover - the [lm] extra is part of [dev]
        raise ImportError("tiny_gpt2 needs transformers: pip install 'slt-interp[lm]'") from exc
    config = GPT2Config(
        vocab_size=vocab, n_positions=seq_len, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None,
        tie_word_embeddings=tie,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    return model.eval()


def markov_tokens(
    n: int, seq_len: int, vocab: int, *, seed: int = 0, sharpness: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` sequences of a Markov chain on ``vocab`` tokens, the first token uniform.

    The transition rows are ``softmax(sharpness · z)`` with ``z`` standard normal, so every
    transition has positive probability (targets never become certain; larger ``sharpness``
    makes the language more predictable). Returns ``(tokens (n, seq_len), transition
    (vocab, vocab))``.
    """
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(vocab, vocab, generator=gen, dtype=torch.float64)
    transition = torch.softmax(sharpness * z, dim=1)
    tokens = torch.empty(n, seq_len, dtype=torch.long)
    tokens[:, 0] = torch.randint(vocab, (n,), generator=gen)
    for s in range(1, seq_len):
        tokens[:, s] = torch.multinomial(transition[tokens[:, s - 1]], 1, generator=gen)[:, 0]
    return tokens, transition


def train_next_token(
    model: nn.Module,
    tokens: torch.Tensor,
    *,
    steps: int = 500,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    frozen: tuple[str, ...] = (),
) -> list[float]:
    """Train ``model`` in place with Adam on the next-token loss; returns the loss per step.

    ``frozen`` names parameters that keep their values. Draws come from a generator seeded
    with ``seed``; torch's global RNG is not used.
    """
    gen = torch.Generator().manual_seed(seed)
    params = [p for n, p in model.named_parameters() if n not in frozen]
    opt = torch.optim.Adam(params, lr=lr)
    history = []
    for _ in range(steps):
        idx = torch.randint(tokens.shape[0], (min(batch_size, tokens.shape[0]),), generator=gen)
        out = model(tokens[idx])
        logits = out if isinstance(out, torch.Tensor) else out.logits
        loss = next_token(logits, tokens[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    return history


@torch.no_grad()
def _features(model: nn.Module, readout: nn.Linear, tokens: torch.Tensor) -> torch.Tensor:
    """The inputs of the readout for every position, captured by a hook, ``(n·seq, d)``."""
    seen = []
    handle = readout.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    try:
        model(tokens)
    finally:
        handle.remove()
    return seen[0].reshape(-1, seen[0].shape[-1])


def fit_unembedding(
    model: nn.Module, tokens: torch.Tensor, readout: nn.Linear, *, max_iter: int = 500
) -> dict:
    """Set ``readout.weight`` to the minimiser of the next-token loss with all else fixed.

    With the rest of the network fixed the loss is a multinomial logistic regression of the
    next token on the readout's inputs: convex, minimised by L-BFGS (float64). Returns the
    regular learning coefficient there, ``λ = (V − 1)·r/2`` with ``r`` the rank of the features
    (the softmax's shift symmetry removes r directions), with the loss, the gradient norm and
    the Hessian in the readout's weights and its eigenvalues (for :func:`regular_llc`), and the
    regression itself as ``problem = (features, targets, weights, w*)`` (float64).
    """
    if readout.bias is not None:
        raise ValueError("fit_unembedding needs a readout without bias (λ counts its weight only)")
    x = _features(model, readout, tokens).double()
    length = tokens.shape[1]
    targets = token_targets(tokens).roll(-1, dims=1)
    targets[:, -1] = IGNORE  # the last position predicts nothing
    y = targets.reshape(-1)
    keep = y != IGNORE
    per_seq = keep.reshape(-1, length).sum(1).double()  # each sequence's counted positions
    weights = (1.0 / per_seq).repeat_interleave(length)[keep] / tokens.shape[0]
    x, y = x[keep], y[keep]
    w = readout.weight.detach().double().clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [w], lr=1.0, max_iter=max_iter, tolerance_grad=1e-12, tolerance_change=1e-15,
        history_size=50, line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = (F.cross_entropy(x @ w.T, y, reduction="none") * weights).sum()
        loss.backward()
        return loss

    opt.step(closure)
    loss = closure()
    with torch.no_grad():
        readout.weight.copy_(w.detach().to(readout.weight.dtype))

    def total(flat):
        logits = x @ flat.view_as(w).T
        return (F.cross_entropy(logits, y, reduction="none") * weights).sum()

    hess = torch.func.hessian(total)(w.detach().reshape(-1))
    rank = int(torch.linalg.matrix_rank(x))
    vocab = readout.out_features
    return {
        "llc": (vocab - 1) * rank / 2,
        "rank": rank,
        "loss": loss.item(),
        "grad_norm": float(w.grad.norm()),
        "hessian_eigenvalues": torch.linalg.eigvalsh(hess).clamp(min=0),
        "hessian": hess,
        "problem": (x, y, weights, w.detach().clone()),  # features, targets, weights, w*
    }


def regular_llc(eigenvalues: torch.Tensor, nbeta: float, localization: float) -> float:
    """``½ Σ_i nβh_i / (nβh_i + γ)``: the localized, tempered posterior's
    ``E[nβ (L_n(w) − L_n(w*))]`` for the quadratic ``L_n(w*) + ½ (w − w*)ᵀ H (w − w*)``.

    Notes
    -----
    Under ``exp(−nβ L_n − γ/2 ‖w − w*‖²)`` each eigendirection of H is Gaussian with variance
    ``1/(nβh + γ)``, so its share of ``nβ ½ h u²`` has mean ``½ nβh/(nβh + γ)``; directions
    with ``h = 0`` add nothing. This is the finite-γ target of a regular model, below d/2.
    """
    h = eigenvalues.double()
    return float(0.5 * (nbeta * h / (nbeta * h + localization)).sum())
