"""Exact properties of the interaction basis (REFERENCES §5), checked to 1e-8 in float64.

References are computed independently of the library: Gram matrices from a float64 copy of the
network, per-sample Jacobians with ``torch.func.jacrev`` of a hand-written folded layer.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from theory.interaction import interaction_basis
from theory.models import relu_autoencoder

TOL = 1e-8
ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh, "none": None}


def _mlp(widths, act, seed, bias=True):
    """Layers ``Sequential(Linear, act)``; the last layer is linear."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layers = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            mods = [nn.Linear(a, b, bias=bias)]
            if ACTS[act] is not None and i < len(widths) - 2:
                mods.append(ACTS[act]())
            layers.append(nn.Sequential(*mods))
    return layers


def _inputs(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * torch.linspace(0.5, 2.0, d) + 0.7


def _train_toy(seed=0, n_feat=6, hidden=10, steps=300):
    """Sparse-feature toy model (y = x from sparse non-negative features), trained here."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(512, n_feat, generator=g) < 0.3) * torch.rand(512, n_feat, generator=g)
    layers = relu_autoencoder(n_feat, hidden, seed)
    net = nn.Sequential(*layers)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = None
    for _ in range(steps):
        loss = ((net(x) - x) ** 2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first  # it did learn
    return layers, x


def _close(got, want, tol=TOL, scale=None):
    """max |got - want| <= tol * scale (scale: max |want| unless given)."""
    scale = float(want.abs().max()) if scale is None else float(scale)
    err = float((got - want).abs().max())
    assert err <= tol * scale, f"max error {err:.3g} > {tol:g} * {scale:.3g}"


def _ref_hom(layer, f):
    """Folded layer written out by hand: (x, c) -> (σ(x Wᵀ + c b), c)."""
    x, c = f[..., :-1], f[..., -1:]
    mods = list(layer) if isinstance(layer, nn.Sequential) else [layer]
    for m in mods:
        if isinstance(m, nn.Linear):
            x = x @ m.weight.T + (c * m.bias if m.bias is not None else 0)
        else:
            x = m(x)
    return torch.cat([x, c], dim=-1)


def _node_acts(layers, x):
    layers = [copy.deepcopy(layer).double().requires_grad_(False) for layer in layers]
    f = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], 1)
    acts = [f]
    for layer in layers:
        f = _ref_hom(layer, f)
        acts.append(f)
    return layers, acts


def _jacobians(layer, f):
    return torch.func.vmap(torch.func.jacrev(lambda v: _ref_hom(layer, v)))(f)


NETS = {
    "linear": lambda: (_mlp([5, 7, 6, 3], "none", 1), _inputs(400, 5, 1)),
    "relu": lambda: (_mlp([5, 8, 8, 3], "relu", 2), _inputs(400, 5, 2)),
    "tanh": lambda: (_mlp([4, 6, 5, 3], "tanh", 3), _inputs(300, 4, 3)),
    "trained": _train_toy,
}


@pytest.fixture(scope="module", params=list(NETS))
def net(request):
    layers, x = NETS[request.param]()
    lib = interaction_basis(layers, x, progress=False)
    ref_layers, acts = _node_acts(layers, x)
    return request.param, layers, x, lib, ref_layers, acts


def test_gram_diagonal(net):
    """Cᵀ G C = diag(Λ) with G = E[fᵀ f] computed from the data."""
    *_, lib, _, acts = net
    for lb, f in zip(lib.layers[:-1], acts[:-1]):
        g = f.T @ f / len(f)
        got = lb.C.T @ g @ lb.C
        _close(got, torch.diag(lb.eigenvalues))
        assert (lb.eigenvalues[:-1] >= lb.eigenvalues[1:]).all()


def test_jacobian_whitened_and_edges(net):
    """E_x[Ĵᵀ Ĵ] = I; gradient edges = E_x[(Ĵ_ij f̂_j)²]; completeness for ReLU/linear."""
    name, _, _, lib, ref_layers, acts = net
    for i, layer in enumerate(ref_layers):
        lb, nxt = lib.layers[i], lib.layers[i + 1]
        jhat = nxt.C.T @ _jacobians(layer, acts[i]) @ lb.C_pinv.T  # (N, k_next, k)
        eye = torch.eye(lb.n_kept, dtype=torch.float64)
        _close((jhat.mT @ jhat).mean(0), eye)
        fhat, fhat_next = acts[i] @ lb.C, acts[i + 1] @ nxt.C
        edges = ((jhat * fhat[:, None, :]) ** 2).mean(0)
        _close(lb.edges, edges)
        if name != "tanh":  # folded ReLU / linear layers are 1-homogeneous: Euler's theorem
            recon = (jhat @ fhat[:, :, None])[..., 0]
            # Directions dropped as Λ ≈ 0 may still carry a tiny part δ of f (|δ| ≲ √threshold);
            # completeness holds exactly once their contribution C_nextᵀ J δ is added back.
            delta = acts[i] - fhat @ lb.C_pinv
            dropped = (nxt.C.T @ _jacobians(layer, acts[i]) @ delta[:, :, None])[..., 0]
            _close(recon + dropped, fhat_next)
            _close(dropped, torch.zeros_like(dropped), tol=10 * lib.threshold**0.5,
                   scale=fhat_next.abs().max())
            if name != "trained":  # nothing with Λ > 0 dropped: completeness to 1e-8 as is
                _close(recon, fhat_next)


def test_last_hidden_layer_matches_output_gram(net):
    """The last layer is linear, so Λ there = non-zero eigenvalues of E[y yᵀ]."""
    *_, lib, _, acts = net
    y = acts[-1][:, :-1]
    ev = torch.linalg.eigvalsh(y.T @ y / len(y)).flip(0)
    lam = lib.layers[-2].eigenvalues
    _close(lam, ev[: len(lam)])
    assert (ev[len(lam):] < 1e-10 * ev[0]).all()


def test_linear_network_all_layers_output_gram():
    layers, x = NETS["linear"]()
    for center in (True, False):
        lib = interaction_basis(layers, x, center=center, progress=False)
        _, acts = _node_acts(layers, x)
        y = acts[-1][:, :-1]
        ev = torch.linalg.eigvalsh(y.T @ y / len(y)).flip(0)
        for lb in lib.layers:
            assert lb.n_kept == 3
            _close(lb.eigenvalues, ev)


def test_zero_outgoing_weight_dropped():
    layers, x = NETS["relu"]()
    with torch.no_grad():
        layers[1][0].weight[:, 4] = 0.0  # hidden unit 4 of node layer 1 feeds nothing
    lib = interaction_basis(layers, x, progress=False)
    ref = interaction_basis(NETS["relu"]()[0], x, progress=False)
    lb = lib.layers[1]
    assert ref.layers[1].n_kept == 9  # 8 units + constant, all used
    assert lb.n_kept == 8
    assert lb.all_eigenvalues[-1] < 1e-12 * lb.all_eigenvalues[0]
    assert lb.C[4].abs().max() < TOL * lb.C.abs().max()  # f̂ does not depend on unit 4


def _sign_align(a, b):
    s = torch.sign((a * b).sum(0))
    return a, b * s


def test_reparametrization_invariance():
    """h -> h R + t in node layer 1, undone in the next layer: same Λ and f̂ up to sign."""
    layers, x = NETS["relu"]()
    old = [copy.deepcopy(m).double() for m in layers]
    x = x.double()
    g = torch.Generator().manual_seed(7)
    r = torch.eye(8, dtype=torch.float64) + 0.5 * torch.randn(8, 8, generator=g).double()
    t = torch.randn(8, generator=g).double()
    rinv = torch.linalg.inv(r)
    fwd, back = nn.Linear(8, 8).double(), nn.Linear(8, 8).double()
    with torch.no_grad():
        fwd.weight.copy_(r.T)
        fwd.bias.copy_(t)
        back.weight.copy_(rinv.T)
        back.bias.copy_(-(t @ rinv))
    new = [nn.Sequential(*old[0], fwd), nn.Sequential(back, *old[1]), old[2]]
    a = interaction_basis(old, x, progress=False)
    b = interaction_basis(new, x, progress=False)
    h_old, h_new = x, x
    for i, (la, lb) in enumerate(zip(a.layers, b.layers)):
        assert la.n_kept == lb.n_kept
        assert torch.allclose(la.eigenvalues, lb.eigenvalues, rtol=1e-8, atol=0)
        fa, fb = _sign_align(a.transform(i, h_old), b.transform(i, h_new))
        _close(fa, fb)
        if i < len(old):
            h_old, h_new = old[i](h_old).detach(), new[i](h_new).detach()


def test_output_rotation_leaves_earlier_spectra():
    layers, x = NETS["relu"]()
    layers = [copy.deepcopy(m).double() for m in layers]
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3)).double())
    rot = nn.Linear(3, 3, bias=False).double()
    with torch.no_grad():
        rot.weight.copy_(q)
    base = interaction_basis(layers, x, progress=False)
    rotated = interaction_basis([*layers[:-1], nn.Sequential(*layers[-1], rot)], x,
                                progress=False)
    eig_out = interaction_basis(layers, x, rotate_outputs=True, progress=False)
    for other in (rotated, eig_out):
        for la, lb in zip(base.layers[:-1], other.layers[:-1]):
            assert torch.allclose(la.eigenvalues, lb.eigenvalues, rtol=1e-8, atol=0)
    out = eig_out.layers[-1]
    _, acts = _node_acts(layers, x)
    g = acts[-1].T @ acts[-1] / len(x)
    _close(out.C.T @ g @ out.C, torch.diag(out.eigenvalues))


@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_center_does_not_change_basis(name):
    """Any whitening of G gives the same C, so centering only changes the PCA basis (when both
    keep the same directions; near-dead units may be truncated differently)."""
    layers, x = NETS[name]()
    a = interaction_basis(layers, x, center=True, progress=False)
    b = interaction_basis(layers, x, center=False, progress=False)
    for i, (la, lb) in enumerate(zip(a.layers, b.layers)):
        _close(lb.eigenvalues, la.eigenvalues)
        if i < len(layers):
            ca, cb = _sign_align(la.C, lb.C)
            _close(cb, ca)
    assert not torch.allclose(a.layers[1].pca_eigenvalues[:3], b.layers[1].pca_eigenvalues[:3])


def test_integrated_edges_linear_independent_of_points():
    layers, x = NETS["linear"]()
    ref = interaction_basis(layers, x, progress=False)
    for integ, n in (("trapezoid", 2), ("trapezoid", 7), ("gauss-legendre", 1),
                     ("gauss-legendre", 5)):
        lib = interaction_basis(layers, x, integration=integ, n_points=n, progress=False)
        for la, lb in zip(ref.layers[:-1], lib.layers[:-1]):
            _close(lb.edges, la.edges)


def test_integrated_edges_tanh_against_jacrev():
    """Gauss–Legendre edges equal jacrev on the same nodes; the trapezoid rule converges to
    them; both differ from the gradient edges (the path integral matters for tanh)."""
    layers, x = NETS["tanh"]()
    gl = interaction_basis(layers, x, integration="gauss-legendre", n_points=6, progress=False)
    ref_layers, acts = _node_acts(layers, x)
    nodes, wts = np.polynomial.legendre.leggauss(6)
    for i, layer in enumerate(ref_layers):
        lb, nxt = gl.layers[i], gl.layers[i + 1]
        jbar = sum(wq / 2 * _jacobians(layer, (aq + 1) / 2 * acts[i]) for aq, wq in
                   zip(nodes.tolist(), wts.tolist()))
        jhat = nxt.C.T @ jbar @ lb.C_pinv.T
        edges = ((jhat * (acts[i] @ lb.C)[:, None, :]) ** 2).mean(0)
        _close(lb.edges, edges)
    grad = interaction_basis(layers, x, progress=False)
    errs = []
    for n in (11, 41):
        tr = interaction_basis(layers, x, integration="trapezoid", n_points=n, progress=False)
        errs.append(max(float((a.edges - b.edges).abs().max() / a.edges.max())
                        for a, b in zip(gl.layers[:-1], tr.layers[:-1])))
    gap = max(float((a.edges - b.edges).abs().max() / a.edges.max())
              for a, b in zip(gl.layers[:-1], grad.layers[:-1]))
    assert errs[1] < errs[0] / 8 and errs[1] < 1e-3  # O(h²) convergence
    assert gap > 1e-2
