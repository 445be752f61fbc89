"""SGLD speed on models of the generic (``vmap``) path: llc.estimate_llc against sequential loops.

Measures the wall time of SGLD, as seconds per 1,000 steps of 8 chains (``--chains``), on models
that do not take the hand-written MLP path: CNNs, a ResNet block with BatchNorm (eval mode), an
MLP with LayerNorm and deep linear networks behind a custom ``forward``. Three ways of running
the same chains (same ε, γ, nβ, batch, Euler scheme, chains, steps):

1. "ours": ``llc.estimate_llc`` at its default ``vectorize=None`` (all chains in one vmapped
   pass, or one chain after another for a model that calls a convolution on the CPU; the
   ``way`` column says which), fixed step size, no warm-up (``num_burnin=0``), no preconditioning or
   noise compensation, explicit nβ and γ. Timed as the difference of two calls with
   ``--llc-base`` (≥ 10) and ``--llc-base`` + S draws, divided by S, so
   that construction, the losses at w* on all n samples and other per-call overhead cancel (one
   untimed call first warms up the allocator).
2. "loop": a lean sequential autograd loop: per chain a deep copy of the model, per step an
   indexed minibatch ``X[idx]`` (``torch.randint`` from a per-chain generator), forward, loss,
   ``loss.backward()`` and the update ``w -= ε/2 (nβ ∇L_B + γ (w − w*)) + √ε ξ`` with torch ops
   on the parameters. Leaner than devinterp's own loop (no DataLoader).
3. "devinterp": devinterp's ``SGMCMC.sgld`` optimizer driven the same way, chain by chain.

In (2) and (3) the copy, the optimizer and a few warm-up steps per chain are not timed; only the
S steps are. Losses are kept as detached tensors (no per-step ``.item()``). The LLC values
themselves (a few draws at an untrained w*) mean nothing here; ``LLCWarning`` is silenced.

Models (built in code under ``torch.random.fork_rng``, so the global RNG is untouched; inputs
8×8 single-channel images for the convolutional ones, n = 4096 samples, seeded):

- ``cnn1e3``: Conv2d(1,8,3,p=1), ReLU, MaxPool2d(2), Flatten, Linear(128,10): 1,370 parameters.
- ``cnn1e4``: Conv2d(1,16,3,p=1), ReLU, Conv2d(16,32,3,p=1), ReLU, MaxPool2d(2), Flatten,
  Linear(512,10): 9,930 parameters.
- ``cnn1e5``: Conv2d(1,32,3,p=1), ReLU, Conv2d(32,64,3,p=1), ReLU, MaxPool2d(2),
  Conv2d(64,128,3,p=1), ReLU, MaxPool2d(2), Flatten, Linear(512,10): 97,802 parameters (8×8
  inputs suffice).
- ``resnet``: Conv(1,16,3,p=1)+BN+ReLU, one residual block (Conv+BN+ReLU+Conv+BN plus the
  skip), ReLU, global average pool, Linear(16,10): 5,066 parameters; BatchNorm running
  statistics set by a few train-mode passes over the data, then ``.eval()``.
- ``mlp_ln``: Linear(64,64), LayerNorm, ReLU, Linear(64,64), LayerNorm, ReLU, Linear(64,10):
  9,226 parameters, 64-dim inputs.
- ``dln1e3``, ``dln5e3``: deep linear networks, an ``nn.ParameterList`` of matrices and a custom
  ``forward`` (``for W in self.weights: x = x @ W``), widths 16-16-16-16-16 (1,024 parameters)
  and 20-40-40-40-20 (4,800 parameters).

Classifiers use cross-entropy with labels from a random teacher network of the same kind
(learnable data; the argmax of its logits standardised per class, so the classes are
balanced); the DLNs use MSE (``½‖y − f(x)‖²`` per sample, as ``loss="mse"``) with targets
from a random teacher DLN plus Gaussian noise (σ = 0.1). The sampled w* is the student's random
initialisation: only the speed is measured here.

"loop GF/s" and "ours GF/s" are the matmul and convolution work of a step (3× the forward
pass's, counted by ``torch.utils.flop_counter``) over the time taken, beside the machine's fp32
rate on a 1024² matmul: a loop already near that rate leaves batching nothing to gain.

Targets (from the issue): ours never slower than the lean loop; at least 4× faster than the lean
loop on every model up to 1e4 parameters; at least 10× on the custom-forward DLNs.

Run: ``python bench/llc_generic.py [--models cnn1e3,dln1e3,...] [--batch 512] [--chains 8]
[--steps S] [--llc-base 12] [--threads 1] [--load K] [--quick]``

``--quick`` times only ``cnn1e3`` and ``dln1e3`` with few steps (a smoke test, well under a
minute on 2 CPU cores). ``--steps`` overrides the per-model default steps (chosen so that each
cell takes a few seconds on one CPU thread). torch runs one thread by default (``--threads``):
on a shared machine more threads mostly contend. ``--load K`` runs K busy-loop processes for the
duration of the timing (killed at the end), to see how the ratios hold on a loaded machine.

The timing functions (:func:`time_ours`, :func:`time_loop`, :func:`time_devinterp`) and the
model builder (:func:`build`) can be imported by other scripts.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import subprocess
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from devinterp.optim import SGMCMC
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import llc

N = 4096  # samples
CLASSES = 10
WARM = 3  # untimed steps per chain (loops) before the timed ones
MODELS = ("cnn1e3", "cnn1e4", "cnn1e5", "resnet", "mlp_ln", "dln1e3", "dln5e3")
QUICK = ("cnn1e3", "dln1e3")
STEPS = {  # default timed steps per chain: a few seconds per cell on one CPU thread
    "cnn1e3": 100,
    "cnn1e4": 40,
    "cnn1e5": 12,
    "resnet": 60,
    "mlp_ln": 400,
    "dln1e3": 1000,
    "dln5e3": 1000,
}
QUICK_STEPS = {"cnn1e3": 20, "dln1e3": 200}
DLN_WIDTHS = {"dln1e3": (16, 16, 16, 16, 16), "dln5e3": (20, 40, 40, 40, 20)}


# ----------------------------------------------------------------------------- models


class DLN(nn.Module):
    """Deep linear network behind a custom forward: ``x @ W1 @ W2 @ ...``."""

    def __init__(self, widths: tuple[int, ...]):
        super().__init__()
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(a, b) / math.sqrt(a)) for a, b in zip(widths, widths[1:])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for W in self.weights:
            x = x @ W
        return x


class ResNetBlock(nn.Module):
    """Conv+BN+ReLU stem, one residual block with BatchNorm, global average pool, linear head."""

    def __init__(self, channels: int = 16, classes: int = CLASSES):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        r = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(h)))))
        h = F.relu(h + r)
        return self.head(h.mean(dim=(2, 3)))


def _net(name: str) -> nn.Module:
    if name == "cnn1e3":
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(128, CLASSES),
        )  # fmt: skip
    if name == "cnn1e4":
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(512, CLASSES),
        )  # fmt: skip
    if name == "cnn1e5":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(512, CLASSES),
        )  # fmt: skip
    if name == "resnet":
        return ResNetBlock()
    if name == "mlp_ln":
        return nn.Sequential(
            nn.Linear(64, 64), nn.LayerNorm(64), nn.ReLU(), nn.Linear(64, 64), nn.LayerNorm(64),
            nn.ReLU(), nn.Linear(64, CLASSES),
        )  # fmt: skip
    if name in DLN_WIDTHS:
        return DLN(DLN_WIDTHS[name])
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")


def _make(name: str, seed: int, X: torch.Tensor) -> nn.Module:
    """The network ``name`` initialised from ``seed``, BatchNorm statistics set on ``X``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _net(name)
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
            net.train()
            with torch.no_grad():  # non-trivial running statistics, then eval mode
                for chunk in X[:2048].split(256):
                    net(chunk)
        return net.eval()


