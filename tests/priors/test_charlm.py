"""priors.sae.charlm: stdlib corpus, a char-level transformer trained in code, sites, splicing."""

import math
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from priors.sae.charlm import (
    CharLM,
    CharLMConfig,
    charlm_activations,
    collect_activations,
    next_char_loss,
    spliced_loss,
    stdlib_corpus,
    train_charlm,
    unigram_loss,
)

TINY = CharLMConfig(d_model=32, n_layers=1, n_heads=2, d_mlp=64, context=32)
TRAIN = dict(steps=300, seq_len=32, batch_size=16, lr=1e-2, progress=False)


@pytest.fixture(scope="module")
def corpus():
    return stdlib_corpus(max_chars=80_000, seed=1)


@pytest.fixture(scope="module")
def trained(corpus, one_thread):
    train, held = corpus.split(0.25)
    return train_charlm(train, TINY, seed=0, **TRAIN), train, held


def test_corpus_is_deterministic_with_its_provenance(corpus):
    again = stdlib_corpus(max_chars=80_000, seed=1)
    assert torch.equal(again.tokens, corpus.tokens) and again.sha256 == corpus.sha256
    assert again.files == corpus.files
    other = stdlib_corpus(max_chars=80_000, seed=2)
    assert other.files != corpus.files and other.sha256 != corpus.sha256
    assert corpus.n_chars == 80_000 == sum(n for _, n in corpus.files)
    assert corpus.python_version == sys.version
    assert corpus.stdlib == sysconfig.get_paths()["stdlib"]
    root, start, known = Path(corpus.stdlib), 0, set(corpus.vocab[:-1])
    for rel, n in corpus.files:  # the tokens are those files' text, in order
        assert not {"test", "tests"} & set(Path(rel).parts) and rel.endswith(".py")
        text = ((root / rel).read_text(encoding="utf-8", errors="replace") + "\n\n")[:n]
        expect = "".join(c if c in known else "\ufffd" for c in text)
        assert corpus.decode(corpus.tokens[start : start + n]) == expect, rel
        start += n


def test_vocabulary_maps_other_characters_to_one_id(corpus):
    from priors.sae._charlm_corpus import encode

    ids = encode("a\r\u00e9\t\n~ \U0001f600")
    assert corpus.vocab_size == 98 == len(set(corpus.vocab))
    assert corpus.decode(ids) == "a\ufffd\ufffd\t\n~ \ufffd"
    assert ids.dtype == torch.long and int(ids.max()) == 97


def test_training_beats_the_unigram_baseline_on_held_out_text(corpus, trained):
    """The untrained model is worse than character frequencies; the trained one clearly better."""
    model, train, held = trained
    unigram = unigram_loss(train, held, corpus.vocab_size)
    n = 8192
    before = next_char_loss(CharLM(TINY, seed=0), held, seq_len=32, n=n)
    after = next_char_loss(model, held, seq_len=32, n=n)
    assert before > unigram + 0.5, (before, unigram)
    assert after < unigram - 0.4, (after, unigram)


def test_training_is_seeded_and_leaves_the_global_rng(corpus, one_thread):
    state = torch.random.get_rng_state()
    kw = dict(TRAIN, steps=3)
    a = train_charlm(corpus.tokens, TINY, seed=5, **kw)
    b = train_charlm(corpus.tokens, TINY, seed=5, **kw)
    c = train_charlm(corpus.tokens, TINY, seed=6, **kw)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.W_E, c.W_E)


