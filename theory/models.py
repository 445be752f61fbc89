"""Small models whose learning coefficient is known exactly, and seeded data for them.

The estimand of the LLC equals the global formulas of :mod:`theory.exact` only at the most singular
true parameter. For a deep linear network that is the *normal form*: every layer holds an r×r block
in its top-left corner and exact zeros elsewhere. :func:`normal_form_teacher` builds it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .exact import (
    LearningCoefficient,
    _check_widths_rank,
    deep_linear_network,
    normal_crossing,
)

__all__ = [
    "DeepLinearNetwork",
    "NormalCrossingModel",
    "TanhUnit",
    "dead_unit_relu_net",
    "normal_form_teacher",
    "random_mlp",
    "relu_autoencoder",
    "teacher_student_data",
]


def _generator(seed: int | torch.Generator | None) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        raise TypeError("seed must be an int or a torch.Generator, got None")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    return torch.Generator().manual_seed(seed)


class DeepLinearNetwork(nn.Sequential):
    """``f(x) = W_L ⋯ W_1 x`` as a stack of bias-free :class:`torch.nn.Linear` layers.

    Parameters
    ----------
    widths : sequence of int
        ``[H_0, ..., H_L]``, input width first.
    """

    def __init__(self, widths: Sequence[int]):
        widths, _ = _check_widths_rank(widths, 0)
        super().__init__(*(nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:])))
        self.widths = tuple(widths)

    def learning_coefficient(self, rank: int) -> LearningCoefficient:
        """Exact λ at a normal-form true parameter of the given rank."""
        return deep_linear_network(self.widths, rank)


def normal_form_teacher(
    widths: Sequence[int],
    rank: int,
    *,
    seed: int | torch.Generator = 0,
    singular_values: tuple[float, float] = (0.7, 1.3),
    dtype: torch.dtype = torch.float32,
) -> DeepLinearNetwork:
    """A deep linear network at the most singular parameter of a rank-``rank`` true map.

    Each layer is ``W_l = [[B_l, 0], [0, 0]]`` with ``B_l`` an r×r block with singular values drawn
    uniformly from ``singular_values`` (random orthogonal factors), all other entries exactly 0.

    Parameters
    ----------
    widths : sequence of int
        ``[H_0, ..., H_L]``.
    rank : int
        ``0 <= rank <= min(widths)``.
    seed : int or torch.Generator
        Source of randomness for the blocks.
    singular_values : (float, float)
        Range of the blocks' singular values (keeps the teacher well conditioned).
    dtype : torch.dtype
        Parameter dtype.
    """
    widths, rank = _check_widths_rank(widths, rank)
    lo, hi = singular_values
    if not 0 < lo <= hi:
        raise ValueError(f"singular_values must satisfy 0 < low <= high, got {singular_values}")
    gen = _generator(seed)
    model = DeepLinearNetwork(widths).to(dtype)
    with torch.no_grad():
        for layer in model:
            layer.weight.zero_()
            if rank == 0:
                continue
            q1, _ = torch.linalg.qr(torch.randn(rank, rank, generator=gen, dtype=torch.float64))
            q2, _ = torch.linalg.qr(torch.randn(rank, rank, generator=gen, dtype=torch.float64))
            s = lo + (hi - lo) * torch.rand(rank, generator=gen, dtype=torch.float64)
            layer.weight[:rank, :rank] = (q1 * s) @ q2.T
    return model


@torch.no_grad()
def teacher_student_data(
    teacher: nn.Module,
    n: int,
    input_dim: int,
    *,
    noise_std: float = 0.0,
    seed: int | torch.Generator = 0,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded regression data ``x ~ N(0, I)``, ``y = teacher(x) + noise_std · N(0, I)``.

    Returns
    -------
    inputs : Tensor, shape (n, input_dim)
    targets : Tensor, shape (n, output_dim)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim < 1:
        raise ValueError(f"input_dim must be a positive integer, got {input_dim!r}")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    gen = _generator(seed)
    if dtype is None:
        dtype = next(iter(teacher.parameters()), torch.empty(0)).dtype
    x = torch.randn(n, input_dim, generator=gen, dtype=dtype)
    y = teacher(x)
    if noise_std > 0:
        y = y + noise_std * torch.randn(y.shape, generator=gen, dtype=y.dtype)
    return x, y


class NormalCrossingModel(nn.Module):
    """``f(x) = x · Π_i w_i^{k_i}``, whose true parameter is ``w = 0`` for the target ``y = 0``.

    With ``x ~ N(0, 1)`` and the loss ½(y − f(x))², ``K(w) = ½ Π_i w_i^{2 k_i}`` and
    ``λ = min_i 1/(2 k_i)`` (:func:`theory.exact.normal_crossing`).

    Parameters
    ----------
    k : sequence of int
        Positive exponents, one per parameter.
    """

    def __init__(self, k: Sequence[int]):
        super().__init__()
        self.learning_coefficient_value = normal_crossing(k)  # validates k
        if min(k) < 1:
            raise ValueError(f"every exponent in k must be >= 1, got {list(k)}")
        self.k = tuple(int(ki) for ki in k)
        self.w = nn.Parameter(torch.zeros(len(self.k)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        exps = torch.tensor(self.k, dtype=self.w.dtype, device=self.w.device)
        return x * torch.prod(self.w**exps)

    def learning_coefficient(self) -> LearningCoefficient:
        """Exact λ and multiplicity at ``w = 0``."""
        return self.learning_coefficient_value


class TanhUnit(nn.Module):
    """One tanh unit ``f(x) = a · tanh(b x)`` at its true parameter ``(a, b) = (0, 0)``.

    For the target ``y = 0``, ``K(a, b) ≈ ½ a² b² E[x²]`` near 0, so ``λ = 1/2`` with
    multiplicity 2 (REFERENCES §2).
    """

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(()))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * torch.tanh(self.b * x)

    def learning_coefficient(self) -> LearningCoefficient:
        """Exact λ = 1/2, m = 2 at ``(0, 0)``."""
        from fractions import Fraction

        return LearningCoefficient(Fraction(1, 2), 2)


def relu_autoencoder(n_feat: int, hidden: int, seed: int = 0) -> list[nn.Module]:
    """The three layers ``n_feat → hidden → hidden → n_feat`` (ReLU after the first two) of the
    sparse-feature toy model of the interaction-basis tests and benchmark, initialised from
    ``seed`` without touching torch's global RNG. Train them as ``nn.Sequential(*layers)``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return [
            nn.Sequential(nn.Linear(n_feat, hidden), nn.ReLU()),
            nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU()),
            nn.Linear(hidden, n_feat),
        ]


