"""Read a torch model as a float64 piecewise-linear network (private).

A supported model is a composition of affine maps and single-breakpoint
piecewise-linear activations (ReLU, LeakyReLU, PReLU).  Consecutive affine maps
are composed, so the network is stored as

    h_0 = x,   z_l = W_l h_{l-1} + b_l,   h_l = s_l(z_l) * z_l   (l = 1..L),
    y = W_{L+1} h_L + b_{L+1},

with s_l(z) = 1 where z > 0 and the negative-side slope alpha_l otherwise.
The polytope code of x is the concatenation of 1[z_l > 0] over l = 1..L.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__: list[str] = []

# Activations that are piecewise linear but have two or more breakpoints, with a
# hint on how to express them with supported units.
_MULTI_BREAKPOINT = (nn.ReLU6, nn.Hardtanh, nn.Hardshrink, nn.Softshrink, nn.Threshold)
_SMOOTH = (
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.Softplus,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.LogSigmoid,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Softmax,
    nn.LogSoftmax,
)
_IDENTITY = (nn.Identity, nn.Flatten, nn.Dropout)


@dataclass(frozen=True)
class PLNet:
    """A piecewise-linear network as float64 numpy arrays.

    ``weights[l]``, ``biases[l]`` (l < L) give the pre-activations of hidden layer
    l; ``slopes[l]`` is its negative-side slope per neuron; ``weights[L]``,
    ``biases[L]`` is the output affine map.
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    slopes: tuple[np.ndarray, ...]

    @property
    def in_dim(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def out_dim(self) -> int:
        return int(self.weights[-1].shape[0])

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(int(s.shape[0]) for s in self.slopes)

    @property
    def n_neurons(self) -> int:
        return int(sum(self.widths))

    def layer_slices(self) -> list[slice]:
        out, start = [], 0
        for w in self.widths:
            out.append(slice(start, start + w))
            start += w
        return out


def _flatten(model) -> list[nn.Module]:
    if isinstance(model, (nn.Sequential, nn.ModuleList)):
        mods = []
        for m in model:
            mods.extend(_flatten(m))
        return mods
    if isinstance(model, nn.Module):
        return [model]
    if isinstance(model, Iterable) and not isinstance(model, (str, bytes)):
        mods = []
        for m in model:
            mods.extend(_flatten(m))
        return mods
    raise TypeError(
        f"model must be an nn.Module (nn.Sequential / nn.ModuleList of Linear and "
        f"ReLU/LeakyReLU/PReLU layers) or a list of such modules, got {type(model).__name__}"
    )


def _param(t: torch.Tensor, what: str) -> np.ndarray:
    a = t.detach().to(device="cpu", dtype=torch.float64).numpy().copy()
    if not np.isfinite(a).all():
        raise ValueError(f"model: {what} is not finite (contains NaN or inf)")
    return a


def parse_model(model, in_dim: int | None = None) -> PLNet:
    """Compose ``model`` into a :class:`PLNet`; ``in_dim`` is needed only when the
    model does not start with an ``nn.Linear``."""
    mods = _flatten(model)
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    slopes: list[np.ndarray] = []
    W: np.ndarray | None = None  # pending affine map since the last activation
    b: np.ndarray | None = None
    dim = in_dim  # width of the current representation
    for i, m in enumerate(mods):
        if isinstance(m, nn.Linear):
            Wm = _param(m.weight, f"the weight of layer {i} (nn.Linear)")
            bm = (
                _param(m.bias, f"the bias of layer {i} (nn.Linear)")
                if m.bias is not None
                else np.zeros(Wm.shape[0])
            )
            if dim is not None and Wm.shape[1] != dim:
                raise ValueError(
                    f"model: nn.Linear expects {Wm.shape[1]} inputs but receives {dim}"
                )
            if W is None:
                W, b = Wm, bm
            else:
                W, b = Wm @ W, Wm @ b + bm
            dim = Wm.shape[0]
        elif isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.PReLU)):
            if dim is None:
                raise ValueError(
                    "model starts with an activation; pass inputs so that the input "
                    "dimension is known"
                )
            if W is None:
                W, b = np.eye(dim), np.zeros(dim)
            if isinstance(m, nn.ReLU):
                alpha = np.zeros(dim)
            elif isinstance(m, nn.LeakyReLU):
                alpha = np.full(dim, float(m.negative_slope))
                if not np.isfinite(alpha).all():
                    raise ValueError(f"model: the negative_slope of layer {i} is not finite")
            else:
                a = _param(m.weight, f"the weight of layer {i} (nn.PReLU)")
                if a.size not in (1, dim):
                    raise ValueError(f"model: PReLU has {a.size} slopes for {dim} units")
                alpha = np.broadcast_to(a, (dim,)).copy()
            weights.append(W)
            biases.append(b)
            slopes.append(alpha)
            W, b = None, None
        elif isinstance(m, _IDENTITY):
            continue  # Dropout is read as in eval mode; Flatten is a no-op on (N, d)
        elif isinstance(m, _MULTI_BREAKPOINT):
            raise TypeError(
                f"model contains {type(m).__name__}, a piecewise-linear activation with "
                "two breakpoints; polytope codes here are binary (one breakpoint per "
                "unit). Rewrite it with ReLUs, e.g. ReLU6(z) = ReLU(z) - ReLU(z - 6)."
            )
        elif isinstance(m, _SMOOTH):
            raise TypeError(
                f"model contains {type(m).__name__}, which is not piecewise linear; "
                "only Linear, ReLU, LeakyReLU and PReLU layers are supported"
            )
        else:
            raise TypeError(
                f"model contains unsupported module {type(m).__name__}; only Linear, "
                "ReLU, LeakyReLU, PReLU (and Identity/Flatten/Dropout) are supported"
            )
    if dim is None:
        raise ValueError("model has no layers and the input dimension is unknown")
    if W is None:
        W, b = np.eye(dim), np.zeros(dim)
    weights.append(W)
    biases.append(b)
    return PLNet(tuple(weights), tuple(biases), tuple(slopes))


