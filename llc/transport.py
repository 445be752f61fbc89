"""The transport phase of warm-up: moves along the network's symmetry orbits.

Between the spreading phase and SGLD's last warm-up phase, the chains take rounds of
Metropolis–Hastings moves along the orbits of :mod:`llc.symmetry` (one move per link per
round; the model is never evaluated). The phase ends when the chains' squared distance from w*
has levelled off over windows of :data:`WINDOW` rounds (:data:`llc.adaptation.convergence.spread`,
after at least :data:`MIN_WINDOWS`), or at ``max_rounds`` (16,000 rounds carried DLN 60x6 to
λ_n within 1 %; ``docs/design.md``). SGLD then sets its step from the
curvature where the chains arrived.

The moves change neither the loss nor, to first order, the chains' fluctuations across the
orbits; what they change is where along the funnel of the posterior the chains sit, which SGLD
alone reaches only with steps that shrink on the way out (``docs/design.md``, issue 16).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .adaptation import convergence, orbit_scale
from .sampling import progress_bar
from .symmetry import TARGET_ACCEPTANCE, Link, move, propose

__all__ = ["MAX_ROUNDS", "MIN_WINDOWS", "WINDOW", "TransportResult", "mean_distance", "transport"]

WINDOW = 250  # rounds between two readings of the spread
MIN_WINDOWS = 8
MAX_ROUNDS = 16_000


@dataclass(frozen=True)
class TransportResult:
    """Where the transport phase left the chains.

    Attributes
    ----------
    position : Tensor, shape (chain, D)
    rounds : int
        Rounds of moves (one per link each).
    converged : bool
        The spread levelled off before ``max_rounds``.
    scales, acceptance : tuple of float
        Per link: the adapted scale of X and the mean acceptance.
    distance : tuple of float
        The chains' mean ``‖w − w*‖`` before and after.
    """

    position: torch.Tensor
    rounds: int
    converged: bool
    scales: tuple[float, ...]
    acceptance: tuple[float, ...]
    distance: tuple[float, float]

    def record(self) -> dict:
        """For ``config["transport"]``."""
        return {
            "rounds": self.rounds,
            "converged": self.converged,
            "links": len(self.scales),
            "acceptance": round(sum(self.acceptance) / max(len(self.acceptance), 1), 3),
            "distance_before": round(self.distance[0], 4),
            "distance_after": round(self.distance[1], 4),
        }


def transport(
    position: torch.Tensor,
    links: tuple[Link, ...],
    center: torch.Tensor,
    localization,
    gen: torch.Generator,
    *,
    max_rounds: int = MAX_ROUNDS,
    window: int = WINDOW,
    min_windows: int = MIN_WINDOWS,
    deadline: float | None = None,
    progress: bool = False,
) -> TransportResult:
    """Rounds of orbit moves from ``position`` (chain, D) until the spread levels off.

    ``localization`` is γ (a float, or a (chain, 1) tensor); ``gen`` draws the proposals. With a
    ``deadline`` (a :func:`time.perf_counter` value) no window after the first starts after it.
    """
    before = mean_distance(position, center)
    scales, spread = orbit_scale.init(len(links)), convergence.spread.init()
    rounds, converged, windows = 0, False, 0
    bar = progress_bar(max_rounds, "orbit moves (at most)", progress)
    while rounds < max_rounds and not converged and not (windows and _past(deadline)):
        for _ in range(min(window, max_rounds - rounds)):
            position, scales = _round(position, links, center, localization, gen, scales)
            rounds += 1
        bar.update(window)
        windows += 1
        sq = ((position - center) ** 2).sum(1).double().cpu().numpy()
        spread = convergence.spread.update(spread, sq)
        converged = windows >= min_windows and convergence.spread.final(spread)
    bar.close()
    final_scales, acceptance = orbit_scale.final(scales)
    return TransportResult(position, rounds, converged, final_scales, acceptance,
                           (before, mean_distance(position, center)))  # fmt: skip


def _round(position, links, center, localization, gen, scales):
    """One move per link, in order; the scales adapt to each link's acceptance."""
    rates = []
    for link, log_s in zip(links, scales.log_scales):
        x, log_u = propose(gen, position.shape[0], link, math.exp(log_s), position.device)
        position, accepted = move(position, link, x, log_u, center, localization)
        rates.append(float(accepted.double().mean()))
    return position, orbit_scale.update(scales, rates, TARGET_ACCEPTANCE)


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() >= deadline


def mean_distance(position, center) -> float:
    """The chains' mean ``‖w − w*‖`` for positions (chain, D)."""
    return float(((position - center) ** 2).sum(1).sqrt().double().mean())
