"""Quadrature free energy: closed forms and slopes against exact λ.

The estimator is checked against this quadrature in ``tests/llc/test_potential.py``.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import gamma as gamma_fn
from scipy.special import gammainc

from theory.exact import normal_crossing
from theory.free_energy import (
    FreeEnergyCurve,
    free_energy,
    free_energy_curve,
    localized_llc,
)

matplotlib.use("Agg")

N_RANGE = np.logspace(10, 40, 7)  # quadrature is exact at any n: large n removes O(n^-δ) terms


def nc_potential(k):
    k2 = 2 * np.asarray(k)
    return lambda w: 0.5 * np.prod(w**k2, axis=1)


_XS, _WS = hermegauss(100)
_WS = _WS / _WS.sum()


def tanh_potential(w):
    """Population K(a, b) = ½ a² E[tanh²(b x)], x ~ N(0, 1), by Gauss–Hermite on unique b."""
    b, inv = np.unique(w[:, 1], return_inverse=True)
    g = np.tanh(b[:, None] * _XS[None, :]) ** 2 @ _WS
    return 0.5 * w[:, 0] ** 2 * g[inv]



# ---- closed forms -------------------------------------------------------------------------------


def test_one_dimensional_closed_form():
    n = np.logspace(0, 30, 13)
    f = free_energy(lambda w: w[:, 0] ** 4, n, center=[0.0])
    # uniform prior on [-1, 1]: Z = ∫_0^1 e^{-n w⁴} dw = n^{-1/4} γ(1/4, n) / 4
    exact = -np.log(n**-0.25 * gamma_fn(0.25) * gammainc(0.25, n) / 4)
    np.testing.assert_allclose(f, exact, atol=1e-9)


def test_gaussian_prior_closed_form():
    # K = ½ wᵀ H w with prior N(0, I/γ): F = ½ log det(I + n H / γ)
    h = np.array([[2.0, 0.6], [0.6, 0.5]])
    gamma = 0.7
    n = np.logspace(0, 12, 7)
    f = free_energy(
        lambda w: 0.5 * np.einsum("mi,ij,mj->m", w, h, w), n, center=[0, 0], localization=gamma
    )
    exact = [0.5 * np.linalg.slogdet(np.eye(2) + t * h / gamma)[1] for t in n]
    np.testing.assert_allclose(f, exact, atol=1e-7)
    # and the estimator's target E[nβ K] = ½ Σ nβ h_i / (nβ h_i + γ)
    ev = np.linalg.eigvalsh(h)
    for nb in (3.0, 145.0):
        want = 0.5 * np.sum(nb * ev / (nb * ev + gamma))
        got = localized_llc(
            lambda w: 0.5 * np.einsum("mi,ij,mj->m", w, h, w), nb, localization=gamma, center=[0, 0]
        )
        assert got == pytest.approx(want, rel=1e-6)  # quadrature accuracy ~1e-7


# ---- slopes against exact λ ---------------------------------------------------------------------


@pytest.mark.parametrize("k", [(1, 2), (2, 3), (1, 4), (1, 1), (2, 2)])
def test_slope_normal_crossing(k):
    lc = normal_crossing(k)
    curve = free_energy_curve(
        nc_potential(k), N_RANGE, multiplicity=lc.multiplicity, center=np.zeros(len(k))
    )
    assert curve.slope == pytest.approx(float(lc.value), rel=0.02)
    assert curve.quadrature_error.max() < 1e-2


def test_multiplicity_correction_matters():
    """Without the (m − 1) log log n term the m = 2 slope is off by more than 2 %."""
    lc = normal_crossing((1, 1))
    plain = free_energy_curve(nc_potential((1, 1)), np.logspace(4, 12, 5), center=[0, 0])
    corrected = free_energy_curve(
        nc_potential((1, 1)), np.logspace(4, 12, 5), multiplicity=2, center=[0, 0]
    )
    assert abs(plain.slope / float(lc.value) - 1) > 0.02
    assert abs(corrected.slope - float(lc.value)) < abs(plain.slope - float(lc.value))


@pytest.mark.slow
def test_slope_three_parameters():
    curve = free_energy_curve(
        lambda w: 0.5 * w[:, 0] ** 2 * w[:, 1] ** 2 * w[:, 2] ** 6,
        np.logspace(10, 30, 5),
        center=np.zeros(3),
        order=4,
    )
    assert curve.slope == pytest.approx(float(normal_crossing((1, 1, 3)).value), rel=0.02)


def test_slope_tanh_unit_and_regular():
    tanh = free_energy_curve(tanh_potential, N_RANGE, multiplicity=2, center=[0, 0])
    assert tanh.slope == pytest.approx(0.5, rel=0.02)
    h = np.array([[1.0, 0.5], [0.5, 2.0]])
    reg = free_energy_curve(
        lambda w: 0.5 * np.einsum("mi,ij,mj->m", w, h, w), N_RANGE, center=[0, 0]
    )
    assert reg.slope == pytest.approx(1.0, rel=0.02)
    fig = tanh.plot(exact=0.5)
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 2
    assert isinstance(tanh, FreeEnergyCurve)


# ---- bad input ----------------------------------------------------------------------------------


def test_bad_input():
    with pytest.raises(ValueError, match="potential must have 1 to 3"):
        free_energy(lambda w: w.sum(1), 10.0, center=np.zeros(4))
    with pytest.raises(ValueError, match="center is required"):
        free_energy(lambda w: w.sum(1), 10.0)
    with pytest.raises(ValueError, match="n must be positive"):
        free_energy(lambda w: w[:, 0] ** 2, [10.0, -1.0], center=[0.0])
    with pytest.raises(ValueError, match="potential must map"):
        free_energy(lambda w: w, 10.0, center=[0.0, 0.0])
    with pytest.raises(ValueError, match="box"):
        free_energy(lambda w: w[:, 0] ** 2, 10.0, center=[0.0], box=[(1.0, 2.0)])
    with pytest.raises(ValueError, match="multiplicity"):
        free_energy_curve(lambda w: w[:, 0] ** 2, [10.0, 100.0], center=[0.0], multiplicity=0)
    with pytest.raises(ValueError, match="localization"):
        localized_llc(lambda w: w[:, 0] ** 2, 10.0, localization=-1.0, center=[0.0])
