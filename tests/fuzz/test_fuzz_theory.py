"""Fuzz the public functions of `theory` against the contract.

Exact coefficients, Gibbs λ, free energies, polytopes, natural latents and the interaction basis:
each call returns a finite result of the documented kind, or raises ValueError/TypeError naming
the argument; it never hangs and never changes the model or the global RNG.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st
from torch import nn

from theory import exact
from theory.free_energy import free_energy, localized_llc
from theory.gibbs import dln_gibbs_llc
from theory.interaction import interaction_basis
from theory.models import normal_form_teacher
from theory.natural_latents import (
    gaussian_natural_latent_errors,
    mediation_error,
    natural_latent_errors,
    natural_latent_errors_from_samples,
)
from theory.polytopes import activation_codes, enumerate_regions, region_bounds

from ._contract import (
    check_error,
    is_finite,
    model_snapshot,
    no_hang,
    rng_state,
    same_model,
    same_rng,
)
from ._models import mlp

pytestmark = pytest.mark.usefixtures("one_thread")

ODD_FLOATS = (float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1e-300, 1e300)
ODD_INTS = (-1, 0, True, 2.5, "3", None, 10**6)
# For sizes of work (sweeps, chains): 10**6 is a legitimate, long request, not a bad input.
ODD_SIZES = ODD_INTS[:-1]


def _odd_or(draw, valid, odd=ODD_FLOATS, p=6):
    """A valid value most of the time, an odd one about 1 in ``p`` draws."""
    if draw(st.integers(0, p - 1)) == 0:
        return draw(st.sampled_from(odd))
    return draw(valid)


def _outcome(name, call, names):
    """Run ``call`` under the contract; return its result or None when refused."""
    rng = rng_state()
    try:
        with no_hang(20):
            result = call()
    except Exception as exc:  # noqa: BLE001 (the contract decides)
        event(f"{name}: refused ({type(exc).__name__}: {str(exc)[:50]})")
        check_error(exc, names)
        result = None
    else:
        event(f"{name}: result")
    assert same_rng(rng, rng_state()), f"{name} changed the global RNG"
    return result


def _poison(draw, model):
    if draw(st.integers(0, 4)) == 0:
        params = list(model.parameters())
        p = params[draw(st.integers(0, len(params) - 1))]
        with torch.no_grad():
            value = torch.tensor(draw(st.sampled_from(ODD_FLOATS)), dtype=torch.float64)
            p.view(-1)[draw(st.integers(0, p.numel() - 1))] = value.to(p.dtype)


# ---- exact coefficients ------------------------------------------------------------------------
def _aslist(a):
    return a if isinstance(a, list) else [a]


_int_like = st.one_of(st.integers(-2, 9), st.sampled_from(ODD_INTS), st.fractions(0, 5))


@given(
    fn=st.sampled_from(["regular", "normal_crossing", "rrr", "dln"]),
    a=st.one_of(st.lists(_int_like, min_size=0, max_size=6), _int_like, st.just("ab")),
    b=_int_like,
)
def test_fuzz_exact(fn, a, b):
    calls = {
        "regular": (lambda: exact.regular(b), ["d must"]),
        "normal_crossing": (
            lambda: exact.normal_crossing(a, None if b is None else _aslist(a)[::-1]),
            ["k must", "k[", "h must", "h["],
        ),
        "rrr": (
            lambda: exact.reduced_rank_regression(*(_aslist(a) + [1, 1, 1])[:3], b),
            ["M must", "H must", "N must", "rank must"],
        ),
        "dln": (lambda: exact.deep_linear_network(a, b), ["widths", "rank"]),
    }
    call, names = calls[fn]
    lc = _outcome(fn, call, names)
    if lc is not None:
        assert isinstance(lc.value, Fraction) and lc.value >= 0 and math.isfinite(float(lc))
        assert isinstance(lc.multiplicity, int) and lc.multiplicity >= 1


# ---- Gibbs λ of deep linear networks -----------------------------------------------------------
@given(st.data())
def test_fuzz_dln_gibbs(data):
    draw = data.draw
    widths = draw(st.lists(st.integers(1, 3), min_size=2, max_size=3))
    rank = draw(st.integers(0, min(widths)))
    model = normal_form_teacher(widths, rank, seed=draw(st.integers(0, 99)), dtype=torch.float64)
    _poison(draw, model)
    n = draw(st.integers(1, 20))
    g = torch.Generator().manual_seed(draw(st.integers(0, 99)))
    x = torch.randn(n, widths[0], generator=g, dtype=torch.float64)
    y = x @ torch.randn(widths[0], widths[-1], generator=g, dtype=torch.float64)
    kw = dict(
        nbeta=_odd_or(draw, st.sampled_from([None, 1.0, 50.0])),
        localization=_odd_or(draw, st.sampled_from([0.3, 10.0])),
        num_chains=_odd_or(draw, st.integers(1, 3), ODD_SIZES),
        num_sweeps=_odd_or(draw, st.integers(4, 12), ODD_SIZES),
        seed=_odd_or(draw, st.integers(0, 2**31), ODD_INTS),
    )
    before = model_snapshot(model)
    names = ["model", "layer", "data", "inputs", "targets", *kw, "num_burnin"]
    res = _outcome(
        "dln_gibbs_llc", lambda: dln_gibbs_llc(model, (x, y), progress=False, **kw), names
    )
    assert same_model(before, model_snapshot(model))
    if res is not None:
        assert is_finite(res.mean) and is_finite(res.trace)


# ---- free energy by quadrature -----------------------------------------------------------------
def _potential(kind, d):
    if kind == "quadratic":
        return lambda w: (w**2).sum(1)
    if kind == "quartic":
        return lambda w: (w**4).sum(1)
    if kind == "nan":
        return lambda w: np.full(w.shape[0], np.nan)
    return lambda w: (w[:, :1] ** 2 * w[:, -1:] ** 2).sum(1)  # normal crossing


@given(st.data())
def test_fuzz_free_energy(data):
    draw = data.draw
    d = draw(st.integers(1, 3))
    pot = _potential(draw(st.sampled_from(["quadratic", "quartic", "crossing", "nan"])), d)
    center = [0.0] * d
    if draw(st.integers(0, 5)) == 0:
        center = draw(st.sampled_from([[0.0] * (d + 1), [float("nan")] * d, "c"]))
    box = None
    if draw(st.booleans()):
        lo, hi = draw(st.sampled_from([(-1.0, 1.0), (1.0, -1.0), (0.0, 0.0), (-1e-9, 1e9)]))
        box = [(lo, hi)] * d
    localization = _odd_or(draw, st.sampled_from([None, 1.0, 100.0]))
    order = _odd_or(draw, st.sampled_from([None, 3, 6]), ODD_INTS)
    n = _odd_or(draw, st.sampled_from([[10.0, 100.0], [1e4, 1e8], [3.0, 5.0]]), ([], [0.0], "n"))
    which = draw(st.sampled_from(["free_energy", "localized_llc"]))
    names = ["potential", "center", "box", "localization", "order", "n must", "nbeta", "quadrature"]

    def call():
        if which == "free_energy":
            return free_energy(
                pot, n, center=center, box=box, localization=localization, order=order
            )
        nb = n[0] if isinstance(n, list) and n else n
        return localized_llc(
            pot, nb, center=center, box=box, localization=localization or 1.0, order=order
        )

    res = _outcome(which, call, names)
    if res is not None:
        assert is_finite(res)


# ---- polytopes ---------------------------------------------------------------------------------
@given(st.data())
def test_fuzz_polytopes(data):
    draw = data.draw
    d = draw(st.integers(1, 3))
    widths = [d, *draw(st.lists(st.integers(1, 5), min_size=1, max_size=2)), 1]
    act = draw(st.sampled_from([nn.ReLU, lambda: nn.LeakyReLU(0.1)]))
    model = mlp(widths, draw(st.integers(0, 99)), act=act)
    _poison(draw, model)
    lo, hi = -np.ones(d), np.ones(d)
    if draw(st.integers(0, 4)) == 0:
        lo, hi = draw(
            st.sampled_from(
                [(hi, lo), (lo * np.nan, hi), (lo * 1e12, hi * 1e12), (lo[:-1], hi[:-1])]
            )
        )
    kw = dict(
        method=_odd_or(draw, st.sampled_from(["auto", "lp", "polygon"]), ("bogus",)),
        tol=_odd_or(draw, st.sampled_from([1e-7, 1e-3])),
        max_regions=_odd_or(draw, st.sampled_from([None, 1, 50]), ODD_INTS),
    )
    before = model_snapshot(model)
    names = ["model", "lower", "upper", "method", "tol", "max_regions", "lp_backend", "box"]
    which = draw(st.sampled_from(["enumerate_regions", "activation_codes", "region_bounds"]))
    if which == "enumerate_regions":
        res = _outcome(which, lambda: enumerate_regions(model, lo, hi, progress=False, **kw), names)
        if res is not None:
            assert 1 <= len(res) <= region_bounds(widths[:-1]).product
            assert all(is_finite(r.interior_point) for r in res)
    elif which == "activation_codes":
        x = torch.randn(7, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        res = _outcome(which, lambda: activation_codes(model, x), ["model", "x"])
        if res is not None:
            assert res.dtype == torch.bool and res.shape == (7, sum(widths[1:-1]))
    else:
        w = draw(st.lists(_int_like, min_size=0, max_size=4))
        res = _outcome(which, lambda: region_bounds(w), ["widths"])
        if res is not None:
            assert res.serra >= 1 and res.one_layer >= 1 and res.serra <= res.product
    assert same_model(before, model_snapshot(model))


# ---- natural latents ---------------------------------------------------------------------------
@given(st.data())
def test_fuzz_natural_latents_exact(data):
    draw = data.draw
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=3, max_size=3)))
    g = np.random.default_rng(draw(st.integers(0, 99)))
    p = g.dirichlet(np.ones(int(np.prod(shape)))).reshape(shape)
    change = draw(st.sampled_from([None, None, None, "scale", "negative", "nan"]))
    if change == "scale":
        p = p * 3
    elif change == "negative":
        p.flat[0] -= 0.5
    elif change == "nan":
        p.flat[0] = np.nan
    atol = _odd_or(draw, st.sampled_from([1e-8, 1e-3]), (*ODD_FLOATS, "1e-8", None))
    normalize = draw(st.booleans())
    kind = draw(st.sampled_from(["stochastic", "deterministic", "bogus"]))
    names = ["joint", "atol", "kind", "observables", "latent"]
    which = draw(st.sampled_from(["mediation_error", "natural_latent_errors"]))
    if which == "mediation_error":
        res = _outcome(
            which, lambda: mediation_error(p, [0, 1], 2, normalize=normalize, atol=atol), names
        )
        values = [] if res is None else [res]
    else:
        res = _outcome(
            which,
            lambda: natural_latent_errors(p, [0, 1], 2, kind, normalize=normalize, atol=atol),
            names,
        )
        values = [] if res is None else [res.mediation, *res.redundancy]
    assert all(math.isfinite(v) and v >= -1e-12 for v in values), values
    if res is not None and change == "scale" and not normalize:
        raise AssertionError("a table summing to 3 was accepted without normalize=True")


@given(st.data())
def test_fuzz_natural_latents_gaussian(data):
    draw = data.draw
    g = np.random.default_rng(draw(st.integers(0, 99)))
    a = g.standard_normal((3, draw(st.integers(1, 4))))
    cov = a @ a.T
    change = draw(st.sampled_from([None, None, "asym", "indefinite", "nan", "shape"]))
    if change == "asym":
        cov[0, 1] += 1.0
    elif change == "indefinite":
        cov = cov - 10 * np.eye(3)
    elif change == "nan":
        cov[0, 0] = np.nan
    elif change == "shape":
        cov = cov[:2]
    kw = dict(
        atol=_odd_or(draw, st.just(1e-8)),
        rtol=_odd_or(draw, st.just(1e-10)),
    )
    names = ["cov", "atol", "rtol", "blocks", "latent", "kind"]
    res = _outcome("gaussian", lambda: gaussian_natural_latent_errors(cov, [0, 1], 2, **kw), names)
    if res is not None:  # +inf is documented: an exact linear dependence between blocks
        assert all(v == math.inf or v >= -1e-9 for v in [res.mediation, *res.redundancy])


@given(st.data())
def test_fuzz_natural_latents_samples(data):
    draw = data.draw
    n = draw(st.integers(1, 60))
    g = np.random.default_rng(draw(st.integers(0, 99)))
    lat = g.integers(0, draw(st.integers(1, 3)), n)
    xs = [lat + g.integers(0, 2, n), lat * 2 + g.integers(0, 2, n)]
    if draw(st.integers(0, 5)) == 0:
        xs[0] = draw(st.sampled_from([xs[0][:-1], xs[0].astype(float) * np.nan, "x"]))
    kw = dict(
        estimator=_odd_or(draw, st.sampled_from(["plugin", "miller_madow"]), ("bogus",)),
        n_bootstrap=_odd_or(draw, st.sampled_from([0, 5]), ODD_SIZES),
        confidence=_odd_or(draw, st.sampled_from([0.9, 0.5])),
        seed=_odd_or(draw, st.sampled_from([0, 3]), ODD_INTS),
    )
    names = ["x_blocks", "latent", "estimator", "n_bootstrap", "confidence", "seed", "block"]
    res = _outcome("from_samples", lambda: natural_latent_errors_from_samples(xs, lat, **kw), names)
    if res is not None:
        values = [res.mediation, *res.redundancy]
        assert all(math.isfinite(v) for v in values)
        if kw["estimator"] == "plugin":
            assert all(v >= -1e-12 for v in values)


# ---- interaction basis -------------------------------------------------------------------------
@given(st.data())
def test_fuzz_interaction_basis(data):
    draw = data.draw
    d = draw(st.integers(1, 3))
    widths = [
        d,
        *draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)),
        draw(st.integers(1, 2)),
    ]
    extra = draw(st.sampled_from([None, None, nn.BatchNorm1d, nn.LayerNorm]))
    act = draw(st.sampled_from([nn.ReLU, nn.Tanh, nn.GELU]))
    model = mlp(
        widths,
        draw(st.integers(0, 99)),
        act=act,
        dtype=draw(st.sampled_from([torch.float32, torch.float64])),
        extra=extra,
    )
    model.train(draw(st.booleans()))
    _poison(draw, model)
    n = draw(st.integers(1, 40))
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))))
    if draw(st.integers(0, 6)) == 0:
        x = draw(st.sampled_from([x[:, :0], x.long(), x * np.nan, x[0], x.numpy()]))
    kw = dict(
        dtype=_odd_or(
            draw,
            st.sampled_from([torch.float64, torch.float32]),
            (torch.float16, torch.bfloat16, torch.int64, "f8"),
        ),
        threshold=_odd_or(draw, st.sampled_from([None, 1e-6])),
        integration=_odd_or(
            draw, st.sampled_from(["gradient", "trapezoid", "gauss-legendre"]), ("bogus",)
        ),
        batch_size=_odd_or(draw, st.sampled_from([1024, 3]), ODD_SIZES),
    )
    if kw["integration"] != "gradient":
        kw["n_points"] = _odd_or(draw, st.sampled_from([None, 3]), ODD_INTS)
    before = model_snapshot(model)
    names = [
        "layers",
        "inputs",
        "dtype",
        "threshold",
        "integration",
        "n_points",
        "batch_size",
        "node layer",
        "outputs",
    ]
    res = _outcome(
        "interaction_basis", lambda: interaction_basis(model, x, progress=False, **kw), names
    )
    assert same_model(before, model_snapshot(model)), "interaction_basis changed the model"
    if res is not None:
        for layer in res.layers:
            assert is_finite(layer.C) and is_finite(layer.eigenvalues) and layer.n_kept >= 1
            assert layer.C.dtype == kw["dtype"]
