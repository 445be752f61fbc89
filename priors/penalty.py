r"""Penalties: the negative log-density of a prior, as a sympy expression.

``penalty(prior)`` returns ``pen(a) = −log p(a) − log Z`` where the constant ``log Z`` (the *log
normalizer*, kept as ``Penalty.log_normalizer``) is chosen so that ``pen(0) = 0`` whenever
``p(0)`` is finite and positive.  For priors with ``p(0) = ∞`` (horseshoe, Gamma with k < 1) or
``p(0) = 0`` (log-normal, Gamma with k > 1) only the normalizing constant of the density is
dropped; ``Penalty.zero_at_zero`` is then False.

Spike-and-slab ``(1 − π) δ₀ + π g`` uses the counting measure on the atom and Lebesgue measure
off it (the joint MAP over (a, s)): ``pen(0) = 0`` and, for ``a ≠ 0``,
``pen(a) = log((1 − π)/π) − log g(a)``, i.e. an L0 cost ``log((1 − π)/(π g(0)))`` plus the slab's
penalty.  The support is the slab's support with 0 added, also when the slab's is open at 0
(Gamma, log-normal, inverse Gamma: ``g(0⁺) = 0``, so ``−log g`` alone would be +∞ there);
the slab's own support is kept in ``Penalty.meta["slab_support"]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import sympy as sp

from . import _convexity
from ._symbolic import (
    NUMPY_MODULES,
    as_support,
    as_vars,
    branch,
    by_name,
    default_support,
    real_var,
    to_sympy_number,
)
from ._torch_compile import compile_torch

__all__ = ["Penalty", "branch", "penalty", "radial_profile", "split_constant"]

#: the radius ``‖a‖₂`` of a radial joint penalty ``f(‖a‖₂)`` and its range
R = sp.Symbol("r", positive=True)
R_PLUS = sp.Interval(0, sp.oo)


def split_constant(expr: sp.Expr, vars_) -> tuple[sp.Expr, sp.Expr]:
    """Split ``expr`` into (part depending on ``vars_``, additive constant)."""
    dep, const = sp.S.Zero, sp.S.Zero
    for term in sp.Add.make_args(expr):
        if term.free_symbols & set(vars_):
            dep += term
        else:
            const += term
    return dep, const


def _is_finite_number(e: sp.Expr) -> bool:
    # E_n(0) = oo for n <= 1, which sympy leaves unevaluated
    e = e.replace(lambda x: isinstance(x, sp.expint) and x.args[1] == 0 and x.args[0] <= 1,
                  lambda x: sp.oo)
    if e.has(sp.zoo, sp.oo, -sp.oo, sp.nan):
        return False
    return e.is_finite is not False


@dataclass(frozen=True, eq=False)
class Penalty:
    r"""A penalty ``pen(a)`` (a sympy expression) with its variable(s) and support.

    Parameters
    ----------
    expr : sympy.Expr or str
        The penalty on its support (outside it the penalty is +∞).
    var : sympy.Symbol or tuple of Symbol
        The variable, or the variables of a non-separable (joint) penalty.
    support : {"real", "positive"}, sympy.Set or None
        Where the penalty is finite; the indicator ``ι_support`` is implied.  None (default):
        the real line, or [0, ∞) for a positive or non-negative ``var`` (sympy writes ``|a|``
        as ``a`` for such a symbol).
    log_normalizer : sympy.Expr, optional
        ``log ∫ exp(−pen)``, the constant dropped from ``−log p`` (None if unknown).
    zero_at_zero : bool, optional
        Whether ``pen(0) = 0`` (worked out for univariate penalties when not given).
    prior : Prior, optional
        The prior the penalty was derived from, if any.
    meta : dict
        Family-specific information (e.g. ``radial`` profile, spike-and-slab parts).

    Notes
    -----
    The prior of a penalty is ``p(a) = exp(−pen(a) − log_normalizer)``.
    """

    expr: Any
    var: Any
    support: Any = None
    log_normalizer: Any = None
    zero_at_zero: bool | None = None
    # a Prior, not annotated as one: priors.prior imports this module (Prior.penalty)
    prior: Any = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        vs = as_vars(self.var)
        support = default_support(self.support, vs)
        rv = tuple(real_var(v) for v in vs)
        try:
            expr = sp.sympify(self.expr)
        except (sp.SympifyError, TypeError) as err:
            raise TypeError(f"expr: expected a sympy expression or a string, got {self.expr!r}") \
                from err
        if not isinstance(expr, sp.Expr):
            raise TypeError(f"expr: expected a sympy expression, got {type(expr).__name__}")
        expr = by_name(expr, vs, rv)
        object.__setattr__(self, "expr", expr)
        object.__setattr__(self, "var", rv[0] if len(rv) == 1 else rv)
        object.__setattr__(self, "support", as_support(support, len(rv)))
        if self.log_normalizer is not None:
            object.__setattr__(self, "log_normalizer", sp.sympify(self.log_normalizer))
        if self.zero_at_zero is None and len(rv) == 1:
            v0 = expr.subs(rv[0], 0)
            object.__setattr__(self, "zero_at_zero", bool(v0 == 0))

    # ------------------------------------------------------------------ structure
    @property
    def vars(self) -> tuple[sp.Symbol, ...]:
        return as_vars(self.var)

    @property
    def dim(self) -> int:
        return len(self.vars)

    @property
    def params(self) -> tuple[sp.Symbol, ...]:
        """Free parameters, sorted by name."""
        return tuple(sorted(self.expr.free_symbols - set(self.vars), key=lambda s: s.name))

    @property
    def separable(self) -> bool:
        r"""Whether ``pen(a) = Σ_i f_i(a_i)`` (⇔ independent priors).

        Notes
        -----
        Checked structurally (a sum of single-variable terms), else by the mixed partials
        ``∂²pen/∂a_i∂a_j`` (non-zero ⇒ coupled) and by conditions of piecewise parts that
        involve several variables (indicators such as ``‖a‖₀ ≤ 1`` have zero mixed partials
        almost everywhere yet couple the coordinates).
        """
        return _separable(self.expr, self.vars)

    @property
    def is_univariate(self) -> bool:
        return self.dim == 1

    def subs(self, **values: float) -> Penalty:
        """Substitute numeric parameter values by name."""
        by_name = {s.name: s for s in self.params}
        if "pi" in values and "varpi" in by_name:
            values["varpi"] = values.pop("pi")
        if "lam" in values and "lambda" in by_name:
            values["lambda"] = values.pop("lam")
        unknown = set(values) - set(by_name)
        if unknown:
            raise ValueError(
                f"subs: unknown parameter(s) {sorted(unknown)}; have {sorted(by_name)}"
            )
        m = {by_name[k]: to_sympy_number(v) for k, v in values.items()}
        meta = {}
        for k, v in self.meta.items():
            if k == "latex":
                continue  # a hand-made LaTeX string cannot follow the substitution
            if isinstance(v, Penalty):
                own = {p.name for p in v.params}
                v = v.subs(**{n: x for n, x in values.items() if n in own})
            elif isinstance(v, sp.Basic):
                v = v.subs(m)
            meta[k] = v
        return Penalty(
            self.expr.subs(m),
            self.var,
            self.support,
            None if self.log_normalizer is None else self.log_normalizer.subs(m),
            self.zero_at_zero,
            None if self.prior is None or "penalty" in self.prior.meta
            else self.prior.subs(**dict(values)),
            meta,
        )

    # ------------------------------------------------------------------ calculus
    def diff(self) -> sp.Expr | tuple[sp.Expr, ...]:
        r"""Derivative ``pen'(a)`` (the gradient for joint penalties), i.e. minus the score.

        Notes
        -----
        ``pen'(a) = −∂ log p(a)/∂a``; at kinks sympy's conventions apply (``d|a|/da = sign(a)``).
        """
        if self.dim == 1:
            return sp.diff(self.expr, self.var)
        return tuple(sp.diff(self.expr, v) for v in self.vars)

    def score(self) -> sp.Expr | tuple[sp.Expr, ...]:
        """The score ``∂ log p/∂a = −pen'(a)``."""
        d = self.diff()
        return tuple(-x for x in d) if isinstance(d, tuple) else -d

    def convexity_region(self) -> sp.Set | None:
        r"""Set of ``a`` (off the kink at 0) where ``pen''(a) ≥ 0``; None if sympy cannot tell.

        For joint penalties this is only available for radial ones (``pen = f(‖a‖)``) and
        is returned as the set of radii where ``f`` is convex.
        """
        if self.dim > 1:
            prof = radial_profile(self)
            return None if prof is None else prof.convexity_region()
        return _convexity.convexity_region(self.expr, self.var, self.support)

    @property
    def is_convex(self) -> bool | None:
        """True/False when decided, None when sympy cannot decide (symbolic parameters)."""
        if self.dim > 1:
            if "exclusive" in self.meta:
                return False  # the indicator of {||a||_0 <= 1} is not convex
            prof = radial_profile(self)
            return None if prof is None else _convexity.is_convex_radial(prof.expr, prof.var)
        return _convexity.is_convex(self.expr, self.var, self.support)

    # ------------------------------------------------------------------ printing
    def latex(self) -> str:
        """LaTeX of the penalty, with the support indicator when the support is not ℝ."""
        if "latex" in self.meta:
            return self.meta["latex"]
        s = sp.latex(self.expr)
        if self.dim == 1 and self.support != sp.Reals:
            s += r" + \iota_{" + sp.latex(self.support) + "}(" + sp.latex(self.var) + ")"
        return s

    def __str__(self) -> str:
        s = str(self.expr)
        if self.dim == 1 and self.support != sp.Reals:
            s += f" + ι[{self.var} ∈ {self.support}]"
        return s

    def __repr__(self) -> str:
        return f"Penalty({self}, var={self.var})"

    # ------------------------------------------------------------------ compilation
    def to_torch(self, **params: float) -> Callable:
        r"""Differentiable torch function ``f(a, **free_params)`` of the penalty, elementwise.

        Parameters
        ----------
        **params
            Values for parameters (substituted before compiling).  Parameters left symbolic
            become keyword arguments of the returned function (tensors allowed, e.g. learnable).

        Returns
        -------
        callable
            ``f(a) -> tensor`` of ``a``'s shape (dtype and device of ``a``); for joint
            penalties ``a`` has shape ``(..., d)`` and the result ``(...)``.  Outside the
            support the value is ``+inf`` with gradient 0.

        Notes
        -----
        Subgradients at kinks: ``d|a|/da = 0`` at 0 (torch's convention) and
        ``d|a|^p/da = 0`` at 0 for ``p < 1`` (instead of NaN).  Where ``pen(0) = −∞``
        (horseshoe, Gamma with k < 1) the value at 0 is ``-inf`` and its gradient NaN.

        Spike-and-slab penalties: ``f(0) = 0`` with gradient 0, and
        ``f(a) = l0_weight + slab_penalty(a)`` (gradient ``slab_penalty'(a)``) on the rest of
        the slab's support, ``+inf`` with gradient 0 elsewhere.  The slab is never evaluated at
        ``a = 0``, so no inf/NaN from ``−log g(0)`` leaks into the value or the gradient, even for
        slabs with ``g(0) = 0`` or ``∞``.  The gradient 0 at 0 is an element of the (Fréchet)
        subdifferential whenever 0 is a local minimum of the penalty, i.e. when
        ``l0_weight + slab_penalty(a) > 0`` near 0 (always for slabs with ``g(0⁺) = 0`` such
        as Gamma with k > 1, log-normal, inverse Gamma); otherwise it is a convention, like
        the L0 term's zero gradient.
        """
        pen = self.subs(**params) if params else self
        return _compile_penalty(pen)

    def to_numpy(self, **params: float) -> Callable:
        """Numpy version of the penalty (for tests and numeric integration)."""
        pen = self.subs(**params) if params else self
        free = pen.params
        f = sp.lambdify(list(pen.vars) + list(free), pen.expr, modules=NUMPY_MODULES)
        return f


