"""The estimator on TransformerLens's ``HookedTransformer``: gradients against plain autograd,
head masks over ``W_Q``/``W_K``/``W_V``/``W_O``, and a short LLC run without vmap fallbacks.

Skipped where TransformerLens is not installed, and where it is 4.0 or later (which removed
``HookedTransformer`` in favour of ``TransformerBridge``). The models are built from a config in
code: nothing is downloaded.
"""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch

pytest.importorskip("transformer_lens")
try:
    from transformer_lens import HookedTransformer, HookedTransformerConfig
except ImportError:  # TransformerLens >= 4.0
    pytest.skip("this TransformerLens has no HookedTransformer (removed in 4.0)",
                allow_module_level=True)  # fmt: skip

import llc  # noqa: E402
from llc import language, zoo  # noqa: E402

VOCAB, SEQ, N = 16, 16, 256
HEAD_PARTS = ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices: threads only contend


def _model(kind: str = "relu", dtype: torch.dtype = torch.float32) -> HookedTransformer:
    extra = {"attn_only": True} if kind == "attn_only" else {"d_mlp": 64, "act_fn": "relu"}
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=SEQ, d_vocab=VOCAB, seed=0,
        device="cpu", dtype=dtype, **extra,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated")
        return HookedTransformer(cfg)


@pytest.fixture(scope="module")
def tokens():
    return zoo.markov_tokens(N, SEQ, VOCAB, seed=0)[0]


@pytest.fixture(scope="module")
def trained(tokens):
    """A 2-layer ReLU HookedTransformer after 200 Adam steps on the Markov tokens."""
    model = _model("relu")
    history = zoo.train_next_token(model, tokens, steps=200, seed=0)
    assert history[-1] < history[0] - 1.0  # it learned something
    return model


def _reference(model, names, masks, w, x):
    """Per-chain loss and gradient by plain autograd on a copy of the model whose selected
    entries are overwritten with the chain's w (boolean indexing, row-major like the flat
    vector); independent of llc's flattening."""
    losses, grads = [], []
    for wc in w:
        m = copy.deepcopy(model)
        params = dict(m.named_parameters())
        full = {n: torch.ones_like(params[n], dtype=torch.bool) for n in names}
        sel = {n: full[n] if masks is None or masks[n] is True else masks[n] for n in names}
        start = 0
        with torch.no_grad():
            for n in names:
                k = int(sel[n].sum())
                params[n][sel[n]] = wc[start : start + k].to(params[n].dtype)
                start += k
        assert start == wc.numel()
        loss = language.next_token(m(x), x).mean()
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([params[n].grad[sel[n]] for n in names]))
    return torch.stack(losses), torch.stack(grads)


def test_head_mask_selects_that_heads_slices_and_nothing_else():
    model = _model("relu")
    masks = llc.param_masks(model, "l0h1")
    assert set(masks) == {f"blocks.0.attn.{p}" for p in HEAD_PARTS}  # not b_O: shared
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert isinstance(mask, torch.Tensor) and mask.shape == params[name].shape, name
        want = torch.zeros_like(mask)
        want[1] = True
        assert torch.equal(mask, want), name
    d_model, d_head = 32, 8
    assert sum(int(m.sum()) for m in masks.values()) == 4 * d_model * d_head + 3 * d_head
    qk = llc.param_masks(model, "l1h3 qk")
    assert set(qk) == {f"blocks.1.attn.{p}" for p in ("W_Q", "b_Q", "W_K", "b_K")}
    assert all(bool(m[3].all()) and int(m.sum()) == m[3].numel() for m in qk.values())
    assert set(llc.param_masks(model, "l1 mlp")) == {
        f"blocks.1.mlp.{p}" for p in ("W_in", "b_in", "W_out", "b_out")
    }
    assert set(llc.param_masks(model, "unembed")) == {"unembed.W_U", "unembed.b_U"}
    with pytest.raises(ValueError, match="out of range"):
        llc.param_masks(model, "l2h0")


@pytest.mark.parametrize("kind", ["relu", "attn_only"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("restrict", [None, "l0h1"])
def test_value_and_grad_match_autograd(tokens, kind, dtype, restrict):
    model = _model(kind, dtype)
    masks = None if restrict is None else llc.param_masks(model, restrict)
    pot = llc.Potential(model, tokens, loss="next_token", params=masks)
    gen = torch.Generator().manual_seed(1)
    w = pot.center + 0.01 * torch.randn(2, pot.dim, generator=gen, dtype=pot.center.dtype)
    idx = torch.randint(N, (2, 32), generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a vmap fallback ("batching rule") would fail here
        losses, grads = pot.value_and_grad(w, pot.minibatch(idx))
    assert not torch.allclose(losses, pot.center_loss(idx).to(losses.dtype))  # w moved
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}
    for c in range(2):
        ref_l, ref_g = _reference(model, pot.names, masks, w[c : c + 1], tokens[idx[c]])
        torch.testing.assert_close(losses[c], ref_l[0], **tol)
        torch.testing.assert_close(grads[c], ref_g[0], **tol)


@pytest.mark.parametrize("restrict", [None, "l0h1"])
def test_estimate_llc_is_finite_and_warns_of_no_fallback(trained, tokens, restrict):
    params = None if restrict is None else llc.param_masks(trained, restrict)
    before = {n: p.detach().clone() for n, p in trained.named_parameters()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = llc.estimate_llc(
            trained, tokens, loss="next_token", num_chains=2, num_draws=30, num_burnin=30,
            batch_size=64, step_size=1e-4, progress=False, params=params,
        )  # fmt: skip
    messages = [str(w.message) for w in caught if not issubclass(w.category, RuntimeWarning)]
    assert not messages, messages  # RuntimeWarnings are llc's own diagnostics on short chains
    assert math.isfinite(r.mean) and r.mean > 0
    assert r.llc_trace.shape[0] == 2
    for n, p in trained.named_parameters():
        assert torch.equal(p, before[n]), n  # w* untouched
