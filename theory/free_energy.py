"""The local Bayesian free energy by quadrature: an oracle for λ that does not use SGLD.

For a model with one to three parameters, ``F_n = −log ∫ exp(−n L_n(w)) φ(w) dw`` is computed by
numerical integration, and the learning coefficient is read from its slope against ``log n``
(Watanabe's asymptotics ``F_n = n L_n(w0) + λ log n − (m − 1) log log n + O(1)``). The same
quadrature gives the exact value that the LLC estimator targets at finite n, the mean of
``nβ K(w)`` under the localised tempered posterior, so the estimator can be checked against an
integral instead of against the n → ∞ limit.

>>> import numpy as np
>>> from theory.free_energy import free_energy_curve
>>> curve = free_energy_curve(lambda w: w[:, 0] ** 2 * w[:, 1] ** 4, np.logspace(8, 16, 9),
...                           center=[0.0, 0.0])
>>> round(curve.slope, 3)
0.25
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ._quadrature import integrate

__all__ = [
    "FreeEnergyCurve",
    "free_energy",
    "free_energy_curve",
    "localized_llc",
]

MAX_DIM = 3
# Gauss–Legendre nodes per panel and panel ratio by dimension; measured accuracy of log Z on
# w1² w2⁴ over [-1, 1]² for t = 1 … 1e14: 1e-7 (order 6, ratio ½); 1e-4 (order 5, ratio ¼).
_ORDER = {1: 12, 2: 6, 3: 5}
_RATIO = {1: 0.5, 2: 0.5, 3: 0.25}
_GAUSS_HALF_WIDTH = 12.0  # a Gaussian prior is integrated over center ± 12/√γ (mass lost < e⁻⁷²)


def _setup(potential, center, box, localization, order):
    """Validate arguments; return (center, box, log_prior, order, ratio)."""
    if not callable(potential):
        raise TypeError(
            f"potential must be callable (points (m, d) -> (m,)), got {type(potential).__name__}"
        )
    if center is None:
        center = getattr(potential, "center", None)
        if center is None:
            raise ValueError(
                "center is required when potential has no `center` attribute (it sets d)"
            )
    try:
        center = np.atleast_1d(np.asarray(center, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise ValueError(f"center must be a finite vector of length d, got {center!r}") from err
    if center.ndim != 1 or not np.isfinite(center).all():
        raise ValueError(f"center must be a finite vector of length d, got {center!r}")
    d = center.size
    if not 1 <= d <= MAX_DIM:
        raise ValueError(
            f"potential must have 1 to {MAX_DIM} parameters for quadrature, got d = {d}"
        )
    if localization is not None:
        if not (
            isinstance(localization, int | float)
            and math.isfinite(localization)
            and localization > 0
        ):
            raise ValueError(f"localization must be a positive number, got {localization!r}")
        g = float(localization)

        def log_prior(w: np.ndarray) -> np.ndarray:
            return -0.5 * g * ((w - center) ** 2).sum(1) + 0.5 * d * math.log(g / (2 * math.pi))

        if box is None:
            half = _GAUSS_HALF_WIDTH / math.sqrt(g)
            box = [(c - half, c + half) for c in center]
    else:
        if box is None:
            box = [(c - 1.0, c + 1.0) for c in center]
    box_a = _check_box(box, center)
    if localization is None:
        log_vol = float(np.log(box_a[:, 1] - box_a[:, 0]).sum())

        def log_prior(w: np.ndarray) -> np.ndarray:
            return np.full(w.shape[0], -log_vol)

    if order is None:
        order = _ORDER[d]
    if isinstance(order, bool) or not isinstance(order, int) or order < 3:
        raise ValueError(f"order must be an integer >= 3, got {order!r}")
    return center, [tuple(b) for b in box_a], log_prior, order, _RATIO[d]


def _check_box(box, center: np.ndarray) -> np.ndarray:
    """(d, 2) finite intervals lo < hi containing the centre (checked before any log volume)."""
    d = center.size
    try:
        box_a = np.asarray(box, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"box must be {d} intervals (lo, hi) of numbers, got {box!r}") from err
    if (
        box_a.shape != (d, 2)
        or not np.isfinite(box_a).all()
        or not (box_a[:, 0] <= center).all()
        or not (center <= box_a[:, 1]).all()
        or not (box_a[:, 0] < box_a[:, 1]).all()
    ):
        raise ValueError(
            f"box must be {d} finite intervals (lo, hi) with lo < hi and lo <= center <= hi, "
            f"got {box!r}"
        )
    return box_a


def _check_positive_array(name: str, value) -> np.ndarray:
    try:
        arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be positive finite numbers, got {value!r}") from err
    if arr.ndim != 1 or arr.size == 0 or not (np.isfinite(arr) & (arr > 0)).all():
        raise ValueError(f"{name} must be positive finite numbers, got {value!r}")
    return arr


def free_energy(
    potential: Callable[[np.ndarray], np.ndarray],
    n,
    *,
    center: Sequence[float] | None = None,
    box: Sequence[tuple[float, float]] | None = None,
    localization: float | None = None,
    order: int | None = None,
    return_error: bool = False,
):
    """``F_n − n L_n(w0) = −log ∫ exp(−n K(w)) φ(w) dw`` by quadrature, for 1 to 3 parameters.

    Parameters
    ----------
    potential : callable
        ``K(w) = L(w) − L(w0)`` on points of shape ``(m, d)``, returning shape ``(m,)``; for
        example ``llc.Potential(model, data).excess_loss()``, or a population ``K`` in NumPy.
    n : float or array_like
        Sample size(s) (any positive reals; the integral is evaluated at each).
    center : sequence of float, optional
        w0, where ``K`` is singular; the rule is graded towards it. Required unless ``potential``
        has a ``center`` attribute. Its length is d.
    box : sequence of (lo, hi), optional
        Integration box. Default ``w0 ± 1`` (uniform prior) or ``w0 ± 12/√γ`` (Gaussian).
    localization : float, optional
        γ: the prior is the normalised Gaussian ``N(w0, I/γ)``. Default: uniform on ``box``.
    order : int, optional
        Gauss–Legendre nodes per panel (default 12, 6, 5 for d = 1, 2, 3). A rule of more than
        5·10⁷ points in all (large order, d = 3 with very large n) is refused with a ValueError.
    return_error : bool
        Also return an error estimate, ``|F(order) − F(order − 1)|``.

    Returns
    -------
    F : float or ndarray, shape of ``n``
    error : same shape, if ``return_error``

    Notes
    -----
    ``F_n = −log ∫ exp(−n L_n(w)) φ(w) dw`` and ``F_n − n L_n(w0) = −log ∫ exp(−n K(w)) φ(w) dw``.
    With the population ``K`` (or the exact ``K`` of a realizable model) this is the
    deterministic part of F_n; with an n-sample realisation ``K_n`` (``llc.Potential.excess_loss``)
    it is F_n itself for that data set. The rule is a tensor product of composite Gauss–Legendre
    rules with panels ``w0 ± L rᵏ`` (k = 0 … 50, r = ½, or ¼ in 3-d): uniform in ``log|w − w0|``,
    so sharp features at every scale near w0 are resolved; features away from the coordinate
    hyperplanes through w0 are not refined (choose w0 accordingly).

    References
    ----------
    .. [1] S. Watanabe, *Algebraic Geometry and Statistical Learning Theory*, Cambridge, 2009,
       Main Theorem 6.2.
    """
    c, box_l, log_prior, order, ratio = _setup(potential, center, box, localization, order)
    n_arr = _check_positive_array("n", n)
    lz, _ = integrate(potential, box_l, c, log_prior, n_arr, order=order, ratio=ratio)
    f = -lz
    scalar = np.ndim(n) == 0
    if not return_error:
        return float(f[0]) if scalar else f
    lz2, _ = integrate(potential, box_l, c, log_prior, n_arr, order=order - 1, ratio=ratio)
    err = np.abs(lz - lz2)
    return (float(f[0]), float(err[0])) if scalar else (f, err)


def localized_llc(
    potential: Callable[[np.ndarray], np.ndarray],
    nbeta: float,
    *,
    localization: float,
    center: Sequence[float] | None = None,
    box: Sequence[tuple[float, float]] | None = None,
    order: int | None = None,
) -> float:
    """The exact target of the LLC estimator at finite n: ``E[nβ K(w)]`` by quadrature.

    Parameters
    ----------
    potential : callable
        ``K(w) = L_n(w) − L_n(w*)``; for a model,
        ``llc.Potential(model, data, dtype=torch.float64).excess_loss()``.
    nbeta : float
        nβ, ``n / log n`` in :func:`llc.estimate_llc`.
    localization : float
        γ of the estimator; 0 is allowed when ``box`` is given (uniform prior on it).
    center, box, order
        As in :func:`free_energy`.

    Notes
    -----
    ``E[nβ K] = ∫ nβ K(w) e^{−nβ K(w) − γ‖w − w*‖²/2} dw / ∫ e^{−nβ K(w) − γ‖w − w*‖²/2} dw``,
    which is what ``λ̂ = nβ (E[L_n(w)] − L_n(w*))`` estimates with exact draws. It tends to λ as
    n → ∞ and differs from it at finite n (by the localisation and, for m > 1, by terms of order
    1/log n).
    """
    nb = float(_check_positive_array("nbeta", nbeta)[0])
    if localization == 0 and box is not None:
        localization = None
    c, box_l, log_prior, order, ratio = _setup(potential, center, box, localization, order)
    _, mk = integrate(
        potential, box_l, c, log_prior, np.array([nb]), order=order, ratio=ratio, moment=True
    )
    return float(nb * mk[0])


@dataclass(frozen=True)
class FreeEnergyCurve:
    """``F_n − n L_n(w0)`` over a range of n and the learning coefficient read from its slope.

    Attributes
    ----------
    n : ndarray, shape (k,)
    free_energy : ndarray, shape (k,)
        ``F_n − n L_n(w0)``.
    quadrature_error : ndarray, shape (k,)
        ``|F(order) − F(order − 1)|``.
    slope : float
        λ estimated by least squares of ``F_n + (m − 1) log log n`` on ``log n`` (and a constant).
    intercept : float
    multiplicity : int
        m used in the correction (1: no correction).
    residual : float
        Largest absolute residual of the fit.
    settings : dict
        center, box, localization, order.
    """

    n: np.ndarray
    free_energy: np.ndarray
    quadrature_error: np.ndarray
    slope: float
    intercept: float
    multiplicity: int
    residual: float
    settings: dict = field(default_factory=dict)

    def local_slopes(self) -> tuple[np.ndarray, np.ndarray]:
        """Slopes of the corrected F between consecutive n: (midpoints of log n, slopes)."""
        lg = np.log(self.n)
        g = self.free_energy + (self.multiplicity - 1) * np.log(lg)
        return 0.5 * (lg[1:] + lg[:-1]), np.diff(g) / np.diff(lg)

    def plot(self, exact: float | None = None, ax=None):
        """``F_n − n L_n(w0)`` against log n with the fitted line (and ``λ log n`` if ``exact``).

        Returns the matplotlib Figure; a second panel shows the local slope approaching λ.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        else:
            axes = [ax]
            fig = ax.figure
        lg = np.log(self.n)
        corr = (self.multiplicity - 1) * np.log(lg)
        a = axes[0]
        a.plot(lg, self.free_energy, "o", label=r"$F_n - nL_n(w_0)$ (quadrature)")
        a.plot(
            lg,
            self.slope * lg - corr + self.intercept,
            "-",
            label=rf"fit: $\hat\lambda$ = {self.slope:.4f}",
        )
        if exact is not None:
            c0 = float(np.mean(self.free_energy + corr - exact * lg))
            a.plot(lg, exact * lg - corr + c0, "--", label=rf"$\lambda \log n$, λ = {exact:.4g}")
        a.set_xlabel(r"$\log n$")
        a.set_ylabel("free energy")
        a.legend(fontsize=8)
        if len(axes) > 1 and self.n.size > 1:
            mid, s = self.local_slopes()
            axes[1].plot(mid, s, "o-", label="local slope")
            if exact is not None:
                axes[1].axhline(exact, ls="--", color="k", label="exact λ")
            axes[1].set_xlabel(r"$\log n$")
            axes[1].set_ylabel(
                r"$d F / d\log n$" + (" (corrected)" if self.multiplicity > 1 else "")
            )
            axes[1].legend(fontsize=8)
        fig.tight_layout()
        return fig


