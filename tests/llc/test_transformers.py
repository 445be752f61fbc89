"""Transformers: attention batched over chains, the next-token loss, masks over entries.

Every chain-batched evaluation is checked against plain autograd on one chain at a time with
torch's own fused attention, and without the vmap fallback warning.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import llc
from llc._attention import math_attention
from llc.language import IGNORE, next_token, next_token_per_token
from llc.zoo import TinyTransformer, markov_tokens, tiny_gpt2

pytest.importorskip("transformers")


class DirectSDPA(nn.Module):
    """Calls F.scaled_dot_product_attention itself, with a float mask and a scale."""

    def __init__(self, vocab=11, d=16, heads=2):
        super().__init__()
        self.emb, self.qkv = nn.Embedding(vocab, d), nn.Linear(d, 3 * d)
        self.out, self.heads = nn.Linear(d, vocab), heads

    def forward(self, ids):
        h = self.emb(ids)
        b, s, d = h.shape
        q, k, v = self.qkv(h).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        bias = torch.zeros(s, s).masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), -1e9)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=0.3)
        return (self.out(a.transpose(1, 2).reshape(b, s, d)),)  # a tuple, as some models return


class EncoderLM(nn.Module):
    """nn.TransformerEncoderLayer (fused fast path in eval mode) under a readout."""

    def __init__(self, vocab=11, d=16):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.layer = nn.TransformerEncoderLayer(d, 2, 32, dropout=0.0, batch_first=True)
        self.out = nn.Linear(d, vocab)

    def forward(self, ids):
        return self.out(self.layer(self.emb(ids)))


def _models():
    torch.manual_seed(0)
    return {
        "tiny": TinyTransformer(11, 8, d_model=16, n_heads=2, n_layers=2, d_mlp=32),
        "attention_only": TinyTransformer(11, 8, d_model=16, n_heads=4, n_layers=2, d_mlp=None),
        "direct_sdpa": DirectSDPA(),
        "encoder_eval": EncoderLM().eval(),
        "encoder_train": EncoderLM().train(),
        "gpt2": tiny_gpt2(11, 8, n_layer=2, n_head=2, n_embd=16),
    }


def _per_chain(model, pot, w, ids, targets):
    """Loss and gradient of one chain at a time by plain autograd, torch's own attention."""
    out = []
    for wc in w:
        leaf = wc.clone().requires_grad_(True)
        logits = pot.flat_model.forward(leaf, ids)
        value = next_token(logits, targets).mean()
        (g,) = torch.autograd.grad(value, leaf)
        out.append((value.detach(), g))
    return out