def _manual(model: CharLM, ids: torch.Tensor) -> dict:
    """The forward pass written out with an explicit causal softmax (no SDPA)."""
    blk, d, h = model.blocks[0], model.config.d_model, model.config.n_heads
    x = model.W_E[ids] + model.W_pos[: ids.shape[1]]
    q, k, v = (F.layer_norm(x, (d,), blk.ln1.weight, blk.ln1.bias) @ blk.W_qkv).split(d, -1)
    q, k, v = (z.unflatten(-1, (h, d // h)).transpose(1, 2) for z in (q, k, v))
    t = ids.shape[1]
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
    scores = scores.masked_fill(torch.ones(t, t).triu(1).bool(), float("-inf"))
    attn = (scores.softmax(-1) @ v).transpose(1, 2).flatten(2) @ blk.W_O
    mid = x + attn
    hidden = F.gelu(F.layer_norm(mid, (d,), blk.ln2.weight, blk.ln2.bias) @ blk.W_in + blk.b_in)
    post = mid + hidden @ blk.W_out + blk.b_out
    logits = F.layer_norm(post, (d,), model.ln_f.weight, model.ln_f.bias) @ model.W_U + model.b_U
    return {"resid_mid.0": mid, "mlp_hidden.0": hidden, "resid_post.0": post, "logits": logits}


def test_activations_and_losses_match_a_manual_forward(trained):
    model, _, held = trained
    n, seq = 1000, 32  # 1000 is not a multiple of 32: the last window is partly used
    windows = held[: 32 * 32 + 1]
    with torch.no_grad():
        ref = _manual(model, windows[:-1].view(32, 32))
    for site in ("resid_mid.0", "mlp_hidden.0", "resid_post.0"):
        got = collect_activations(model, held, site=site, seq_len=seq, n=n)
        assert got.shape == (n, model.config.site_width(site))
        torch.testing.assert_close(got, ref[site].flatten(0, 1)[:n], rtol=1e-5, atol=1e-5)
    ce = F.cross_entropy(ref["logits"].flatten(0, 1), windows[1:], reduction="none")[:n]
    assert next_char_loss(model, held, seq_len=seq, n=n) == pytest.approx(float(ce.mean()), 1e-5)


def test_spliced_loss_identity_zeros_and_a_perturbation(trained):
    model, _, held = trained
    kw = dict(site="resid_post.0", seq_len=32, n=2000)
    same = spliced_loss(model, held, lambda x: x, **kw)
    assert same.spliced == pytest.approx(same.clean, abs=1e-6)
    assert same.fraction_recovered == pytest.approx(1.0, abs=1e-5)
    assert same.clean == pytest.approx(next_char_loss(model, held, seq_len=32, n=2000), abs=1e-9)
    zeros = spliced_loss(model, held, torch.zeros_like, **kw)
    assert zeros.spliced == pytest.approx(zeros.zero_ablation, abs=1e-9)
    assert zeros.fraction_recovered == pytest.approx(0.0, abs=1e-9)
    assert zeros.zero_ablation > zeros.clean + 0.5
    # Halving the hidden MLP activations hurts, by less than removing them.
    half = spliced_loss(model, held, lambda x: 0.5 * x, **dict(kw, site="mlp_hidden.0"))
    assert half.clean < half.spliced < half.zero_ablation


def test_model_is_left_as_it_was(trained):
    model, _, held = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(p.grad is None for p in model.parameters())  # training frees its gradients
    model.train()
    state = torch.random.get_rng_state()
    collect_activations(model, held, site="mlp_hidden.0", seq_len=16, n=100)
    spliced_loss(model, held, lambda x: x + 1.0, site="resid_mid.0", seq_len=16, n=100)
    assert model.training and torch.is_grad_enabled()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    for m in model.modules():
        assert not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks)
    assert all(p.grad is None for p in model.parameters())


def test_cache_trains_once_and_loads_the_same_model(tmp_path, one_thread):
    corpus = stdlib_corpus(max_chars=20_000)
    kw = dict(corpus=corpus, config=TINY, steps=5, seq_len=16, batch_size=4, n_train=300,
              n_held=200, site="mlp_hidden.0", progress=False)  # fmt: skip
    first = charlm_activations(tmp_path, **kw)
    again = charlm_activations(tmp_path, **kw)
    other = charlm_activations(tmp_path, **dict(kw, seed=1))
    assert not first.from_cache and again.from_cache and not other.from_cache
    assert len(list(tmp_path.glob("charlm-*.pt"))) == 2
    assert torch.equal(first.train, again.train) and torch.equal(first.held, again.held)
    assert first.held_loss == again.held_loss and first.train.shape == (300, 64)
    assert not torch.equal(first.train, other.train)
    none = charlm_activations(None, **kw)  # no cache: trains, writes nothing
    assert none.cache_file is None and torch.equal(none.train, first.train)
    spliced = again.spliced_loss(lambda x: x)
    assert spliced.spliced == pytest.approx(again.held_loss, abs=1e-6)


def test_bad_input_names_the_argument(trained):
    model, _, held = trained
    kw = dict(site="resid_post.0", seq_len=32, n=100)
    cases = [
        (lambda: collect_activations(model, held, **dict(kw, site="resid_post.7")), "site"),
        (lambda: collect_activations(model, held, **dict(kw, site=3)), "site"),
        (lambda: collect_activations(model, held, **dict(kw, seq_len=33)), "seq_len"),
        (lambda: collect_activations(model, held, **dict(kw, n=held.numel())), "n"),
        (lambda: collect_activations(model, held, **dict(kw, n=0)), "n"),
        (lambda: collect_activations(model, held.float(), **kw), "tokens"),
        (lambda: collect_activations(model, held + 200, **kw), "tokens"),
        (lambda: collect_activations(torch.nn.Linear(2, 2), held, **kw), "model"),
        (lambda: spliced_loss(model, held, "sae", **kw), "reconstruct"),
        (lambda: spliced_loss(model, held, lambda x: (x, x), **kw), "reconstruct"),
        (lambda: spliced_loss(model, held, lambda x: x[:, :3], **kw), "reconstruct"),
        (lambda: spliced_loss(model, held, lambda x: x * math.nan, **kw), "reconstruct"),
        (lambda: model(held[:64].view(2, 32), {"mlp_out.0": lambda x: x[0]}), "edits"),
        (lambda: model(held[:64].view(2, 32), {"mlp_out.0": 1.0}), "edits"),
        (lambda: model(held[:66].view(2, 33)), "ids"),
        (lambda: CharLMConfig(d_model=30, n_heads=4), "d_model"),
        (lambda: CharLMConfig(n_layers=0), "n_layers"),
        (lambda: CharLMConfig(context=2.5), "context"),
        (lambda: train_charlm(held, "cfg", steps=1), "config"),
        (lambda: train_charlm(held, TINY, steps=1, seq_len=8, lr=0.0), "lr"),
        (lambda: train_charlm(held[:10], TINY, steps=1, seq_len=32), "tokens"),
        (lambda: stdlib_corpus(max_chars=0), "max_chars"),
        (lambda: stdlib_corpus(seed=1.5), "seed"),
        (lambda: charlm_activations(3, config=TINY), "cache"),
    ]
    for call, name in cases:
        with pytest.raises((TypeError, ValueError), match=name):
            call()
    broken = CharLM(TINY)
    with torch.no_grad():
        broken.W_E[0, 0] = math.nan
    with pytest.raises(ValueError, match="not finite"):
        collect_activations(broken, torch.zeros(200, dtype=torch.long), **kw)
