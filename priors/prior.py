"""Priors over feature activations as sympy densities.

A :class:`Prior` holds a normalized density (a sympy expression), its variable(s), its support
and its free parameters.  Spike-and-slab priors also carry a point mass at 0 (``atom``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import sympy as sp

from ._integrate import normalizer
from ._scipy_families import scipy_fields
from ._symbolic import (
    NUMPY_MODULES,
    PARAM_LATEX,
    ImproperPriorError,
    as_support,
    as_vars,
    by_name,
    check_param_value,
    default_support,
    param_symbol,
    real_var,
    stable_form,
    to_sympy_number,
)
from .penalty import penalty as _penalty

# ImproperPriorError, as_support, param_symbol, to_sympy_number: shared with penalties, so defined
# in _symbolic (below both) and re-exported here
__all__ = ["ImproperPriorError", "Prior", "as_support", "param_symbol", "to_sympy_number"]


@dataclass(frozen=True, eq=False)
class Prior:
    r"""A prior over activations: ``p(a) = atom·δ₀(a) + density(a)``.

    Parameters
    ----------
    density : sympy.Expr
        The (absolutely continuous part of the) density, normalized so that
        ``atom + ∫ density = 1``.
    var : sympy.Symbol or tuple of Symbol
        The activation variable, or the variables of a joint prior.
    support : sympy.Set
        ``Reals``, ``Interval(0, oo)``, or a product set for joint priors.
    params : tuple of Symbol
        Free parameters (symbols with their assumptions).
    name : str
        Family name.
    atom : sympy.Expr or None
        Probability mass at 0 (spike-and-slab); ``None`` for absolutely continuous priors.
    meta : Mapping
        Family-specific information (e.g. ``slab``, ``radial`` profile of a joint prior).

    Notes
    -----
    Build priors with :func:`priors.get`, :meth:`from_density` or :meth:`from_scipy`; the
    constructor does not check normalization.
    """

    density: sp.Expr
    var: Any
    support: sp.Set
    params: tuple = ()
    name: str = "custom"
    atom: sp.Expr | None = None
    meta: Mapping = field(default_factory=dict)

    # ------------------------------------------------------------------ basic properties
    @property
    def vars(self) -> tuple[sp.Symbol, ...]:
        """The variables as a tuple (length 1 for univariate priors)."""
        return as_vars(self.var)

    @property
    def dim(self) -> int:
        return len(self.vars)

    @property
    def free_params(self) -> tuple[sp.Symbol, ...]:
        """Free symbols of the density other than the variables, sorted by name."""
        syms = set(self.density.free_symbols)
        if self.atom is not None:
            syms |= set(sp.sympify(self.atom).free_symbols)
        return tuple(sorted(syms - set(self.vars), key=lambda s: s.name))

    def subs(self, **values: float) -> Prior:
        """Substitute numeric values for parameters given by name (e.g. ``nu=3``)."""
        by_name = {s.name: s for s in self.free_params}
        for alias, target in PARAM_LATEX.items():
            if alias in values and target in by_name:
                values[target] = values.pop(alias)
        unknown = set(values) - set(by_name)
        if unknown:
            raise ValueError(
                f"subs: unknown parameter(s) {sorted(unknown)}; this prior has "
                f"{sorted(by_name)}"
            )
        mapping = {}
        for k, v in values.items():
            s = by_name[k]
            val = to_sympy_number(v) if not isinstance(v, sp.Basic) else v
            check_param_value(s, val)
            top = self.meta.get("param_max", {}).get(k)
            if top is not None and val.is_number and val > top:
                raise ValueError(f"parameter {k}: at most {top:g} is supported, got {v}")
            mapping[s] = val
        meta = dict(self.meta)
        for key in ("radial", "penalty", "slab"):
            if key in meta and meta[key] is not None:
                own = {p.name for p in meta[key].params}
                meta[key] = meta[key].subs(**{by_name[k].name: v for k, v in values.items()
                                              if by_name[k].name in own})
        if "pi" in meta and isinstance(meta["pi"], sp.Basic):
            meta["pi"] = meta["pi"].subs(mapping)
        out = replace(
            self,
            density=self.density.subs(mapping),
            atom=None if self.atom is None else sp.sympify(self.atom).subs(mapping),
            params=tuple(p for p in self.params if p not in mapping),
            meta=meta,
        )
        if "penalty" in meta:
            object.__setattr__(meta["penalty"], "prior", out)
        return out

    def pdf(self, x: np.ndarray, **params: float) -> np.ndarray:
        """Evaluate the continuous density at ``x`` (numpy; last axis = variables if joint)."""
        prior = self.subs(**params) if params else self
        if prior.free_params:
            raise ValueError(
                f"pdf: give values for the free parameters {[s.name for s in prior.free_params]}"
            )
        f = sp.lambdify(prior.vars, stable_form(prior.density), modules=NUMPY_MODULES)
        x = np.asarray(x, dtype=float)
        if self.dim == 1:
            with np.errstate(all="ignore"):  # outside the support the formula may be NaN
                out = np.asarray(f(x), dtype=float) * np.ones_like(x)
            return np.where(_in_support_np(prior.support, x), out, 0.0)
        return np.asarray(f(*np.moveaxis(x, -1, 0)), dtype=float)

    def logpdf(self, x: np.ndarray, **params: float) -> np.ndarray:
        """Log of :meth:`pdf`, from the log of the formula where the density underflows."""
        with np.errstate(divide="ignore"):
            out = np.log(self.pdf(x, **params))
        prior = self.subs(**params) if params else self
        if self.dim != 1 or np.all(np.isfinite(out)):
            return out
        log_expr = stable_form(sp.expand_log(sp.log(prior.density), force=True))
        g = sp.lambdify(prior.vars, log_expr, modules=NUMPY_MODULES)
        x = np.asarray(x, dtype=float)
        with np.errstate(all="ignore"):
            alt = np.asarray(g(x), dtype=float) * np.ones_like(x)
        use = np.isneginf(out) & np.isfinite(alt) & _in_support_np(prior.support, x)
        return np.where(use, alt, out)

    def penalty(self):
        """Shortcut for :func:`priors.penalty`."""
        return _penalty(self)

    def __repr__(self) -> str:
        atom = "" if self.atom is None else f", atom={self.atom}"
        return f"Prior({self.name}: {self.density}, var={self.var}{atom})"

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_density(
        cls,
        expr: Any,
        var: Any,
        support: Any = None,
        name: str = "custom",
        normalize: bool = True,
    ) -> Prior:
        r"""A prior from any non-negative, integrable density (normalized here).

        Parameters
        ----------
        expr : sympy.Expr or str
            The density, possibly unnormalized, in ``var`` and parameters.
        var : sympy.Symbol or tuple of Symbol
            The variable(s).
        support : {"real", "positive"}, sympy.Set or None
            Where the density lives; outside it the density is 0.  None (default): the real
            line, or [0, ∞) when ``var`` is a positive or non-negative symbol.
        normalize : bool
            Divide by ``Z = ∫ expr`` (computed symbolically, numerically as a fallback).

        Raises
        ------
        ValueError
            If the density is negative somewhere on its support, or does not depend on ``var``.
        ImproperPriorError
            If it does not integrate to a finite, positive value.
        """
        vs = as_vars(var)
        try:
            expr = sp.sympify(expr)
        except (sp.SympifyError, TypeError) as err:
            raise TypeError(f"expr: expected a sympy expression or a string, got {expr!r}") \
                from err
        if not isinstance(expr, sp.Expr):
            raise TypeError(f"expr: expected a sympy expression, got {type(expr).__name__}")
        support = default_support(support, vs)
        rv = tuple(real_var(v) for v in vs)
        expr = by_name(expr, vs, rv)
        if not expr.free_symbols & set(rv):
            raise ValueError(
                f"expr: the density {expr!s} does not depend on var {', '.join(map(str, rv))}; "
                f"its symbols are {sorted(map(str, expr.free_symbols))}"
            )
        sup = as_support(support, len(rv))
        _check_nonnegative(expr, rv, sup)
        params = tuple(sorted(expr.free_symbols - set(rv), key=lambda s: s.name))
        var_out = rv[0] if len(rv) == 1 else rv
        if normalize:
            z, cond = normalizer(expr, rv, sup)
            if cond is not sp.true and cond != sp.true:
                meta = {"normalizable_if": cond}
            else:
                meta = {}
            expr = sp.simplify(expr / z) if len(str(z)) < 200 else expr / z
        else:
            meta = {}
        return cls(density=expr, var=var_out, support=sup, params=params, name=name, meta=meta)

    @classmethod
    def from_scipy(cls, name: str, **params: float) -> Prior:
        """The prior of a scipy.stats family with its scipy parameters (``loc``, ``scale``, shapes).

        Examples
        --------
        >>> Prior.from_scipy("t", df=3, scale=0.5)            # doctest: +SKIP
        >>> Prior.from_scipy("gennorm", beta=0.7, scale=2.0)   # doctest: +SKIP
        """
        return cls(**scipy_fields(name, **params))


def _in_support_np(support: sp.Set, x: np.ndarray) -> np.ndarray:
    if support == sp.Reals:
        return np.ones_like(x, dtype=bool)
    if isinstance(support, sp.Interval):
        lo, hi = float(support.inf), float(support.sup)
        left = x >= lo if not support.left_open else x > lo
        right = x <= hi if not support.right_open else x < hi
        return left & right
    raise ValueError(f"support {support} not supported for numeric evaluation")


def _negative_where_underflows(expr: sp.Expr, var: sp.Symbol, grid: np.ndarray,
                               vals: np.ndarray) -> np.ndarray:
    """Signs in mpmath (no underflow) where the float density is exactly 0: a density such as
    ``(c − a²) e^{−a²}`` turns negative only where float64 has rounded it to 0."""
    bad = np.zeros(grid.shape, dtype=bool)
    idx = np.flatnonzero(vals == 0)[::max(1, int(np.sum(vals == 0)) // 200)]
    if idx.size == 0:
        return bad
    import mpmath

    g = sp.lambdify(var, expr, modules="mpmath")
    for i in idx:
        try:
            val = mpmath.mpmathify(g(mpmath.mpf(float(grid[i]))))
            re, im = mpmath.re(val), mpmath.im(val)
        except Exception:  # noqa: BLE001 - functions mpmath lacks: keep the float check
            return bad
        bad[i] = bool(re < 0 or abs(im) > 1e-12 * abs(re))
    return bad


def _check_nonnegative(expr: sp.Expr, rv: Sequence[sp.Symbol], support: sp.Set) -> None:
    if expr.is_negative:
        raise ValueError(f"density: {expr!s} is negative")
    free = expr.free_symbols - set(rv)
    if len(rv) == 1 and not free:
        # numeric check on a grid over the support
        sup = support
        lo = float(sup.inf) if sup.inf.is_finite else -np.inf
        hi = float(sup.sup) if sup.sup.is_finite else np.inf
        # fine near 0, then out to 1e300 on both sides (densities that turn negative far out)
        tail = np.geomspace(1e-6, 1e300, 2000)
        grid = np.concatenate([np.linspace(max(lo, -50.0), min(hi, 50.0), 2001), tail, -tail,
                               [lo, hi]])
        grid = grid[np.isfinite(grid) & (grid >= lo) & (grid <= hi)]
        f = sp.lambdify(rv, expr, modules=NUMPY_MODULES)
        with np.errstate(all="ignore"):
            vals = np.asarray(f(grid), dtype=complex) * np.ones_like(grid)
        bad = (vals.real < 0) | (np.abs(vals.imag) > 1e-12 * (1 + np.abs(vals.real)))
        bad = bad & np.isfinite(vals.real)
        if not np.any(bad):
            bad = _negative_where_underflows(expr, rv[0], grid, vals.real)
        if np.any(bad):
            x0 = grid[np.argmax(bad)]
            raise ValueError(
                f"density: {expr!s} is negative or not real on the support, "
                f"e.g. at {rv[0]} = {x0:g}"
            )