@pytest.mark.parametrize("name", list(_models()))
def test_batched_chains_match_one_chain_at_a_time_without_fallback(name):
    model = _models()[name]
    tokens, _ = markov_tokens(32, 8, 11, seed=1)
    pot = llc.Potential(model, tokens, loss="next_token")
    assert pot.flat_model.attention  # detected by the probing pass
    gen = torch.Generator().manual_seed(2)
    w = pot.center + 0.05 * torch.randn(3, pot.dim, generator=gen)
    idx = torch.randint(32, (3, 6), generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the vmap fallback warning would fail the test
        losses, grads = pot.value_and_grad(w, pot.minibatch(idx))
        hv = pot.hvp(w, torch.ones_like(w), pot.minibatch(idx))
        per = pot.flat_model.batched_per_sample_loss(pot.loss_fn)(w, tokens[:5], tokens[:5])
    # on the CPU the potential's own probes run one chain at a time, with torch's attention
    torch.testing.assert_close(per, pot.per_sample_losses(w, tokens[:5], tokens[:5]))
    for c in range(3):
        value, g = _per_chain(model, pot, w[c : c + 1], tokens[idx[c]], tokens[idx[c]])[0]
        torch.testing.assert_close(losses[c], value, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grads[c], g, rtol=1e-4, atol=1e-5)
    assert torch.isfinite(hv).all() and per.shape == (3, 5)


def test_global_attention_settings_are_untouched():
    before = (
        torch.backends.mha.get_fastpath_enabled(),
        torch.backends.cuda.flash_sdp_enabled(),
        torch.backends.cuda.mem_efficient_sdp_enabled(),
        torch.backends.cuda.math_sdp_enabled(),
    )
    model = EncoderLM().eval()
    tokens, _ = markov_tokens(32, 8, 11, seed=1)
    llc.estimate_llc(model, tokens, loss="next_token", num_draws=8, num_burnin=4,
                     step_size=1e-4, num_chains=2, progress=False)  # fmt: skip
    after = (
        torch.backends.mha.get_fastpath_enabled(),
        torch.backends.cuda.flash_sdp_enabled(),
        torch.backends.cuda.mem_efficient_sdp_enabled(),
        torch.backends.cuda.math_sdp_enabled(),
    )
    assert before == after
    # no mode is left active: the user's eager eval-mode call takes the fused path again
    with torch.no_grad():
        model(tokens[:2])


@pytest.mark.parametrize("case", ["causal", "bool", "float", "scale", "gqa"])
def test_math_attention_is_torch_attention(case):
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(2, 4, 5, 8, generator=gen)
    k = torch.randn(2, 4 if case != "gqa" else 2, 7, 8, generator=gen)
    v = torch.randn_like(k)
    kwargs = {
        "causal": {"is_causal": True},
        "bool": {"attn_mask": torch.rand(5, 7, generator=gen) > 0.3},
        "float": {"attn_mask": torch.randn(2, 1, 5, 7, generator=gen)},
        "scale": {"scale": 0.17},
        "gqa": {"enable_gqa": True},
    }[case]
    if case == "bool":
        kwargs["attn_mask"][:, 0] = True  # no fully masked row (torch gives NaN there too)
    torch.testing.assert_close(
        math_attention(q, k, v, **kwargs), F.scaled_dot_product_attention(q, k, v, **kwargs)
    )


def test_next_token_loss_is_cross_entropy_over_counted_positions():
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 6, 9, generator=gen)
    targets = torch.randint(9, (3, 6), generator=gen)
    targets[1, 4:] = IGNORE
    per_token = next_token_per_token(logits, targets)
    for i in range(3):
        keep = targets[i, 1:] != IGNORE
        want = F.cross_entropy(logits[i, :-1][keep], targets[i, 1:][keep], reduction="none")
        torch.testing.assert_close(per_token[i][keep], want)
        torch.testing.assert_close(next_token(logits, targets)[i], want.mean())
    assert (per_token[1, 3:] == 0).all()


def test_padding_is_not_counted_and_masks_reach_the_model():
    """A right-padded sequence has the loss of the same sequence alone, unpadded."""
    model = tiny_gpt2(11, 8, n_layer=1, n_head=2, n_embd=16)
    tokens, _ = markov_tokens(4, 8, 11, seed=5)
    mask = torch.ones(4, 8, dtype=torch.long)
    mask[2, 5:] = 0
    padded = tokens.clone()
    padded[2, 5:] = 3  # padding ids: any value, masked out
    pot = llc.Potential(model, {"input_ids": padded, "attention_mask": mask}, loss="next_token")
    alone = llc.Potential(model, tokens[2:3, :5], loss="next_token")
    torch.testing.assert_close(pot.center_losses[2], alone.center_losses[0])
    assert (pot.targets[2, 5:] == IGNORE).all()
    model = TinyTransformer(11, 8, d_model=16, n_heads=2, n_layers=1)
    pot = llc.Potential(model, {"input_ids": padded, "attention_mask": mask}, loss="next_token")
    alone = llc.Potential(model, tokens[2:3, :5], loss="next_token")
    torch.testing.assert_close(pot.center_losses[2], alone.center_losses[0])


def test_per_token_probe_losses():
    model = TinyTransformer(11, 8, d_model=16, n_heads=2, n_layers=1)
    tokens, _ = markov_tokens(16, 8, 11, seed=6)
    pot = llc.Potential(model, tokens, loss="next_token")
    w = torch.stack([pot.center, pot.center + 0.01])
    per_token = pot.per_token_losses(w, tokens[:4], tokens[:4])
    assert per_token.shape == (2, 4, 7)
    torch.testing.assert_close(per_token.mean(2), pot.per_sample_losses(w, tokens[:4], tokens[:4]))


