r"""Planted shared cause, a small network trained on it, and which of its features are natural.

Data: a discrete cause :math:`Z` uniform on ``n_values`` values and two views, each made of
``n_copies`` noisy copies of :math:`Z` (each copy is :math:`Z` with probability
``1 - noise``, otherwise a uniform random value), all copies independent given :math:`Z`.  So
:math:`Z` mediates the views exactly and is redundant up to :math:`I(Z; X_2 | X_1)`.

A one-hidden-layer ReLU MLP reads both views (one-hot copies) and predicts :math:`Z`.  Because
the inputs take finitely many values, the exact joint law of (view 1, view 2, feature) is
available for every feature (a hidden unit, a principal direction or an interaction-basis
direction of the hidden layer, the predicted class) once its activation is binned, and its
natural-latent errors are exact.

References
----------
L. Bushnaq et al., "The Local Interaction Basis", arXiv:2405.10928 (2024), for the interaction
basis (:func:`theory.interaction.interaction_basis`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._info import cond_entropy_nats, cond_mutual_info_nats
from .discrete import _unit_name, natural_latent_errors
from .samples import discretize

__all__ = ["PlantedCause", "TwoViewMLP", "train_two_view_mlp", "LatentTable",
           "candidate_labels", "candidate_latent_table", "hidden_interaction_features"]


@dataclass(frozen=True)
class PlantedCause:
    """Two noisy views of one discrete variable (see module notes)."""

    n_values: int = 2
    n_copies: int = 4
    noise: float = 0.2

    def __post_init__(self) -> None:
        if self.n_values < 2 or self.n_copies < 1:
            raise ValueError("n_values must be >= 2 and n_copies >= 1")
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1]; got {self.noise}")

    @property
    def n_view_values(self) -> int:
        """Number of values of one view, ``n_values ** n_copies``."""
        return self.n_values**self.n_copies

    def view_copies(self) -> np.ndarray:
        """(n_view_values, n_copies) int array: the copies encoded by each view code."""
        return np.array(list(np.ndindex(*(self.n_values,) * self.n_copies)), dtype=np.int64)

    def joint(self) -> np.ndarray:
        """Exact ``p[z, x1, x2]``, shape (n_values, n_view_values, n_view_values)."""
        k = self.n_values
        copy = np.full((k, k), self.noise / k) + (1.0 - self.noise) * np.eye(k)  # p(copy | z)
        pv = np.prod(copy[:, self.view_copies()], axis=-1)  # (k, n_view_values): p(view | z)
        return np.einsum("z,za,zb->zab", np.full(k, 1.0 / k), pv, pv)

    def sample(self, n: int, seed: int | np.random.Generator = 0) -> tuple[np.ndarray, ...]:
        """``(z, x1, x2)`` view codes for ``n`` draws (seeded)."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        p = self.joint()
        flat = rng.choice(p.size, size=n, p=p.ravel())
        return np.unravel_index(flat, p.shape)

    def one_hot(self, x1: Any, x2: Any) -> torch.Tensor:
        """Network input for view codes: one-hot of every copy, shape (n, 2 n_copies n_values)."""
        cp = torch.as_tensor(self.view_copies())
        x1, x2 = torch.as_tensor(np.asarray(x1)), torch.as_tensor(np.asarray(x2))
        oh = torch.nn.functional.one_hot(torch.cat([cp[x1], cp[x2]], 1), self.n_values)
        return oh.reshape(len(x1), -1).double()


class TwoViewMLP(nn.Module):
    """``Linear -> ReLU -> Linear`` classifier of Z from both views; ``hidden(x)`` is the layer."""

    def __init__(self, d_in: int, width: int, n_out: int) -> None:
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.out = nn.Linear(width, n_out)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.inp(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(x))