def build(name: str, n: int = N) -> tuple[nn.Module, torch.Tensor, torch.Tensor, str]:
    """``(model, X, Y, loss)`` for the named benchmark model, all seeded (global RNG untouched).

    ``loss`` is ``"cross_entropy"`` (labels: argmax of a random teacher of the same kind, its
    logits standardised per class over the data so that the classes are balanced) or
    ``"mse"`` (DLNs: a random teacher DLN's outputs plus noise of standard deviation 0.1)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        if name.startswith(("cnn", "resnet")):
            X = torch.randn(n, 1, 8, 8)
        elif name == "mlp_ln":
            X = torch.randn(n, 64)
        elif name in DLN_WIDTHS:
            X = torch.randn(n, DLN_WIDTHS[name][0])
        else:
            _net(name)  # raises for an unknown name
        noise = torch.randn(n, DLN_WIDTHS[name][-1]) if name in DLN_WIDTHS else None
    teacher = _make(name, 1, X)
    with torch.no_grad():
        out = teacher(X)
    if noise is None:  # logits standardised per class first, so that every class occurs
        Y, loss = ((out - out.mean(0)) / out.std(0)).argmax(dim=1), "cross_entropy"
    else:
        Y, loss = out + 0.1 * noise, "mse"
    return _make(name, 0, X), X, Y, loss


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- timing


def batch_loss(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, loss: str) -> torch.Tensor:
    """Mean minibatch loss, as ``estimate_llc`` defines it for ``loss``."""
    out = model(xb)
    if loss == "cross_entropy":
        return F.cross_entropy(out, yb)
    if loss == "mse":
        return 0.5 * (out - yb).pow(2).sum(dim=1).mean()
    raise ValueError(f"loss must be 'cross_entropy' or 'mse', not {loss!r}")


def loop_steps(m, X, Y, loss, steps, *, eps, gamma, nbeta, batch, gen, center) -> list:
    """``steps`` SGLD steps of one chain by hand: autograd, then torch ops on the parameters."""
    params = [p for p in m.parameters() if p.requires_grad]
    losses = []
    for _ in range(steps):
        idx = torch.randint(X.shape[0], (batch,), generator=gen, device=gen.device)
        lb = batch_loss(m, X[idx], Y[idx], loss)
        for p in params:
            p.grad = None
        lb.backward()
        with torch.no_grad():
            for p, p0 in zip(params, center):
                drift = p.grad.mul(nbeta).add_(p - p0, alpha=gamma)
                p.add_(drift, alpha=-eps / 2)
                noise = torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype)
                p.add_(noise, alpha=math.sqrt(eps))
        losses.append(lb.detach())
    return losses


def devinterp_steps(m, X, Y, loss, steps, *, opt, batch, gen) -> list:
    """``steps`` steps of one chain with devinterp's SGMCMC.sgld optimizer."""
    losses = []
    for _ in range(steps):
        idx = torch.randint(X.shape[0], (batch,), generator=gen, device=gen.device)
        lb = batch_loss(m, X[idx], Y[idx], loss)
        lb.backward()
        opt.step(noise_generator=gen)
        opt.zero_grad(set_to_none=True)
        losses.append(lb.detach())
    return losses