def random_mlp(
    widths,
    seed: int = 0,
    *,
    act: type[nn.Module] = nn.ReLU,
    bias_scale: float = 0.5,
    dtype: torch.dtype = torch.float64,
) -> nn.Sequential:
    """An ``nn.Sequential`` MLP with Gaussian weights ``N(0, 1/fan_in)`` and biases
    ``N(0, bias_scale²)``, activation ``act`` between layers: the generic ReLU network of the
    polytope tests and benchmarks.

    Parameters
    ----------
    widths : sequence of int
        Layer widths from input to output.
    seed : int
    act : nn.Module subclass
    bias_scale : float
    dtype : torch.dtype
    """
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=g) / a**0.5)
            lin.bias.copy_(bias_scale * torch.randn(b, generator=g))
        layers.append(lin)
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers).to(dtype)


def dead_unit_relu_net() -> tuple[nn.Sequential, tuple[torch.Tensor, torch.Tensor]]:
    """A 2-4-1 ReLU net with two dead hidden units, and 1000 noisy samples from it.

    Units 3 and 4 have biases −12 and −15, so they never fire on standard normal inputs: their
    incoming weights and outgoing weights are free directions. With the live units identifiable
    up to rescaling, ``λ = (d − k)/2 = 3.5`` (d = 17). Labels carry N(0, 0.5²) noise.
    """
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.5], [-0.3, 1.0], [0.7, -0.2], [0.1, 0.4]]))
        net[0].bias.copy_(torch.tensor([0.2, -0.1, -12.0, -15.0]))
        net[2].weight.copy_(torch.tensor([[1.2, -0.8, 0.6, -0.9]]))
        net[2].bias.fill_(0.3)
    x = torch.randn(1000, 2, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        y = net(x) + 0.5 * torch.randn(1000, 1, generator=torch.Generator().manual_seed(6))
    return net, (x, y)