def model_in_dim(model) -> int | None:
    """Input size of the first ``nn.Linear`` when the model starts with one."""
    mods = [m for m in _flatten(model) if not isinstance(m, _IDENTITY)]
    if mods and isinstance(mods[0], nn.Linear):
        return int(mods[0].in_features)
    return None


def as_points(x, name: str = "x") -> torch.Tensor:
    """Tensor view of points; keeps the device, leaves dtype to the caller."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a tensor or array of floats") from err
    if t.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (d,) or (N, d), got {tuple(t.shape)}")
    real = t.is_floating_point() or t.dtype in (torch.int32, torch.int64)
    if t.dtype == torch.bool or not real:
        raise TypeError(f"{name} must be real-valued, got dtype {t.dtype}")
    return t


def net_for(model, x: torch.Tensor, name: str = "x") -> PLNet:
    """Parse ``model`` and check that points ``x`` have the model's input size."""
    d = int(x.shape[-1])
    expected = model_in_dim(model)
    if expected is not None and expected != d:
        raise ValueError(f"{name} has input dimension {d} but the model expects {expected}")
    return parse_model(model, in_dim=d)


def check_box(lower, upper, net_dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate a box ``lower < upper`` (float64 numpy, shape (d,))."""
    lo = np.atleast_1d(np.asarray(_np(lower), dtype=np.float64))
    hi = np.atleast_1d(np.asarray(_np(upper), dtype=np.float64))
    if lo.ndim != 1 or hi.ndim != 1 or lo.shape != hi.shape:
        raise ValueError(
            f"lower and upper must be 1-D of equal length, got {lo.shape} and {hi.shape}"
        )
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError("lower and upper must be finite")
    if np.any(lo >= hi):
        bad = int(np.argmax(lo >= hi))
        raise ValueError(
            f"lower must be < upper in every coordinate; coordinate {bad} has "
            f"lower={lo[bad]} >= upper={hi[bad]}"
        )
    if net_dim is not None and lo.shape[0] != net_dim:
        raise ValueError(
            f"lower/upper have dimension {lo.shape[0]} but the model expects {net_dim} inputs"
        )
    return lo, hi


def _np(a):
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().double().numpy()
    return a


def torch_layers(net: PLNet, device) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(W, b, alpha) float64 tensors on ``device`` for each hidden layer and the
    output map (alpha is None-like empty for the output)."""
    out = []
    for i, (W, b) in enumerate(zip(net.weights, net.biases)):
        alpha = net.slopes[i] if i < len(net.slopes) else np.zeros(0)
        out.append(
            tuple(torch.as_tensor(a, dtype=torch.float64, device=device) for a in (W, b, alpha))
        )
    return out