def free_energy_curve(
    potential: Callable[[np.ndarray], np.ndarray],
    n,
    *,
    multiplicity: int = 1,
    center: Sequence[float] | None = None,
    box: Sequence[tuple[float, float]] | None = None,
    localization: float | None = None,
    order: int | None = None,
) -> FreeEnergyCurve:
    """λ from the slope of the quadrature free energy against log n.

    Parameters
    ----------
    potential, center, box, localization, order
        As in :func:`free_energy`.
    n : array_like, at least 2 values
        Sample sizes, e.g. ``np.logspace(8, 16, 9)`` (the slope converges slowly for small n:
        corrections are of relative order ``n^{−(λ' − λ)}``, λ' the next pole).
    multiplicity : int
        m: fit ``F_n + (m − 1) log log n = λ log n + c``.

    Returns
    -------
    FreeEnergyCurve

    Notes
    -----
    ``F_n = n L_n(w0) + λ log n − (m − 1) log log n + O(1)`` [1]_; the fit is ordinary least
    squares on ``(log n, 1)``.

    References
    ----------
    .. [1] S. Watanabe, *Algebraic Geometry and Statistical Learning Theory*, Cambridge, 2009.
    """
    if isinstance(multiplicity, bool) or not isinstance(multiplicity, int) or multiplicity < 1:
        raise ValueError(f"multiplicity must be an integer >= 1, got {multiplicity!r}")
    n_arr = np.sort(_check_positive_array("n", n))
    if n_arr.size < 2 or n_arr[0] <= math.e:
        raise ValueError(f"n must contain at least 2 sample sizes, all > e, got {n!r}")
    f, err = free_energy(
        potential,
        n_arr,
        center=center,
        box=box,
        localization=localization,
        order=order,
        return_error=True,
    )
    lg = np.log(n_arr)
    g = f + (multiplicity - 1) * np.log(lg)
    design = np.stack([lg, np.ones_like(lg)], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(design, g, rcond=None)
    resid = float(np.abs(design @ np.array([slope, intercept]) - g).max())
    c, box_l, _, order_used, _ = _setup(potential, center, box, localization, order)
    return FreeEnergyCurve(
        n=n_arr,
        free_energy=f,
        quadrature_error=err,
        slope=float(slope),
        intercept=float(intercept),
        multiplicity=multiplicity,
        residual=resid,
        settings={"center": c, "box": box_l, "localization": localization, "order": order_used},
    )