def _separable(expr: sp.Expr, vars_) -> bool:
    if len(vars_) == 1:
        return True
    vs = set(vars_)
    terms = sp.Add.make_args(sp.expand(expr, deep=False))
    if all(len(t.free_symbols & vs) <= 1 for t in terms):
        return True
    for pw in expr.atoms(sp.Piecewise):
        for _, cond in pw.args:
            if len(getattr(cond, "free_symbols", set()) & vs) > 1:
                return False
    for i, vi in enumerate(vars_):
        for vj in vars_[i + 1 :]:
            mixed = sp.simplify(sp.diff(expr, vi, vj))
            if mixed != 0:
                return False
    return True


def _safe_point(support: sp.Set) -> float:
    """A point inside a 1-d support (Reals or an Interval) where the penalty is evaluated
    instead of points outside it, so that no NaN gradient leaks through ``torch.where``."""
    if support == sp.Reals:
        return 1.0
    lo, hi = support.inf, support.sup
    if lo.is_finite and hi.is_finite:
        return 0.5 * (float(lo) + float(hi))
    return float(lo) + 1.0 if lo.is_finite else float(hi) - 1.0


def _slab_part(pen: Penalty) -> Penalty | None:
    """``l0_weight + slab_penalty`` on the slab's support, for a spike-and-slab penalty; else None.

    The spike-and-slab penalty is 0 at ``a = 0`` and equal to this penalty elsewhere.
    """
    if pen.dim != 1 or not {"slab_penalty", "l0_weight", "slab_support"} <= set(pen.meta):
        return None
    return Penalty(pen.meta["slab_penalty"] + pen.meta["l0_weight"], pen.var,
                   pen.meta["slab_support"], zero_at_zero=False)


