"""The hand-written MLP path computes what the generic vmap path computes, and only for MLPs."""

import pytest
import torch
from torch import nn

import llc
from llc._data import _cross_entropy, _kl, _mse
from llc._functional import FlatModel
from llc._mlp import mlp_plan

from ._models import CustomForward

ACTIVATIONS = [
    nn.ReLU(),
    nn.LeakyReLU(0.1),
    nn.Tanh(),
    nn.Sigmoid(),
    nn.GELU(),
    nn.SiLU(),
    nn.Identity(),
]


def _both(model, x, y, loss, chains=3, batch=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    flat = FlatModel.from_module(model, device=torch.device("cpu"), dtype=torch.float64)
    assert mlp_plan(flat.module, flat.names, flat.frozen) is not None
    w = flat.center + 0.3 * torch.randn(chains, flat.dim, generator=gen, dtype=torch.float64)
    idx = torch.randint(x.shape[0], (chains, batch), generator=gen)
    fast = flat.batched_value_and_grad(loss)(w, x[idx], y[idx])
    slow = flat.batched_value_and_grad(loss, mlp_path=False)(w, x[idx], y[idx])
    return fast, slow


def _data(out=3, shape=(4,), n=40, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=gen, dtype=torch.float64)
    y = torch.randn(n, *shape[:-1], out, generator=gen, dtype=torch.float64)
    return x, y


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: type(a).__name__)
def test_gradients_match_generic_path(act):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 6), act, nn.Linear(6, 5, bias=False), nn.Tanh(), nn.Linear(5, 3)
    ).double()
    x, y = _data()
    (g1, v1), (g2, v2) = _both(model, x, y, _mse)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(v1, v2, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "loss", [_cross_entropy, _kl, lambda o, t: (o - t).abs().sum(1)], ids=["ce", "kl", "l1"]
)
def test_other_losses_match_generic_path(loss):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    x, y = _data()
    if loss is _cross_entropy:
        y = torch.randint(3, (x.shape[0],), generator=torch.Generator().manual_seed(2))
    (g1, v1), (g2, v2) = _both(model, x, y, loss)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(v1, v2, rtol=1e-12, atol=1e-12)


def test_inputs_with_extra_dimensions_match_generic_path():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 3)).double()
    x, y = _data(shape=(2, 4))  # Linear acts on the last dimension of (batch, 2, 4)
    (g1, v1), (g2, v2) = _both(model, x, y, _mse)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(v1, v2, rtol=1e-12, atol=1e-12)


class _Doubled(nn.Sequential):
    def forward(self, x):
        return 2 * super().forward(x)


class _Reversed(nn.Sequential):
    def __iter__(self):
        return reversed(list(self._modules.values()))


class _WithScale(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Linear(3, 2))
        self.scale = nn.Parameter(torch.ones(()))


def _no_plan_cases():
    shared = nn.Linear(3, 3)
    hooked = nn.Sequential(nn.Linear(3, 2))
    hooked.register_forward_hook(lambda m, i, o: o * 2)
    patched = nn.Sequential(nn.Linear(3, 2))
    patched[0].forward = lambda x: 2 * x[..., :2]
    return {
        "in-place SiLU": nn.Sequential(nn.Linear(3, 4), nn.SiLU(inplace=True), nn.Linear(4, 2)),
        "in-place LeakyReLU": nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(-0.5, inplace=True)),
        "forward replaced on an instance": patched,
        "overridden __iter__": _Reversed(nn.Linear(3, 3), nn.Linear(3, 2)),
        "overridden forward": _Doubled(nn.Linear(3, 2)),
        "parameter on container": _WithScale(),
        "shared layer": nn.Sequential(shared, nn.ReLU(), shared),
        "buffers": nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)),
        "tanh-approximate GELU": nn.Sequential(nn.Linear(3, 2), nn.GELU(approximate="tanh")),
        "activation first": nn.Sequential(nn.ReLU(), nn.Linear(3, 2)),
        "two activations": nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Tanh()),
        "hook": hooked,
        "not sequential": nn.Linear(3, 2),
    }


@pytest.mark.parametrize("name", list(_no_plan_cases()))
def test_other_models_take_the_generic_path(name):
    model = _no_plan_cases()[name]
    flat = FlatModel.from_module(model, device=torch.device("cpu"), dtype=torch.float32)
    assert mlp_plan(flat.module, flat.names, flat.frozen) is None


@pytest.mark.parametrize("keys", [("1", "0", "2"), ("fc1", "act", "fc2")])
def test_named_and_reordered_keys_match_generic_path(keys):
    from collections import OrderedDict

    torch.manual_seed(0)
    layers = [nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3)]
    if keys[1] != "act":
        layers = [nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 3)]
    model = nn.Sequential(OrderedDict(zip(keys, layers))).double()
    x, y = _data()
    (g1, v1), (g2, v2) = _both(model, x, y, _mse)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(v1, v2, rtol=1e-12, atol=1e-12)


def test_refined_llc_of_an_mlp_takes_the_generic_path():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    flat = FlatModel.from_module(
        model, select=lambda n, p: n.startswith("0."), device=torch.device("cpu"),
        dtype=torch.float32,
    )
    assert mlp_plan(flat.module, flat.names, flat.frozen) is None


def test_estimates_agree_between_paths():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    x, y = _data(out=2, shape=(3,), n=200)
    kw = dict(
        num_chains=2, num_burnin=20, num_draws=50, step_size=1e-4, localization=1.0,
        progress=False, batch_size=32,
    )
    a = llc.estimate_llc(model, (x, y), **kw)
    b = llc.estimate_llc(CustomForward(model), (x, y), **kw)
    assert abs(a.mean - b.mean) <= 1e-8 * max(1.0, abs(a.mean))
