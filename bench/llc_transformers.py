"""SGLD speed on small transformers: llc.estimate_llc against sequential autograd loops, one run.

Measures the wall time of SGLD on the next-token loss, as seconds per 1,000 steps of 8 chains,
for three ways of running the same chains (same ε, γ, nβ, batch, Euler scheme):

1. ``llc.estimate_llc`` at its default way (all chains in one batched ``vmap`` computation, or
   on the CPU one chain after another for models whose tensors are large: the ``way`` column),
   fixed step size, no warm-up, no preconditioning or noise compensation. Timed as the
   difference of two calls with ``--llc-base`` and ``--llc-base`` + S draws, divided by S, so
   that construction, the losses at w* on all n sequences and other per-call overhead cancel.
2. "loop": a plain sequential autograd loop, devinterp's way: per chain a deep copy of the
   model, per step a minibatch forward, ``loss.backward()`` and the update
   ``w -= ε/2 (nβ ∇L_B + γ (w − w*)) + √ε ξ`` with torch ops on the parameters.
3. "devinterp": devinterp's ``SGMCMC.sgld`` optimizer driven the same way, chain by chain.

In (2) and (3) the copy, the optimizer and a few warm-up steps per chain are not timed; only
the S steps are. Losses are kept as detached tensors (no per-step ``.item()``). The models are
``llc.zoo.TinyTransformer`` (plain torch) and ``llc.zoo.tiny_gpt2`` (Hugging Face GPT-2) at
about 1e4, 1e5 and 1e6 parameters, on ``llc.zoo.markov_tokens`` (vocab 64, 32 tokens,
n = 2048). The table prints the parameter count d, the steps S, the three times and the ratios
loop / llc and devinterp / llc.

Run: ``python bench/llc_transformers.py [--device cpu|cuda] [--models tiny,gpt2]
[--sizes small,medium,large] [--batch 32] [--steps-scale 1.0] [--quick]``

``--quick`` times only the smallest models with few steps (a smoke test, under a minute on
2 CPU cores). On CPU torch runs one thread by default (``--threads``): on a shared machine two
threads made a 9k-parameter step 10-40 times slower through contention. On CUDA every timing
is bracketed by ``torch.cuda.synchronize()``; the default steps are meant to keep the full run
within about five minutes on one H200.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
import warnings

import torch
from devinterp.optim import SGMCMC

import llc
from llc.language import next_token
from llc.zoo import TinyTransformer, markov_tokens, tiny_gpt2

VOCAB, SEQ = 64, 32
# (d_model, n_layers): about 1e4, 1e5 and 1e6 parameters at vocab 64, 32 positions, 4 heads
SIZES = {"small": (16, 2), "medium": (64, 2), "large": (128, 5)}
STEPS = {  # timed steps per chain before --steps-scale: a few seconds per cell
    "cpu": {"small": 60, "medium": 20, "large": 4},
    "cuda": {"small": 100, "medium": 100, "large": 100},
}
WARM = 3  # untimed steps per chain (loops) before the timed ones


def build(kind: str, size: str) -> torch.nn.Module:
    d, layers = SIZES[size]
    if kind == "tiny":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return TinyTransformer(VOCAB, SEQ, d_model=d, n_heads=4, n_layers=layers, d_mlp=4 * d)
    return tiny_gpt2(VOCAB, SEQ, n_layer=layers, n_head=4, n_embd=d)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch_loss(model: torch.nn.Module, xb: torch.Tensor) -> torch.Tensor:
    out = model(xb)
    logits = out if isinstance(out, torch.Tensor) else out.logits
    return next_token(logits, xb).mean()


def loop_steps(m, tokens, steps, *, eps, gamma, nbeta, batch, gen, center) -> list:
    """``steps`` SGLD steps of one chain by hand: autograd, then torch ops on the parameters."""
    params = [p for p in m.parameters() if p.requires_grad]
    losses = []
    for _ in range(steps):
        xb = tokens[torch.randint(tokens.shape[0], (batch,), generator=gen, device=gen.device)]
        loss = batch_loss(m, xb)
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p, p0 in zip(params, center):
                drift = p.grad.mul(nbeta).add_(p - p0, alpha=gamma)
                p.add_(drift, alpha=-eps / 2)
                noise = torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype)
                p.add_(noise, alpha=math.sqrt(eps))
        losses.append(loss.detach())
    return losses


def devinterp_steps(m, tokens, steps, *, opt, batch, gen) -> list:
    """``steps`` steps of one chain with devinterp's SGMCMC.sgld optimizer."""
    losses = []
    for _ in range(steps):
        xb = tokens[torch.randint(tokens.shape[0], (batch,), generator=gen, device=gen.device)]
        loss = batch_loss(m, xb)
        loss.backward()
        opt.step(noise_generator=gen)
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    return losses