def _compile_spike_and_slab(pen: Penalty, slab: Penalty) -> Callable:
    """``0`` at ``a = 0``, ``l0 + slab_penalty(a)`` on the slab's support, ``+inf`` elsewhere."""
    import torch

    slab_f = _compile_penalty(slab)  # +inf with zero gradient outside the slab's support
    safe = _safe_point(slab.support)

    def f(a, **kw):
        if not isinstance(a, torch.Tensor):
            raise TypeError(f"a: expected a torch.Tensor, got {type(a).__name__}")
        spike = a == 0
        # the slab is evaluated off 0 only: -log g(0) may be +-inf (g(0+) = 0 or oo)
        out = slab_f(torch.where(spike, safe, a), **kw)
        return torch.where(spike, 0.0, out)

    f.__doc__ = f"Compiled spike-and-slab penalty {pen}."
    return f


def _working_tensor(a):
    """``a`` in the precision the penalty is computed in: float16/bfloat16 in float32 (their
    range ends at 65504 and their 8 or 11 bits lose the penalty), else its own dtype."""
    import torch

    if not isinstance(a, torch.Tensor):
        raise TypeError(f"a: expected a torch.Tensor, got {type(a).__name__}")
    if a.is_complex() or not a.is_floating_point():
        raise TypeError(f"a: expected a real floating-point tensor, got dtype {a.dtype}")
    return a.float() if a.dtype in (torch.float16, torch.bfloat16) else a