def train_two_view_mlp(cause: PlantedCause, width: int = 8, n_train: int = 4000,
                       steps: int = 400, lr: float = 0.03, weight_decay: float = 1e-3,
                       seed: int = 0, device: str | torch.device = "cpu",
                       progress: bool = False) -> tuple[TwoViewMLP, list[float]]:
    """Train a :class:`TwoViewMLP` (Adam, full batch, cross-entropy) on sampled data.

    Parameters
    ----------
    cause : PlantedCause
        Data distribution; ``n_train`` draws (seeded by ``seed``) form the training set.
    width : int
        Hidden units.
    n_train, steps, lr, weight_decay : int, int, float, float
        Training-set size, full-batch Adam steps, learning rate, weight decay.
    seed : int
        Seeds the data draw and the initialisation; torch's global RNG is left untouched
        (initialisation runs under ``torch.random.fork_rng``).
    device : str or torch.device
        Where to train.
    progress : bool
        tqdm bar over steps.

    Returns
    -------
    model, losses : the trained network (float64) and the training loss per step.
    """
    z, x1, x2 = cause.sample(n_train, seed)
    # Full-batch cross-entropy over the samples equals the count-weighted loss over the
    # distinct (z, x1, x2) triples, which is much cheaper.
    trip, counts = np.unique(np.stack([z, x1, x2], 1), axis=0, return_counts=True)
    x = cause.one_hot(trip[:, 1], trip[:, 2]).to(device)
    y = torch.as_tensor(trip[:, 0], device=device)
    wts = torch.as_tensor(counts / counts.sum(), device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TwoViewMLP(x.shape[1], width, cause.n_values).double().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    for _ in tqdm(range(steps), disable=not progress, desc="train"):
        opt.zero_grad()
        loss = (wts * nn.functional.cross_entropy(model(x), y, reduction="none")).sum()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return model, losses


@dataclass(frozen=True)
class LatentTable:
    """Exact natural-latent diagnostics of candidate features over the two views.

    Columns (one entry per candidate, in ``names`` order), in ``units``:
    ``mediation`` ε_med; ``redundancy`` max_i I(Λ; X_{-i}|X_i); ``det_redundancy``
    max_i H(Λ|X_i); ``info_cause`` I(Λ; Z); ``cause_given`` H(Z|Λ); ``given_cause`` H(Λ|Z);
    ``bound_cause_given`` the theorem's bound ε_med(Λ) + 2 max_i H(Z|X_i) on H(Z|Λ).
    """

    names: tuple[str, ...]
    mediation: tuple[float, ...]
    redundancy: tuple[float, ...]
    det_redundancy: tuple[float, ...]
    info_cause: tuple[float, ...]
    cause_given: tuple[float, ...]
    given_cause: tuple[float, ...]
    bound_cause_given: tuple[float, ...]
    units: str
    bins: int
    accuracy: float

    def rows(self) -> list[tuple]:
        cols = (self.names, self.mediation, self.redundancy, self.det_redundancy,
                self.info_cause, self.cause_given, self.given_cause, self.bound_cause_given)
        return list(zip(*cols))

    def get(self, name: str) -> dict[str, float]:
        """The row of candidate ``name`` as a dict of column -> value."""
        if name not in self.names:
            raise KeyError(f"no candidate named {name!r}; have {self.names}")
        keys = ("mediation", "redundancy", "det_redundancy", "info_cause", "cause_given",
                "given_cause", "bound_cause_given")
        return dict(zip(keys, self.rows()[self.names.index(name)][1:]))

    def to_text(self) -> str:
        """A fixed-width table (used by the bench script)."""
        head = ("latent", "eps_med", "eps_red", "eps_red_det", "I(L;Z)", "H(Z|L)", "H(L|Z)",
                "bound H(Z|L)")
        lines = [f"{head[0]:>10} " + " ".join(f"{h:>12}" for h in head[1:])]
        for r in self.rows():
            lines.append(f"{r[0]:>10} " + " ".join(f"{v:12.4f}" for v in r[1:]))
        return "\n".join(lines)

    def plot(self) -> Any:
        """Scatter of mediation vs redundancy error per candidate; returns the Figure."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4))
        sc = ax.scatter(self.redundancy, self.mediation, c=self.info_cause, cmap="viridis")
        for n, x, y in zip(self.names, self.redundancy, self.mediation):
            ax.annotate(n, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        fig.colorbar(sc, ax=ax, label=f"I(latent; Z) ({self.units})")
        ax.set_xlabel(f"max stochastic redundancy error ({self.units})")
        ax.set_ylabel(f"mediation error ({self.units})")
        ax.set_title("candidate natural latents over two views")
        fig.tight_layout()
        return fig


def _labels_joint(p_zab: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``p[z, x1, x2, l]`` for a deterministic label ``l(x1, x2)`` (array of view-code pairs)."""
    k = int(labels.max()) + 1
    out = np.zeros(p_zab.shape + (k,))
    a, b = np.indices(labels.shape)
    out[:, a, b, labels] = p_zab
    return out


def hidden_interaction_features(model: TwoViewMLP, cause: PlantedCause,
                                n_basis_inputs: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    r"""Interaction-basis features of the hidden layer on every input, and their ``Λ``.

    Parameters
    ----------
    model : TwoViewMLP
    cause : PlantedCause
    n_basis_inputs : int
        The basis is computed on the distinct inputs, each repeated ``round(p(x) ·
        n_basis_inputs)`` times: the data distribution's expectations up to a rounding of the
        weights (at most ``0.5 / n_basis_inputs`` each), deterministic, without sampling.

    Returns
    -------
    features : ndarray, shape ``(V², k)``
        ``f̂ = (h(x), 1) C`` for the inputs ``(x1, x2)`` in row-major order of the view codes,
        columns sorted by ``Λ`` (descending).
    eigenvalues : ndarray, shape ``(k,)``
        ``Λ``; ``k`` is at most the number of outputs (the read-out is linear).

    Notes
    -----
    :func:`theory.interaction.interaction_basis` on the node layers (input, hidden, logits)
    with ``layers = [Linear -> ReLU, Linear]``; the model is not modified.
    """
    from theory.interaction import interaction_basis

    if isinstance(n_basis_inputs, bool) or not isinstance(n_basis_inputs, int) \
            or n_basis_inputs < 2:
        raise ValueError(f"n_basis_inputs must be an int >= 2; got {n_basis_inputs!r}")
    x, _ = _all_inputs(model, cause)
    w = cause.joint().sum(0).ravel()
    reps = torch.as_tensor(np.rint(w * n_basis_inputs).astype(np.int64), device=x.device)
    layers = [nn.Sequential(model.inp, nn.ReLU()), model.out]
    lib = interaction_basis(layers, x.repeat_interleave(reps, dim=0), dtype=x.dtype,
                            edges=False, progress=False)
    with torch.no_grad():
        feats = lib.transform(1, model.hidden(x))
    return feats.cpu().numpy(), lib.layers[1].eigenvalues.cpu().numpy()


def _all_inputs(model: TwoViewMLP, cause: PlantedCause) -> tuple[torch.Tensor, np.ndarray]:
    """Network inputs for every pair of view codes (row-major), and the first view's codes."""
    nv = cause.n_view_values
    a, b = np.meshgrid(np.arange(nv), np.arange(nv), indexing="ij")
    par = next(model.parameters())
    x = cause.one_hot(a.ravel(), b.ravel()).to(device=par.device, dtype=par.dtype)
    return x, a.ravel()


def candidate_labels(model: TwoViewMLP, cause: PlantedCause, bins: int = 2,
                     n_directions: int = 2, n_interaction: int = 2,
                     n_basis_inputs: int = 65536) -> dict[str, np.ndarray]:
    """Discrete label of each candidate feature for every input: ``{name: (V, V) int array}``.

    ``labels[name][x1, x2]`` is the feature's bin for view codes ``(x1, x2)``; index it with
    sampled codes to get samples of the feature.  Candidates: each hidden unit ``unit{j}``,
    the top ``n_directions`` principal directions ``PC{j}`` and the top ``n_interaction``
    interaction-basis directions ``IB{j}`` of the hidden layer (see
    :func:`hidden_interaction_features`; at most as many as it keeps), each activation binned
    into ``bins`` equal-width cells over its range on all inputs, the predicted class
    ``argmax``, and the baselines ``const`` and ``view1``.
    """
    for name, val in (("n_directions", n_directions), ("n_interaction", n_interaction)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 0:
            raise ValueError(f"{name} must be an int >= 0; got {val!r}")
    p = cause.joint()
    nv = cause.n_view_values
    x, a = _all_inputs(model, cause)
    with torch.no_grad():
        h = model.hidden(x).double().cpu().numpy()
        pred = model(x).argmax(1).cpu().numpy()
    w = p.sum(0).ravel()  # input probabilities
    hc = h - w @ h
    _, _, vt = np.linalg.svd(np.sqrt(w)[:, None] * hc, full_matrices=False)
    out: dict[str, np.ndarray] = {}
    for j in range(h.shape[1]):
        out[f"unit{j}"] = discretize(h[:, j], bins)
    for j in range(min(n_directions, vt.shape[0])):
        out[f"PC{j + 1}"] = discretize(hc @ vt[j], bins)
    if n_interaction > 0:
        feats, _ = hidden_interaction_features(model, cause, n_basis_inputs)
        for j in range(min(n_interaction, feats.shape[1])):
            out[f"IB{j + 1}"] = discretize(feats[:, j], bins)
    out["argmax"] = pred.astype(np.int64)
    out["const"] = np.zeros(nv * nv, dtype=np.int64)
    out["view1"] = a
    return {k: v.reshape(nv, nv) for k, v in out.items()}


def candidate_latent_table(model: TwoViewMLP, cause: PlantedCause, bins: int = 2,
                           n_directions: int = 2, base: float = 2.0, n_interaction: int = 2,
                           n_basis_inputs: int = 65536) -> LatentTable:
    """Exact natural-latent errors over (view 1, view 2) of the network's features.

    Rows: the planted ``Z`` (reference: a stochastic function of the views), then every
    candidate of :func:`candidate_labels` (hidden units, principal directions ``PC{j}``,
    interaction-basis directions ``IB{j}``, the predicted class, baselines).

    Notes
    -----
    A feature is a deterministic function of the input, so ``p[x1, x2, Λ]`` is exact; Z enters
    through ``p[z, x1, x2, Λ] = p[z, x1, x2] 1[Λ = λ(x1, x2)]``.  The theorem (Z a redund,
    Λ a mediator) gives ``H(Z|Λ) <= ε_med(Λ) + 2 max_i H(Z|X_i)``, reported as a check.
    """
    lb = math.log(base)
    p = cause.joint()
    labels = candidate_labels(model, cause, bins, n_directions, n_interaction, n_basis_inputs)
    pred = labels["argmax"].ravel()
    nv = cause.n_view_values
    cands = list(labels.items())

    h_z_x = max(cond_entropy_nats(p, (0,), (i,)) for i in (1, 2)) / lb
    rows = []
    # The planted Z itself: p[z, x1, x2] with the latent on axis 0.
    zr = natural_latent_errors(p, [1, 2], 0, base=base)
    zd = natural_latent_errors(p, [1, 2], 0, "deterministic", base=base)
    hz = cond_entropy_nats(p, (0,), ()) / lb
    rows.append(("Z", zr.mediation, zr.max_redundancy, zd.max_redundancy, hz, 0.0, 0.0,
                 zr.mediation + 2 * h_z_x))
    for name, lab in cands:
        q = _labels_joint(p, lab)
        r = natural_latent_errors(q, [1, 2], 3, base=base)
        d = natural_latent_errors(q, [1, 2], 3, "deterministic", base=base)
        rows.append((name, r.mediation, r.max_redundancy, d.max_redundancy,
                     cond_mutual_info_nats(q, (3,), (0,)) / lb,
                     cond_entropy_nats(q, (0,), (3,)) / lb, cond_entropy_nats(q, (3,), (0,)) / lb,
                     r.mediation + 2 * h_z_x))
    hit = pred.reshape(nv, nv)[None] == np.arange(cause.n_values)[:, None, None]
    acc = float((p * hit).sum())  # exact accuracy under the data distribution
    cols = list(zip(*rows))
    return LatentTable(names=cols[0], mediation=cols[1], redundancy=cols[2],
                       det_redundancy=cols[3], info_cause=cols[4], cause_given=cols[5],
                       given_cause=cols[6], bound_cause_given=cols[7],
                       units=_unit_name(base), bins=bins,
                       accuracy=acc)
