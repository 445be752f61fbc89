"""API of theory.interaction: paths, streaming, transforms, plots, bad input."""

import copy

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

import theory._interaction_layers as lib_layers
from theory.interaction import InteractionBasis, LayerBasis, interaction_basis

matplotlib.use("Agg")


def _relu_net(seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return [nn.Sequential(nn.Linear(4, 7), nn.ReLU()),
                nn.Sequential(nn.Linear(7, 6), nn.ReLU()),
                nn.Linear(6, 3)]


def _x(n=300, d=4, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) + 0.3


def _close(got, want, tol=1e-8):
    scale = float(want.abs().max())
    err = float((got - want).abs().max())
    assert err <= tol * scale, f"max error {err:.3g} > {tol:g} * {scale:.3g}"


def _same(a, b, tol=1e-8):
    """Same Λ, same C up to column signs, same edges."""
    for la, lb in zip(a.layers, b.layers):
        _close(lb.eigenvalues, la.eigenvalues, tol)
        s = torch.sign((la.C * lb.C).sum(0))
        _close(lb.C * s, la.C, tol)
        if la.edges is not None:
            _close(lb.edges, la.edges, tol)


def test_types_and_fields():
    lib = interaction_basis(nn.Sequential(*_relu_net()), _x(), progress=False)
    assert isinstance(lib, InteractionBasis) and len(lib.layers) == 4
    assert all(isinstance(lb, LayerBasis) for lb in lib.layers)
    assert lib.layers[-1].is_output and lib.layers[-1].edges is None
    assert lib.closed_form == (True, True, True)
    assert lib.integration == "gradient" and lib.n_points == 1 and lib.n_samples == 300
    for lb, nxt in zip(lib.layers[:-1], lib.layers[1:]):
        assert lb.C.shape == (lb.width + 1, lb.n_kept) == lb.C_pinv.T.shape
        assert lb.edges.shape == (nxt.n_kept, lb.n_kept)
        assert lb.C.dtype == torch.float64
    with pytest.raises(AttributeError):
        lib.layers[0].C = None


def test_generic_path_equals_closed_form():
    """Layers given as plain callables go through per-sample torch.func Jacobians; for ReLU the
    homogeneous extension equals the folded bias, so the results coincide."""
    layers = [copy.deepcopy(m).double() for m in _relu_net()]
    x = _x().double()
    fast = interaction_basis(layers, x, progress=False)
    funcs = [lambda v, m=m: m(v) for m in layers]
    slow = interaction_basis(funcs, x, progress=False)
    assert slow.closed_form == (False, False, False)
    _same(fast, slow)


def test_two_activation_layer_generic_exact():
    """One layer with two tanh activations (generic path): Cᵀ G C = Λ and E[Ĵᵀ Ĵ] = I."""
    with torch.random.fork_rng():
        torch.manual_seed(4)
        block = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.Tanh()).double()
        head = nn.Linear(5, 3).double()
    block.requires_grad_(False)
    head.requires_grad_(False)
    x = _x().double()
    lib = interaction_basis([block, head], x, integration="gauss-legendre", n_points=3,
                            progress=False)
    assert lib.closed_form == (False, True)

    def hom(v):  # block with its biases folded by hand
        h, c = v[:-1], v[-1:]
        h = torch.tanh(block[0].weight @ h + c * block[0].bias)
        h = torch.tanh(block[2].weight @ h + c * block[2].bias)
        return torch.cat([h, c])

    f = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    lb, nxt = lib.layers[0], lib.layers[1]
    _close(lb.C.T @ (f.T @ f / len(f)) @ lb.C, torch.diag(lb.eigenvalues))
    jac = torch.func.vmap(torch.func.jacrev(hom))(f)
    jhat = nxt.C.T @ jac @ lb.C_pinv.T
    _close((jhat.mT @ jhat).mean(0), torch.eye(lb.n_kept, dtype=x.dtype))


def test_streaming_independent_of_batching(monkeypatch):
    layers, x = _relu_net(), _x()
    ref = interaction_basis(layers, x, integration="trapezoid", n_points=3, progress=False)
    small = interaction_basis(layers, x, integration="trapezoid", n_points=3, batch_size=7,
                              progress=False)
    _same(ref, small, 1e-10)
    monkeypatch.setattr(lib_layers, "MAX_BLOCK", 40)  # forces chunks of a few samples
    doubles = [copy.deepcopy(m).double() for m in layers]
    funcs = [lambda v, m=m: m(v) for m in doubles]  # float64 callables
    x = x[:120]
    ref = interaction_basis(layers, x, integration="trapezoid", n_points=3, progress=False)
    chunked = interaction_basis(funcs, x, integration="trapezoid", n_points=3, batch_size=50,
                                progress=False)
    _same(ref, chunked, 1e-8)


