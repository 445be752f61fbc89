"""Issue 18 on the bounds: a zero curvature matrix on both paths, and clear refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llc.bounds import bounds, hessian_bounds, symmetry_bound
from theory.models import DeepLinearNetwork


def _zero_dln(widths):
    net = DeepLinearNetwork(widths).double()
    for p in net.parameters():
        nn.init.zeros_(p)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, widths[0], generator=g, dtype=torch.float64)
    return net, (x, torch.zeros(32, widths[-1], dtype=torch.float64))


@pytest.mark.parametrize("method", ["gauss_newton", "hessian"])
def test_zero_curvature_dense_and_lanczos_agree(one_thread, method):
    """At W = 0 with zero targets both matrices vanish: rank 0 on both paths (defect 7)."""
    net, data = _zero_dln([10, 10, 10])  # d = 200
    dense = hessian_bounds(net, data, method=method)
    lanczos = hessian_bounds(net, data, method=method, max_dense=50)
    assert dense.config["matrix"] == "dense" and lanczos.config["matrix"] == "lanczos"
    for b in (dense, lanczos):
        assert b.rank == 0 and b.threshold == 0.0 and b.config["complete"]
        assert (b.lower, b.upper) == (0.0, 200 / 4)
        assert (b.spectrum == 0).all()


def test_zero_curvature_issue_reproducer(one_thread):
    """The issue's case: a 40-40-40 DLN at zero goes to Lanczos (d = 3200 > 3000)."""
    net, data = _zero_dln([40, 40, 40])
    b = bounds(net, data)
    assert b.parts[1].config["matrix"] == "lanczos"
    assert b.rank == 0 and (b.lower, b.upper) == (0.0, 3200 / 4)


def _mlp():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    g = torch.Generator().manual_seed(1)
    return net, (torch.randn(40, 3, generator=g), torch.randn(40, 2, generator=g))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("where", ["0.weight", "2.bias"])
def test_non_finite_parameter_is_named(one_thread, value, where):
    net, data = _mlp()
    with torch.no_grad():
        net.get_parameter(where).view(-1)[0] = value
    with pytest.raises(ValueError, match=rf"model parameter '{where}'.*not finite"):
        bounds(net, data)
    with pytest.raises(ValueError, match=rf"model parameter '{where}'.*not finite"):
        symmetry_bound(net, data)  # today: an interval for a NaN bias


def test_non_finite_loss_is_named(one_thread):
    net, data = _mlp()

    def nan_loss(out, y):
        return ((out - y) ** 2).sum(1) * float("nan")

    with pytest.raises(ValueError, match="loss"):
        bounds(net, data, loss=nan_loss)


def test_overflowing_curvature_is_a_finiteness_error(one_thread):
    """Finite weights and loss, but J^T J overflows float32: not a linear-algebra error."""
    net = nn.Sequential(nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.fill_(0.0)
    x = torch.full((4, 2), 1e25)
    with pytest.raises(ValueError, match="curvature matrix.*not finite"):
        hessian_bounds(net, (x, torch.zeros(4, 1)), dtype=torch.float32)
    with pytest.raises(ValueError, match="curvature matrix.*not finite"):
        hessian_bounds(net, (x, torch.zeros(4, 1)), dtype=torch.float32, max_dense=1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64, "float64"])
def test_bad_dtype_is_named(one_thread, dtype):
    net, data = _mlp()
    with pytest.raises((TypeError, ValueError), match="dtype"):
        bounds(net, data, dtype=dtype)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0", None])
def test_bad_seed_is_named(one_thread, seed):
    net, data = _mlp()
    with pytest.raises((TypeError, ValueError), match="seed must be a non-negative int"):
        bounds(net, data, seed=seed, max_dense=5)


def test_numpy_integer_seed_accepted(one_thread):
    import numpy as np

    net, data = _mlp()
    a = hessian_bounds(net, data, seed=np.int64(3), max_dense=5)
    b = hessian_bounds(net, data, seed=3, max_dense=5)
    assert a.rank == b.rank


def test_wrong_input_width_names_data(one_thread):
    """Found by the fuzz suite: a RuntimeError from the model's matmul before."""
    net, (x, y) = _mlp()
    for call in (lambda: bounds(net, (x[:, :2], y)), lambda: symmetry_bound(net, x[:, :2])):
        with pytest.raises(ValueError, match="data"):
            call()


def test_infinite_mask_buffer_is_accepted_nan_buffer_refused(one_thread):
    """Attention masks are buffers holding -inf (TransformerLens' IGNORE); NaN never is."""

    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)
            self.register_buffer("IGNORE", torch.tensor(-torch.inf))

        def forward(self, x):
            return self.lin(x)

    g = torch.Generator().manual_seed(0)
    model = Masked()
    x = torch.randn(50, 2, generator=g)
    y = model(x).detach()
    assert hessian_bounds(model, (x, y)).rank == 3  # the Gauss–Newton rank of a linear model
    model.IGNORE.fill_(float("nan"))
    with pytest.raises(ValueError, match="buffer 'IGNORE'"):
        hessian_bounds(model, (x, y))