def _time_sequential(method, model, X, Y, loss, steps, *, chains, eps, gamma, nbeta, batch):
    """Seconds for ``steps`` steps of ``chains`` chains run one after another (copies untimed)."""
    total = 0.0
    for c in range(chains):
        m = copy.deepcopy(model)  # in the model's own mode (eval for BatchNorm), as llc samples it
        gen = torch.Generator(device=X.device).manual_seed(c)
        if method == "loop":
            center = [p.detach().clone() for p in m.parameters() if p.requires_grad]
            kw = dict(eps=eps, gamma=gamma, nbeta=nbeta, batch=batch, gen=gen, center=center)
            run = loop_steps
        else:
            opt = SGMCMC.sgld(m.parameters(), lr=eps, localization=gamma, nbeta=nbeta)
            kw = dict(opt=opt, batch=batch, gen=gen)
            run = devinterp_steps
        run(m, X, Y, loss, WARM, **kw)
        t0 = time.perf_counter()
        run(m, X, Y, loss, steps, **kw)
        total += time.perf_counter() - t0
    return total


def time_loop(model, X, Y, loss, steps, *, chains=8, eps=1e-5, gamma=1.0, nbeta, batch=512):
    """Seconds for ``steps`` steps of ``chains`` chains of the lean indexed autograd loop."""
    kw = dict(chains=chains, eps=eps, gamma=gamma, nbeta=nbeta, batch=batch)
    return _time_sequential("loop", model, X, Y, loss, steps, **kw)


def time_devinterp(model, X, Y, loss, steps, *, chains=8, eps=1e-5, gamma=1.0, nbeta, batch=512):
    """Seconds for ``steps`` steps of ``chains`` chains of devinterp's ``SGMCMC.sgld``."""
    kw = dict(chains=chains, eps=eps, gamma=gamma, nbeta=nbeta, batch=batch)
    return _time_sequential("devinterp", model, X, Y, loss, steps, **kw)


def time_ours(
    model, X, Y, loss, steps, *, chains=8, eps=1e-5, gamma=1.0, nbeta, batch=512, base=12
) -> float:
    """Seconds for ``steps`` draws of ``chains`` chains in ``llc.estimate_llc``:
    (base + steps draws) − (base draws), after one untimed warm-up call."""

    def call(draws: int) -> float:
        t0 = time.perf_counter()
        llc.estimate_llc(
            model, (X, Y), loss=loss, step_size=eps, localization=gamma, nbeta=nbeta,
            num_chains=chains, num_burnin=0, num_draws=draws, batch_size=batch, scheme="euler",
            precondition=False, compensate_noise=False, progress=False, seed=0,
        )  # fmt: skip
        return time.perf_counter() - t0

    call(base)  # warm-up: first vmap / autograd traces, allocator
    return call(base + steps) - call(base)