def time_sequential(method, model, tokens, steps, *, chains, eps, gamma, nbeta, batch) -> float:
    """Seconds for ``steps`` steps of ``chains`` chains run one after another (copies untimed)."""
    total = 0.0
    for c in range(chains):
        m = copy.deepcopy(model)  # in the model's own mode, as llc samples it
        gen = torch.Generator(device=tokens.device).manual_seed(c)
        if method == "loop":
            center = [p.detach().clone() for p in m.parameters() if p.requires_grad]
            kw = dict(eps=eps, gamma=gamma, nbeta=nbeta, batch=batch, gen=gen, center=center)
            run = loop_steps
        else:
            opt = SGMCMC.sgld(m.parameters(), lr=eps, localization=gamma, nbeta=nbeta)
            kw = dict(opt=opt, batch=batch, gen=gen)
            run = devinterp_steps
        run(m, tokens, WARM, **kw)
        sync(tokens.device)
        t0 = time.perf_counter()
        run(m, tokens, steps, **kw)
        sync(tokens.device)
        total += time.perf_counter() - t0
    return total


def time_llc(model, tokens, steps, *, base, chains, eps, gamma, nbeta, batch) -> tuple:
    """``(seconds, way)``: seconds for ``steps`` draws of estimate_llc, (base + steps draws) −
    (base draws), and the way it evaluated the chains (batched or sequential)."""
    ways = []

    def call(draws: int) -> float:
        sync(tokens.device)
        t0 = time.perf_counter()
        r = llc.estimate_llc(
            model, tokens, loss="next_token", step_size=eps, localization=gamma, nbeta=nbeta,
            num_chains=chains, num_burnin=0, num_draws=draws, batch_size=batch, scheme="euler",
            precondition=False, compensate_noise=False, progress=False, seed=0,
        )  # fmt: skip
        sync(tokens.device)
        ways.append(r.config["execution"].split(":")[0])
        return time.perf_counter() - t0

    call(base)  # warm-up: first vmap / autograd traces, allocator
    return call(base + steps) - call(base), ways[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--models", default="tiny,gpt2", help="comma list of tiny, gpt2")
    ap.add_argument("--sizes", default="small,medium,large", help="small,medium,large")
    ap.add_argument("--batch", type=int, default=32, help="sequences per minibatch")
    ap.add_argument("--n", type=int, default=2048, help="training sequences")
    ap.add_argument("--chains", type=int, default=8)
    ap.add_argument("--steps-scale", type=float, default=1.0, help="multiplies the timed steps")
    ap.add_argument("--llc-base", type=int, default=4, help="draws of the shorter llc call")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (CPU)")
    ap.add_argument("--quick", action="store_true", help="smallest sizes, few steps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # small models on a shared machine: threads only contend
    # a few draws at an untrained w*: the estimates mean nothing here, only the times
    warnings.filterwarnings("ignore", category=llc.LLCWarning)
    device = torch.device(args.device)
    sizes = ["small"] if args.quick else args.sizes.split(",")
    scale = 0.25 if args.quick else args.steps_scale
    eps, gamma = 1e-5, 1.0
    nbeta = args.n / math.log(args.n)
    tokens = markov_tokens(args.n, SEQ, VOCAB, seed=0)[0].to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, device {name}, {torch.get_num_threads()} threads")
    print(
        f"SGLD (Euler), {args.chains} chains, batch {args.batch} × {SEQ} tokens, vocab {VOCAB}, "
        f"n {args.n}, ε {eps:g}, γ {gamma:g}, nβ {nbeta:.1f}; seconds per 1,000 steps of "
        f"{args.chains} chains"
    )
    head = (
        f"{'model':<20}{'d':>10}{'steps':>7}{'llc s':>10}{'loop s':>10}{'devinterp s':>13}"
        f"{'loop/llc':>10}{'devinterp/llc':>15}  way"
    )
    print(head + "\n" + "-" * len(head), flush=True)
    kw = dict(chains=args.chains, eps=eps, gamma=gamma, nbeta=nbeta, batch=args.batch)
    for kind in args.models.split(","):
        for size in sizes:
            model = build(kind, size).to(device)
            d = sum(p.numel() for p in model.parameters())
            steps = max(2, round(STEPS[device.type][size] * scale))
            per_k = 1000 / steps
            t_llc, way = time_llc(model, tokens, steps, base=args.llc_base, **kw)
            t_llc *= per_k
            t_loop = time_sequential("loop", model, tokens, steps, **kw) * per_k
            t_dev = time_sequential("devinterp", model, tokens, steps, **kw) * per_k
            print(
                f"{kind + ' ' + size:<20}{d:>10,}{steps:>7}{t_llc:>10.1f}{t_loop:>10.1f}"
                f"{t_dev:>13.1f}{t_loop / t_llc:>9.1f}×{t_dev / t_llc:>14.1f}×  {way}",
                flush=True,
            )


if __name__ == "__main__":
    main()