def _maybe_overflowed(out) -> bool:
    """False when every value is finite, read in one reduction (the common case costs a sum,
    not a mask; a NaN or inf anywhere, or a sum beyond the float range, says look closer)."""
    import torch

    with torch.no_grad():
        return not bool(torch.isfinite(out.sum()))


def _compile_penalty(pen: Penalty) -> Callable:
    import torch

    slab = _slab_part(pen)
    if slab is not None:
        return _compile_spike_and_slab(pen, slab)
    free = pen.params
    names = [s.name for s in free]
    fn = compile_torch(pen.expr, list(pen.vars) + list(free))
    support = pen.support
    lo = hi = None
    if pen.dim == 1 and support != sp.Reals:
        if not isinstance(support, sp.Interval):
            raise ValueError(f"to_torch: unsupported support {support}")
        lo, hi = support.inf, support.sup
        lo_open, hi_open = support.left_open, support.right_open
    dim = pen.dim
    if lo is not None:
        safe_pt = _safe_point(support)
    # polynomials are finite everywhere: no need to move points outside the support
    polynomial = pen.expr.is_polynomial(*pen.vars)

    def evaluate(a, extra):
        """The penalty on the support's points, and the mask of those points (None: all)."""
        inside = None
        if dim > 1:
            if a.shape[-1] != dim:
                raise ValueError(f"a: expected last dimension {dim}, got shape {tuple(a.shape)}")
            out = fn(*a.unbind(-1), *extra)
            ref = a[..., 0]
        elif lo is None:
            out = fn(a, *extra)
            ref = a
        else:
            if lo.is_finite:
                inside = (a > float(lo)) if lo_open else (a >= float(lo))
            if hi.is_finite:
                up = (a < float(hi)) if hi_open else (a <= float(hi))
                inside = up if inside is None else inside & up
            # polynomials are finite everywhere; others are evaluated on a point inside the
            # support, so that no NaN gradient leaks from outside it
            out = fn(a if polynomial else torch.where(inside, a, safe_pt), *extra)
            ref = a
        if not isinstance(out, torch.Tensor) or out.shape != ref.shape:
            out = torch.as_tensor(out, device=ref.device).expand(ref.shape)
        if not out.is_floating_point():
            out = out.to(ref.dtype)  # piecewise-constant penalties (L0) give integers
        if a.requires_grad and not out.requires_grad:
            out = out + 0 * ref  # piecewise-constant penalties (L0): zero gradient, not an error
        return out, inside

    def f(a, **kw):
        missing = [n for n in names if n not in kw]
        if missing or set(kw) - set(names):
            raise TypeError(
                f"penalty: expected keyword parameters {names}, got {sorted(kw)}"
            )
        extra = [kw[n] for n in names]
        work = _working_tensor(a)
        out, inside = evaluate(work, extra)
        if work.dtype != torch.float64 and _maybe_overflowed(out):
            # overflow in the working precision (a² at |a| > 1e19 in float32): those
            # elements again in float64, the others on a safe point so no NaN gradient leaks
            bad = ~torch.isfinite(out) & torch.isfinite(work if dim == 1 else work.sum(-1))
            if bool(bad.any()):
                keep = bad.unsqueeze(-1) if dim > 1 else bad
                out64, _ = evaluate(torch.where(keep, work.double(), 1.0), extra)
                out, _ = evaluate(torch.where(keep, 1.0, work), extra)
                out = torch.where(bad, out64.to(out.dtype), out)
        if inside is not None:
            out = torch.where(inside, out, math.inf)
        return out.to(a.dtype)

    f.__doc__ = f"Compiled penalty {pen} (parameters: {names or 'none'})."
    return f


