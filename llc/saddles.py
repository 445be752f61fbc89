"""A tracking demo with a known answer: a deep linear network learning saddle to saddle.

``python -m llc demo-training`` trains a deep linear network from small initialisation on a
teacher with well-separated singular values. Gradient descent learns the teacher's modes one at
a time: the loss sits on a plateau at a saddle where the network's map has rank r, then drops
as mode r + 1 is learned. The tracker follows the behavioral LLC (see Notes of
:func:`run_demo`), which should step up with the learned rank towards Aoyagi's λ(r).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from theory.exact import deep_linear_network
from theory.gibbs import dln_gibbs_llc
from theory.models import DeepLinearNetwork

from ._cli import nonnegative_int, positive_int
from .estimator import estimate_llc
from .tracking import LLCTracker, LogSchedule
from .trajectory import LLCTrajectory

__all__ = ["SaddleDemo", "learned_rank", "run_demo", "saddle_problem", "train_saddles"]

WIDTHS = (5, 4, 4, 5)
SINGULAR_VALUES = (6.0, 2.5, 1.0)


def _teacher(widths, singular_values, gen) -> torch.Tensor:
    out_dim, in_dim = widths[-1], widths[0]
    u, _ = torch.linalg.qr(torch.randn(out_dim, out_dim, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(in_dim, in_dim, generator=gen, dtype=torch.float64))
    r = len(singular_values)
    return u[:, :r] @ torch.diag(torch.tensor(singular_values, dtype=torch.float64)) @ v[:, :r].T


def learned_rank(model: DeepLinearNetwork, singular_values, threshold: float = 0.5) -> int:
    """Modes learned: the product's k-th singular value above ``threshold`` of the teacher's."""
    with torch.no_grad():
        prod = model[0].weight.double()
        for layer in list(model)[1:]:
            prod = layer.weight.double() @ prod
        s = torch.linalg.svdvals(prod)
    return int(sum(float(s[k]) > threshold * t for k, t in enumerate(singular_values)))


def saddle_problem(widths=WIDTHS, singular_values=SINGULAR_VALUES, n: int = 1000, seed: int = 0):
    """``(x, y)``: n Gaussian inputs and ``y = T x`` for a teacher T of the given singular
    values (random singular vectors), float64."""
    gen = torch.Generator().manual_seed(seed)
    target = _teacher(widths, singular_values, gen)
    x = torch.randn(n, widths[0], generator=gen, dtype=torch.float64)
    return x, x @ target.T


def train_saddles(
    x: torch.Tensor,
    y: torch.Tensor,
    tracker: LLCTracker | None = None,
    *,
    widths=WIDTHS,
    singular_values=SINGULAR_VALUES,
    steps: int = 2500,
    lr: float = 0.02,
    init_scale: float = 0.05,
    seed: int = 0,
):
    """Full-batch gradient descent from small initialisation, with ``tracker`` called each step.

    Returns ``(model, losses, ranks, checkpoints)``: training losses and learned ranks per step,
    and the state dict at every step the tracker estimated.
    """
    gen = torch.Generator().manual_seed(seed + 1)
    model = DeepLinearNetwork(widths).double()
    with torch.no_grad():
        for layer in model:
            layer.weight.copy_(init_scale * torch.randn(layer.weight.shape, generator=gen))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses, ranks, checkpoints = [], [], {}
    for t in range(steps + 1):
        loss = 0.5 * ((model(x) - y) ** 2).sum(1).mean()
        losses.append(loss.item())
        ranks.append(learned_rank(model, singular_values))
        if tracker is not None and tracker.step(model, t, train_loss=loss.item()) is not None:
            checkpoints[t] = {k: v.clone() for k, v in model.state_dict().items()}
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, np.array(losses), np.array(ranks), checkpoints


@dataclass(frozen=True)
class SaddleDemo:
    """The demo's trajectory and, per plateau, the estimate against its exact values.

    Attributes
    ----------
    trajectory : LLCTrajectory
        The tracked behavioral LLC.
    ranks : ndarray, shape (estimate,)
        Learned rank at each tracked step.
    plateaus : tuple of dict
        Per learned rank r: the step in the middle of its plateau, λ̂ there, Aoyagi's λ(r), the
        exact finite-n target λ_n at that point (Gibbs sampler), and λ̂ of the training loss.
    widths : tuple of int
    """

    trajectory: LLCTrajectory
    ranks: np.ndarray
    plateaus: tuple[dict, ...]
    widths: tuple[int, ...]

    def summary(self) -> str:
        lines = [
            f"DLN {'-'.join(map(str, self.widths))}: behavioral LLC per plateau",
            f"{'rank':>4} {'step':>6} {'λ̂':>8} {'± MCSE':>7} {'λ_n':>8} {'Aoyagi λ':>9} "
            f"{'λ̂/λ_n':>7} {'λ̂/λ':>6} {'λ̂ training loss':>16}",
        ]
        for p in self.plateaus:
            lines.append(
                f"{p['rank']:>4} {p['step']:>6} {p['llc']:>8.3f} {p['mcse']:>7.3f} "
                f"{p['finite_n']:>8.3f} {p['aoyagi']:>9.3f} {p['llc'] / p['finite_n']:>7.3f} "
                f"{p['llc'] / p['aoyagi']:>6.3f} {p['llc_training_loss']:>16.3f}"
            )
        return "\n".join(lines)

    def plot(self):
        """λ̂ over training with Aoyagi's λ(r) for each rank as horizontal lines."""
        exact = {f"λ(r={p['rank']})": p["aoyagi"] for p in self.plateaus}
        fig = self.trajectory.plot(exact=exact)
        ax = fig.axes[0]
        for p in self.plateaus:
            ax.annotate(f"r={p['rank']}", (max(p["step"], 1), p["aoyagi"]), fontsize=8,
                        xytext=(2, 2), textcoords="offset points")  # fmt: skip
        ax.set_title("Deep linear network, saddle to saddle: behavioral LLC during training")
        return fig