# -- masks over entries -------------------------------------------------------------------
def _edited(model, masks, fn):
    """A copy of ``model`` with ``fn`` applied to the masked entries."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in masks:
                mask = masks[name]
                mask = torch.ones_like(p, dtype=torch.bool) if mask is True else mask
                p[mask] = fn(p[mask])
    return model


def _logits(model, tokens):
    with torch.no_grad():
        out = model(tokens)
    return out if isinstance(out, torch.Tensor) else out.logits


@pytest.mark.parametrize("kind", ["mha", "gpt2"])
def test_head_masks_select_one_head(kind):
    """Head 2's V rows and O columns carry the same head; Q/K/V of another head do not."""
    torch.manual_seed(0)
    if kind == "mha":
        model = TinyTransformer(11, 8, d_model=16, n_heads=4, n_layers=2, d_mlp=None)
    else:
        model = tiny_gpt2(11, 8, n_layer=2, n_head=4, n_embd=16)
    tokens, _ = markov_tokens(8, 8, 11, seed=8)
    masks = llc.param_masks(model, "l1h2")
    biases = 3 * 4 if kind == "gpt2" else 0  # GPT-2's c_attn has Q, K, V biases
    assert sum(int(m.sum()) for m in masks.values()) == 4 * 4 * 16 + biases

    def zero(t):
        return torch.zeros_like(t)

    gen = torch.Generator().manual_seed(11)

    def shift(t):  # random: a constant shift is invisible after LayerNorm (zero-mean inputs)
        return t + 0.5 * torch.randn(t.shape, generator=gen)

    no_o = _logits(_edited(model, llc.param_masks(model, "l1h2 o"), zero), tokens)
    no_v = _logits(_edited(model, llc.param_masks(model, "l1h2 v"), zero), tokens)
    torch.testing.assert_close(no_v, no_o, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(no_o, _logits(model, tokens), atol=1e-4)  # the head mattered
    silent = _edited(model, llc.param_masks(model, "l1h2 o"), zero)
    same = _logits(_edited(silent, llc.param_masks(model, "l1h2 qkv"), shift), tokens)
    torch.testing.assert_close(same, no_o, atol=1e-5, rtol=1e-5)
    other = _logits(_edited(silent, llc.param_masks(model, "l1h1 qk"), shift), tokens)
    assert not torch.allclose(other, no_o, atol=1e-4)


def test_masked_gradient_is_the_full_gradient_at_the_entries():
    model = TinyTransformer(11, 8, d_model=16, n_heads=4, n_layers=1, d_mlp=None)
    tokens, _ = markov_tokens(16, 8, 11, seed=9)
    masks = llc.param_masks(model, ["l0h1", "unembed"])
    full = llc.Potential(model, tokens, loss="next_token")
    part = llc.Potential(model, tokens, loss="next_token", params=masks)
    idx = torch.arange(16).expand(1, -1)
    _, g_full = full.value_and_grad(full.center[None], full.minibatch(idx))
    _, g_part = part.value_and_grad(part.center[None], part.minibatch(idx))
    pieces = dict(zip(full.names, torch.split(g_full[0], full.flat_model.sizes)))
    want = torch.cat([
        pieces[n][masks[n].reshape(-1)] if isinstance(masks[n], torch.Tensor) else pieces[n]
        for n in part.names
    ])  # fmt: skip
    torch.testing.assert_close(g_part[0], want)
    assert part.dim == 4 * 4 * 16 + 11 * 16


def test_layer_mlp_embed_and_unembed_masks():
    model = TinyTransformer(11, 8, d_model=16, n_heads=2, n_layers=2, d_mlp=32)
    assert set(llc.param_masks(model, "l1 mlp")) == {
        "blocks.1.mlp.0.weight", "blocks.1.mlp.0.bias", "blocks.1.mlp.2.weight",
        "blocks.1.mlp.2.bias",
    }  # fmt: skip
    assert set(llc.param_masks(model, "l0 attn")) == {
        "blocks.0.attn.in_proj_weight",
        "blocks.0.attn.out_proj.weight",
    }
    assert set(llc.param_masks(model, "embed")) == {"embed.weight"}
    assert set(llc.param_masks(model, "unembed")) == {"unembed.weight"}
    gpt = tiny_gpt2(11, 8, n_layer=2, n_head=2, n_embd=16)
    assert set(llc.param_masks(gpt, "unembed")) == {"lm_head.weight"}
    assert set(llc.param_masks(gpt, "embed")) == {"transformer.wte.weight"}
    assert all(n.startswith("transformer.h.0.mlp.") for n in llc.param_masks(gpt, "l0 mlp"))
    union = llc.param_masks(model, ["l0h0", "l0h1"])
    assert union["blocks.0.attn.in_proj_weight"] is True  # both heads: the whole tensor


# -- bad input ----------------------------------------------------------------------------
def test_bad_input_names_the_argument():
    model = TinyTransformer(11, 8, d_model=16, n_heads=2, n_layers=1)
    tokens, _ = markov_tokens(8, 8, 11, seed=10)
    fast = {"num_draws": 8, "num_burnin": 4, "step_size": 1e-4, "num_chains": 2,
            "progress": False, "loss": "next_token"}  # fmt: skip
    with pytest.raises(ValueError, match=r"token ids from 0 to 11, outside the range \[0, 11\)"):
        bad = tokens.clone()
        bad[0, 0] = 11
        llc.estimate_llc(model, bad, **fast)
    with pytest.raises(ValueError, match="different lengths"):
        llc.estimate_llc(model, [tokens[0], tokens[1, :5]], **fast)
    with pytest.raises(TypeError, match="integer token ids"):
        llc.estimate_llc(model, tokens.float(), **fast)
    with pytest.raises(ValueError, match="attention_mask must have the shape"):
        llc.estimate_llc(model, {"input_ids": tokens, "attention_mask": tokens[:, :4]}, **fast)
    with pytest.raises(ValueError, match="selects no entry"):
        empty = torch.zeros_like(model.unembed.weight, dtype=torch.bool)
        llc.estimate_llc(model, tokens, params={"unembed.weight": empty}, **fast)
    with pytest.raises(ValueError, match="shape"):
        llc.estimate_llc(
            model, tokens, params={"unembed.weight": torch.ones(3, dtype=bool)}, **fast
        )
    with pytest.raises(TypeError, match="boolean mask"):
        llc.estimate_llc(model, tokens, params={"unembed.weight": torch.ones(11, 16)}, **fast)
    with pytest.raises(ValueError, match="did you mean 'unembed.weight'"):
        llc.estimate_llc(model, tokens, params={"unembd.weight": True}, **fast)
    with pytest.raises(ValueError, match="head 2 is out of range, the layer has 2"):
        llc.param_masks(model, "l0h2")
    with pytest.raises(ValueError, match="layer 1 is out of range"):
        llc.param_masks(model, "l1h0")
    with pytest.raises(ValueError, match="not one of the forms"):
        llc.param_masks(model, "layer0head1")
    with pytest.raises(TypeError, match="restriction"):
        llc.param_masks(model, 3)


def test_probe_losses_per_token_in_the_estimator():
    model = TinyTransformer(11, 8, d_model=16, n_heads=2, n_layers=1)
    tokens, _ = markov_tokens(32, 8, 11, seed=12)
    probe = llc.ProbeLosses(tokens[:3], tokens[:3], every=2, per_token=True)
    fast = {"num_draws": 20, "num_burnin": 4, "step_size": 1e-4, "num_chains": 2,
            "progress": False, "loss": "next_token"}  # fmt: skip
    res = llc.estimate_llc(model, tokens, observables=[probe], **fast)
    stats = res.observables["probe_losses"]
    assert stats.mean.shape == (21,) and stats.covariance.shape == (21, 21)
    per_seq = llc.ProbeLosses(tokens[:3], tokens[:3], every=2)
    res2 = llc.estimate_llc(model, tokens, observables=[per_seq], **fast)
    # the same draws: a sequence's loss is the mean of its tokens' losses
    np.testing.assert_allclose(
        res2.observables["probe_losses"].mean, stats.mean.reshape(3, 7).mean(1), rtol=1e-6
    )