def radial_profile(pen: Penalty) -> Penalty | None:
    """``f`` with ``pen(a) = f(‖a‖₂)`` if the joint penalty is radial, else None."""
    if pen.dim == 1:
        return None
    if "radial" in pen.meta:
        return pen.meta["radial"]
    vs = pen.vars
    f = pen.expr.subs({vs[0]: R, **{v: 0 for v in vs[1:]}})
    back = f.subs(R, sp.sqrt(sum(v**2 for v in vs)))
    try:
        same = sp.simplify(pen.expr - back) == 0
    except (TypeError, ValueError):  # pragma: no cover
        same = False
    return Penalty(f, R, R_PLUS, None, True) if same else None


def penalty(prior: Any) -> Penalty:
    r"""The penalty ``−log p`` of a prior, shifted so that ``pen(0) = 0`` where ``p(0)`` is finite.

    Parameters
    ----------
    prior : Prior

    Returns
    -------
    Penalty
        With ``log_normalizer`` such that ``p(a) = exp(−pen(a) − log_normalizer)``.

    Notes
    -----
    ``pen(a) = −log p(a) + log p(0)`` when ``0 < p(0) < ∞``; otherwise ``pen(a) = −log(Z p(a))``
    with ``Z`` the density's normalizing constant.  Spike-and-slab: see the module docstring.

    Examples
    --------
    >>> import priors
    >>> priors.penalty(priors.get("laplace", b=2)).expr
    Abs(a)/2
    """
    # duck-typed: priors.prior imports this module (Prior.penalty), so Prior is not imported here
    if not all(hasattr(prior, k) for k in ("density", "vars", "support", "atom", "meta")):
        raise TypeError(f"prior: expected a priors.Prior, got {type(prior).__name__}")
    return _penalty(prior)


