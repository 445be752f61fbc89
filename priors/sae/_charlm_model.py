"""A small causal character-level transformer whose forward pass names its activation sites."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_count, generator

Edit = Callable[[torch.Tensor], torch.Tensor]
_SITE_KINDS = ("resid_pre", "attn_out", "resid_mid", "mlp_hidden", "mlp_out", "resid_post")


@dataclass(frozen=True)
class CharLMConfig:
    """Sizes of a :class:`CharLM`; every field a positive integer.

    Attributes
    ----------
    vocab_size : int
        Number of token ids (98 for :func:`stdlib_corpus`).
    d_model : int
        Width of the residual stream; a multiple of ``n_heads``.
    n_layers : int
        Number of transformer blocks (pre-LayerNorm attention then MLP).
    n_heads : int
        Attention heads per block.
    d_mlp : int
        Hidden width of each MLP (GELU).
    context : int
        Longest sequence the positional embedding covers.
    """

    vocab_size: int = 98
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_mlp: int = 256
    context: int = 128

    def __post_init__(self):
        for name, value in asdict(self).items():
            check_count(name, value)
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})"
            )

    def sites(self) -> tuple[str, ...]:
        """Names of the activation sites, ``"<kind>.<layer>"``, in forward order."""
        return tuple(f"{k}.{l}" for l in range(self.n_layers) for k in _SITE_KINDS)

    def site_width(self, site: str) -> int:
        """Width of the activations at ``site`` (``d_mlp`` for ``mlp_hidden``, else ``d_model``)."""
        self.check_site(site)
        return self.d_mlp if site.startswith("mlp_hidden.") else self.d_model

    def check_site(self, site: object) -> None:
        if not isinstance(site, str):
            raise TypeError(f"site must be a str, got {type(site).__name__}")
        if site not in self.sites():
            raise ValueError(f"site must be one of {', '.join(self.sites())}; got {site!r}")


def _normal(shape: tuple[int, ...], std: float, gen: torch.Generator) -> nn.Parameter:
    return nn.Parameter(torch.randn(shape, generator=gen) * std)


class _Block(nn.Module):
    def __init__(self, cfg: CharLMConfig, gen: torch.Generator):
        super().__init__()
        d, out_std = cfg.d_model, 1 / math.sqrt(2 * cfg.n_layers)
        self.n_heads = cfg.n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.W_qkv = _normal((d, 3 * d), d**-0.5, gen)
        self.W_O = _normal((d, d), out_std * d**-0.5, gen)
        self.W_in = _normal((d, cfg.d_mlp), d**-0.5, gen)
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = _normal((cfg.d_mlp, d), out_std * cfg.d_mlp**-0.5, gen)
        self.b_out = nn.Parameter(torch.zeros(d))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (self.ln1(x) @ self.W_qkv).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return z.transpose(1, 2).reshape(b, t, d) @ self.W_O


class CharLM(nn.Module):
    """Causal character-level transformer: embeddings, pre-LN blocks, final LayerNorm, readout.

    ``forward(ids, edits=None)`` returns next-token logits of shape ``(batch, seq, vocab_size)``.
    ``edits`` maps site names (:meth:`CharLMConfig.sites`) to callables that receive the
    activations there, shape ``(batch, seq, width)``, and return what the rest of the forward
    pass uses instead, of the same shape. This explicit forward replaces hooks: nothing is
    registered on the module.

    Sites of block ``l``: ``resid_pre.l`` (its input), ``attn_out.l``, ``resid_mid.l``
    (``resid_pre + attn_out``), ``mlp_hidden.l`` (GELU output, width ``d_mlp``), ``mlp_out.l``,
    ``resid_post.l`` (``resid_mid + mlp_out``, the next block's ``resid_pre``).

    Parameters
    ----------
    config : CharLMConfig
    seed : int or torch.Generator
        Draws the initial weights (normal, scaled by fan-in; output projections also by
        ``1/sqrt(2 n_layers)``); torch's global RNG is not used.
    """

    def __init__(self, config: CharLMConfig, *, seed: int | torch.Generator = 0):
        super().__init__()
        if not isinstance(config, CharLMConfig):
            raise TypeError(f"config must be a CharLMConfig, got {type(config).__name__}")
        gen = generator(seed)
        self.config = config
        d = config.d_model
        self.W_E = _normal((config.vocab_size, d), 1.0, gen)
        self.W_pos = _normal((config.context, d), 0.1, gen)
        self.blocks = nn.ModuleList(_Block(config, gen) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.W_U = _normal((d, config.vocab_size), d**-0.5, gen)
        self.b_U = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, ids: torch.Tensor, edits: Mapping[str, Edit] | None = None) -> torch.Tensor:
        if ids.ndim != 2 or ids.shape[1] > self.config.context:
            raise ValueError(
                f"ids must have shape (batch, seq) with seq <= context ({self.config.context}), "
                f"got {tuple(ids.shape)}"
            )
        edits = dict(edits or {})
        for name, edit in edits.items():
            self.config.check_site(name)
            if not callable(edit):
                raise TypeError(f"edits[{name!r}] must be callable, got {type(edit).__name__}")

        def site(name: str, x: torch.Tensor) -> torch.Tensor:
            edit = edits.get(name)
            if edit is None:
                return x
            y = edit(x)
            if not isinstance(y, torch.Tensor) or y.shape != x.shape:
                got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                raise ValueError(f"edits[{name!r}] must return a tensor of shape "
                                 f"{tuple(x.shape)}, got {got}")  # fmt: skip
            return y

        x = self.W_E[ids] + self.W_pos[: ids.shape[1]]
        for l, block in enumerate(self.blocks):
            x = site(f"resid_pre.{l}", x)
            a = site(f"attn_out.{l}", block.attention(x))
            x = site(f"resid_mid.{l}", x + a)
            h = site(f"mlp_hidden.{l}", F.gelu(block.ln2(x) @ block.W_in + block.b_in))
            m = site(f"mlp_out.{l}", h @ block.W_out + block.b_out)
            x = site(f"resid_post.{l}", x + m)
        return self.ln_f(x) @ self.W_U + self.b_U