def test_transform_roundtrip():
    layers, x = _relu_net(), _x()
    lib = interaction_basis(layers, x, progress=False)
    f = lib.transform(0, x)
    one = torch.ones(len(x), 1, dtype=torch.float64)
    _close(f, torch.cat([x.double(), one], 1) @ lib.layers[0].C)
    assert lib.layers[0].n_kept == 5  # all input directions matter
    _close(lib.inverse_transform(0, f), x.double(), 1e-10)
    _close(lib.inverse_transform(-4, lib.transform(-4, x[:5])), x[:5].double(), 1e-10)
    y = nn.Sequential(*layers)(x).detach()
    out = lib.transform(-1, y)
    _close(out, y.double())
    rot = interaction_basis(layers, x, rotate_outputs=True, progress=False)
    _close(rot.inverse_transform(3, rot.transform(3, y)), y.double(), 1e-10)


def test_model_and_rng_untouched():
    layers, x = _relu_net(), _x()
    before = [copy.deepcopy(m.state_dict()) for m in layers]
    state = torch.get_rng_state()
    lib32 = interaction_basis(layers, x, dtype=torch.float32, progress=False)
    interaction_basis(layers, x, progress=False)
    assert torch.equal(state, torch.get_rng_state())
    for m, sd in zip(layers, before):
        for k, v in m.state_dict().items():
            assert v.dtype == torch.float32 and torch.equal(v, sd[k])
        assert all(p.requires_grad for p in m.parameters())
    assert lib32.layers[0].C.dtype == torch.float32 and lib32.threshold == 1e-5
    # float32 agrees with float64 to single precision
    lib64 = interaction_basis(layers, x, progress=False)
    lam32, lam64 = lib32.layers[1].eigenvalues.double(), lib64.layers[1].eigenvalues
    assert (lam64[len(lam32):] < 1e-5 * lam64[0]).all()  # only what float32 cannot resolve
    _close(lam32, lam64[: len(lam32)], 1e-3)


def test_plots():
    lib = interaction_basis(_relu_net(), _x(), progress=False)
    for fig in (lib.plot_spectrum(), lib.plot_graph(max_nodes=4), lib.plot()):
        assert isinstance(fig, Figure)
        assert len(fig.axes[0].lines) > 0
    no_edges = interaction_basis(_relu_net(), _x(), edges=False, progress=False)
    with pytest.raises(ValueError, match="edges"):
        no_edges.plot_graph()


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"threshold": 0.0}, ValueError, "threshold"),
        ({"threshold": -1e-3}, ValueError, "threshold"),
        ({"threshold": "small"}, TypeError, "threshold"),
        ({"integration": "simpson"}, ValueError, "integration"),
        ({"integration": "gradient", "n_points": 5}, ValueError, "n_points"),
        ({"integration": "trapezoid", "n_points": 1}, ValueError, "n_points"),
        ({"integration": "gauss-legendre", "n_points": 0}, ValueError, "n_points"),
        ({"integration": "gauss-legendre", "n_points": 2.5}, TypeError, "n_points"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"dtype": torch.int64}, TypeError, "dtype"),
    ],
)
def test_bad_settings(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        interaction_basis(_relu_net(), _x(), progress=False, **kwargs)


def test_bad_layers_and_inputs():
    x = _x()
    with pytest.raises(ValueError, match="layers\\[1\\].*do not chain"):
        interaction_basis([nn.Linear(4, 7), nn.Linear(5, 3)], x, progress=False)
    with pytest.raises(TypeError, match="layers"):
        interaction_basis(nn.Linear(4, 3), x, progress=False)
    with pytest.raises(TypeError, match="layers\\[0\\]"):
        interaction_basis([3.0], x, progress=False)
    with pytest.raises(ValueError, match="layers"):
        interaction_basis([], x, progress=False)
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="inputs.*NaN"):
        interaction_basis(_relu_net(), bad, progress=False)
    with pytest.raises(ValueError, match="inputs"):
        interaction_basis(_relu_net(), x[0], progress=False)
    with pytest.raises(TypeError, match="inputs"):
        interaction_basis(_relu_net(), x.numpy(), progress=False)
    with pytest.raises(ValueError, match="NaN or infinite activations"):
        interaction_basis([lambda v: v / 0.0, nn.Linear(4, 2)], x, progress=False)
    with pytest.raises(ValueError, match="do not depend"):
        interaction_basis([lambda v: 0.0 * v, nn.Linear(4, 2, bias=False)], x,
                          progress=False)
    lib = interaction_basis(_relu_net(), x, progress=False)
    with pytest.raises(ValueError, match="layer_index"):
        lib.transform(4, x)
    with pytest.raises(ValueError, match="activations"):
        lib.transform(1, x)
    with pytest.raises(TypeError, match="features"):
        lib.inverse_transform(0, [1.0])