def step_flops(model, xb, chains: int) -> float:
    """Floating-point operations of one step of ``chains`` chains: 3× the forward pass's matmul
    and convolution operations on one minibatch ``xb`` (the backward costs about twice it)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(xb)
    return 3.0 * counter.get_total_flops() * chains


def matmul_rate(size: int = 1024, repeats: int = 20) -> float:
    """The machine's fp32 matmul rate in GFLOP/s (best of ``repeats``), on torch's threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def chosen_way(model, X, Y, loss, *, chains=8, eps=1e-5, gamma=1.0, nbeta, batch=512) -> str:
    """How ``estimate_llc`` evaluates this model's chains: batched or sequential."""
    r = llc.estimate_llc(
        model, (X, Y), loss=loss, step_size=eps, localization=gamma, nbeta=nbeta,
        num_chains=chains, num_burnin=0, num_draws=12, batch_size=batch, progress=False, seed=0,
    )  # fmt: skip
    return r.config["execution"].split(":")[0]


@contextlib.contextmanager
def busy_load(k: int):
    """``k`` busy-loop subprocesses for the duration of the block (killed, by handle, after)."""
    procs = []
    try:
        for _ in range(k):
            procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma list of " + ",".join(MODELS))
    ap.add_argument("--batch", type=int, default=512, help="samples per minibatch")
    ap.add_argument("--chains", type=int, default=8)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per chain (all models)")
    ap.add_argument("--llc-base", type=int, default=12, help="draws of the shorter llc call")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--load", type=int, default=0, help="busy-loop processes during the timing")
    ap.add_argument("--quick", action="store_true", help="smallest models, few steps")
    args = ap.parse_args()
    if args.llc_base < 10:
        ap.error(
            "--llc-base must be >= 10 (the first 8 steps time the batched and sequential ways)"
        )
    torch.set_num_threads(args.threads)
    # the estimates themselves (a few draws at a random w*) are meaningless here: no advice
    warnings.filterwarnings("ignore", category=llc.LLCWarning)
    names = list(QUICK) if args.quick else args.models.split(",")
    for name in names:
        if name not in MODELS:
            ap.error(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    eps, gamma = 1e-5, 1.0
    nbeta = N / math.log(N)
    print(
        f"torch {torch.__version__}, cpu, {torch.get_num_threads()} threads, "
        f"load {args.load} busy-loop process{'es' if args.load != 1 else ''}"
    )
    print(
        f"SGLD (Euler), {args.chains} chains, batch {args.batch}, n {N}, ε {eps:g}, γ {gamma:g}, "
        f"nβ {nbeta:.1f}; seconds per 1,000 steps of {args.chains} chains"
    )
    peak = matmul_rate()
    print(f"fp32 matmul rate (1024², {torch.get_num_threads()} threads): {peak:.0f} GFLOP/s")
    head = (
        f"{'model':<10}{'d':>9}{'steps':>7}{'ours s':>10}{'loop s':>10}{'devinterp s':>13}"
        f"{'loop/ours':>11}{'devinterp/ours':>16}{'loop GF/s':>11}{'ours GF/s':>11}  way"
    )
    kw = dict(chains=args.chains, eps=eps, gamma=gamma, nbeta=nbeta, batch=args.batch)
    with busy_load(args.load):
        print(head + "\n" + "-" * len(head), flush=True)
        for name in names:
            model, X, Y, loss = build(name)
            steps = args.steps or (QUICK_STEPS if args.quick else STEPS)[name]
            per_k = 1000 / steps
            t_ours = time_ours(model, X, Y, loss, steps, base=args.llc_base, **kw) * per_k
            t_loop = time_loop(model, X, Y, loss, steps, **kw) * per_k
            t_dev = time_devinterp(model, X, Y, loss, steps, **kw) * per_k
            gflop = step_flops(model, X[: args.batch], args.chains) * 1000 / 1e9
            way = chosen_way(model, X, Y, loss, **kw)
            print(
                f"{name:<10}{num_params(model):>9,}{steps:>7}{t_ours:>10.2f}{t_loop:>10.2f}"
                f"{t_dev:>13.2f}{t_loop / t_ours:>10.1f}×{t_dev / t_ours:>15.1f}×"
                f"{gflop / t_loop:>11.1f}{gflop / t_ours:>11.1f}  {way}",
                flush=True,
            )


if __name__ == "__main__":
    main()