def _plateau_steps(steps: np.ndarray, ranks: np.ndarray) -> dict[int, int]:
    """For each learned rank, the tracked step in the middle of its run of estimates."""
    out = {}
    for r in np.unique(ranks):
        idx = np.flatnonzero(ranks == r)
        out[int(r)] = int(steps[idx[len(idx) // 2]])
    return out


def run_demo(
    *,
    steps: int = 2500,
    num_estimates: int = 30,
    seed: int = 0,
    progress: bool = True,
    **estimate_kwargs,
) -> SaddleDemo:
    """Train, track the behavioral LLC, and compare each plateau with its exact values.

    Notes
    -----
    A plateau is a saddle of the training loss, not a minimum: the posterior there puts mass
    where the next mode is learned, so the training-loss λ̂ is negative (its warning says so) and
    the LLC of the training loss is not defined. The behavioral LLC, the LLC of
    ``K(w) = ½ E‖f_w(x) − f_{w*}(x)‖²`` (``loss="behavioral"``), is: w* is a true parameter of
    the rank-r map it computes. Asymptotically its local coefficient equals Aoyagi's λ(r): the
    trained point is balanced (``W_{l+1}ᵀ W_{l+1} ≈ W_l W_lᵀ``) rather than in normal form, but
    every layer has rank r and ``w ↦ (A_L W_L A_{L−1}⁻¹, …, A_1 W_1)`` maps it to a normal-form
    point, and the learning coefficient is invariant under such invertible reparametrisations.
    At finite nβ the localization ``γ‖w − w*‖²/2`` is not invariant under them, so the finite-n
    target λ_n at the trained point (from the exact Gibbs sampler) differs from λ(r): λ̂ is to be
    compared with λ_n, and λ_n − λ(r) is the finite-n gap.
    """
    x, y = saddle_problem(seed=seed)
    tracker = LLCTracker(
        x,
        every=LogSchedule(steps, num=num_estimates, first=0),
        loss="behavioral",
        progress=progress,
        seed=seed,
        **estimate_kwargs,
    )
    _, _, ranks, ckpts = train_saddles(x, y, tracker, steps=steps, seed=seed)
    traj = tracker.trajectory
    tracked_ranks = ranks[traj.steps]
    plateaus = []
    nbeta, gamma = traj.records[0].settings["nbeta"], traj.records[0].settings["localization"]
    for r, step in _plateau_steps(traj.steps, tracked_ranks).items():
        at = DeepLinearNetwork(WIDTHS).double()
        at.load_state_dict(ckpts[step])
        rec = traj.records[int(np.flatnonzero(traj.steps == step)[0])]
        with torch.no_grad():
            fx = at(x)
        gibbs = dln_gibbs_llc(at, (x, fx), nbeta=nbeta, localization=gamma, seed=seed,
                              progress=False)  # fmt: skip
        plain = estimate_llc(at, (x, y), nbeta=nbeta, localization=gamma,
                             seed=seed, progress=False, max_draws=2000)  # fmt: skip
        plateaus.append({
            "rank": r, "step": step, "llc": rec.llc, "mcse": rec.mcse,
            "finite_n": float(gibbs.mean), "aoyagi": float(deep_linear_network(WIDTHS, r).value),
            "llc_training_loss": plain.mean,
        })  # fmt: skip
    return SaddleDemo(traj, tracked_ranks, tuple(plateaus), WIDTHS)


def main(argv=None) -> int:
    """``python -m llc demo-training``: the table and the figure."""
    import argparse
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    parser = argparse.ArgumentParser(prog="python -m llc demo-training", description=__doc__)
    parser.add_argument("--steps", type=positive_int, default=2500)
    parser.add_argument("--estimates", type=positive_int, default=30)
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--out", default="validate_out")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    demo = run_demo(
        steps=args.steps, num_estimates=args.estimates, seed=args.seed, progress=args.progress
    )
    print(demo.trajectory.summary())
    print()
    print(demo.summary())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    demo.plot().savefig(out / "llc_demo_training.png", dpi=120)
    print(f"wrote {out / 'llc_demo_training.png'}")
    return 0 if all(math.isfinite(p["llc"]) for p in demo.plateaus) else 1
