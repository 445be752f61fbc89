"""Maximum-likelihood fits of single scipy.stats families and their goodness of fit.

Private helper of :mod:`priors.fit`: one function per step (validate, fit one family, test
one family), no state.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import numpy as np
from scipy import stats

#: Families on the whole real line (location fitted unless the fit is a hurdle slab).
REAL_FAMILIES: tuple[str, ...] = ("laplace", "cauchy", "t", "gennorm", "norm")
#: Families on a >= 0 (location fixed at 0); used only when the data are >= 0.
POSITIVE_FAMILIES: tuple[str, ...] = (
    "halfgennorm",
    "halfcauchy",
    "lognorm",
    "gamma",
    "expon",
    "lomax",
    "genpareto",
    "invgamma",
)
FAMILIES: tuple[str, ...] = REAL_FAMILIES + POSITIVE_FAMILIES

#: Fewer points than this cannot support a 3-parameter fit and a rank.
MIN_SAMPLES = 10


def as_samples(samples: object) -> np.ndarray:
    """Flatten ``samples`` (array-like or torch tensor) to a float64 vector, validated."""
    if hasattr(samples, "detach") and hasattr(samples, "cpu"):  # torch tensor, any device
        samples = samples.detach().cpu().double().numpy()
    if np.iscomplexobj(samples):
        raise TypeError("samples must be real numbers; got complex values")
    try:
        arr = np.asarray(samples, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"samples must be an array of real numbers (or a torch tensor); got "
            f"{type(samples).__name__}"
        ) from exc
    if arr.ndim > 1:
        warnings.warn(
            f"samples has shape {arr.shape}: all {arr.size} values are fitted as one sample "
            "(pooled over features); pass samples.ravel() to silence this, or fit each "
            "feature's column separately",
            UserWarning,
            stacklevel=3,
        )
    x = arr.ravel()
    n_nan = int(np.isnan(x).sum())
    if n_nan:
        raise ValueError(f"samples contains {n_nan} NaN value(s) out of {x.size}; drop them first")
    n_inf = int(np.isinf(x).sum())
    if n_inf:
        raise ValueError(f"samples contains {n_inf} infinite value(s) out of {x.size}")
    if x.size < MIN_SAMPLES:
        raise ValueError(
            f"samples has {x.size} point(s); fitting needs at least {MIN_SAMPLES}"
        )
    return x


def as_families(families: str | Iterable[str] | None) -> tuple[str, ...]:
    """Validate family names; ``None`` means all of :data:`FAMILIES`."""
    if families is None:
        return FAMILIES
    if isinstance(families, str):
        families = (families,)
    try:
        names = tuple(dict.fromkeys(families))  # keep order, drop duplicates
    except TypeError as exc:
        raise TypeError("families must be a family name or a sequence of names") from exc
    if not names:
        raise ValueError("families is empty; give at least one of " + ", ".join(FAMILIES))
    unknown = [f for f in names if f not in FAMILIES]
    if unknown:
        raise ValueError(
            f"families: unknown family name(s) {unknown}; known scipy.stats families are "
            + ", ".join(FAMILIES)
        )
    return names


def n_free_params(name: str, fixed_loc: bool) -> int:
    """Number of fitted parameters: shapes + scale (+ loc unless fixed)."""
    dist = getattr(stats, name)
    n_shapes = len(dist.shapes.split(",")) if dist.shapes else 0
    return n_shapes + 1 + (0 if fixed_loc else 1)


def param_names(name: str) -> tuple[str, ...]:
    dist = getattr(stats, name)
    shapes = tuple(s.strip() for s in dist.shapes.split(",")) if dist.shapes else ()
    return (*shapes, "loc", "scale")


def logpdf(name: str, x: np.ndarray, *theta: float) -> np.ndarray:
    """``dist.logpdf(x, *theta)``, in closed form where scipy takes the log of an underflowed
    density (Laplace: ``|x − loc|/scale > 745`` gives −inf, e.g. on Cauchy data)."""
    if name == "laplace":
        loc, scale = theta
        return -np.log(2 * scale) - np.abs(np.asarray(x, dtype=np.float64) - loc) / scale
    return getattr(stats, name).logpdf(x, *theta)


def mle(name: str, x: np.ndarray, fixed_loc: bool) -> tuple[dict[str, float], float]:
    """Maximum-likelihood parameters of family ``name`` on ``x`` and the log-likelihood.

    Uses scipy's ``dist.fit`` (closed form where scipy has one, else Nelder–Mead from
    scipy's start). ``fixed_loc`` fixes loc = 0. Raises ``RuntimeError`` if the fit fails
    or the log-likelihood is not finite.
    """
    dist = getattr(stats, name)
    kwargs = {"floc": 0.0} if fixed_loc else {}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        theta = dist.fit(x, **kwargs)
        loglik = float(np.sum(logpdf(name, x, *theta)))
    params = {k: float(v) for k, v in zip(param_names(name), theta)}
    if not math.isfinite(loglik):
        raise RuntimeError(f"{name}: log-likelihood at the fitted parameters is {loglik}")
    return params, loglik


def gof(
    name: str,
    x: np.ndarray,
    fixed_loc: bool,
    params: dict[str, float],
    *,
    statistic: str,
    n_mc_samples: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Parametric-bootstrap goodness of fit (``scipy.stats.goodness_of_fit``).

    The parameters are refitted on every bootstrap sample (loc kept at 0 where it was
    fixed), so the p-value accounts for the fit, unlike a plain KS test.
    """
    dist = getattr(stats, name)
    known = {"loc": 0.0} if fixed_loc else None
    guessed = {k: v for k, v in params.items() if not (fixed_loc and k == "loc")}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        res = stats.goodness_of_fit(
            dist,
            x,
            known_params=known,
            guessed_params=guessed,
            statistic=statistic,
            n_mc_samples=n_mc_samples,
            rng=rng,
        )
    return float(res.statistic), float(res.pvalue)