def _neg_log(density: sp.Expr) -> sp.Expr:
    raw = sp.expand_log(-sp.log(density), force=True)
    return raw


def _simplify_dep(dep: sp.Expr) -> sp.Expr:
    # factor_terms turns nu*log(X)/2 + log(X)/2 into (nu + 1)*log(X)/2 without combining logs
    out = sp.factor_terms(dep)
    return out if sp.count_ops(out) <= sp.count_ops(dep) else dep


@lru_cache(maxsize=512)  # Prior hashes by identity
def _penalty(prior: Any) -> Penalty:
    vars_ = prior.vars
    if "penalty" in prior.meta:  # joint priors give their penalty directly
        return prior.meta["penalty"]
    raw = _neg_log(prior.density)
    dep, const = split_constant(raw, vars_)
    dep = _simplify_dep(dep)
    if prior.atom is not None:
        (a,) = vars_
        d0 = dep.subs(a, 0)
        if not _is_finite_number(d0):
            d0 = sp.S.Zero
        l0 = sp.simplify(const + d0 + sp.log(prior.atom))
        if l0.is_number and l0.has(sp.Float):
            l0 = sp.Float(l0.evalf(17), 17)  # fitted (float) parameters: one number
        slab_pen = sp.simplify(dep - d0)
        expr = sp.Piecewise((0, sp.Eq(a, 0)), (slab_pen + l0, True))
        slab = prior.meta.get("slab")  # the slab Prior of spike_and_slab
        slab_support = prior.support if slab is None else slab.support
        # the atom puts mass at exactly 0: 0 is in the support whatever the slab's support
        support = sp.Union(slab_support, sp.FiniteSet(0))
        meta = {"l0_weight": l0, "slab_penalty": slab_pen, "slab_support": slab_support}
        return Penalty(expr, a, support, -sp.log(prior.atom), True, prior, meta)
    if prior.dim == 1:
        at0 = dep.subs(vars_[0], 0) if 0 in prior.support else sp.zoo
    else:
        at0 = dep.subs({v: 0 for v in vars_})
    if _is_finite_number(at0):
        expr = dep - at0 if at0 != 0 else dep
        expr = _simplify_dep(expr)
        zero = True
        log_norm = sp.simplify(const + at0)
    else:
        expr, zero, log_norm = dep, False, sp.simplify(const)
    return Penalty(expr, prior.var, prior.support, log_norm, zero, prior, {})
