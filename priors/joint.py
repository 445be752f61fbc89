r"""Non-separable (joint) priors over a group of activations, and Gaussian scale mixtures.

* group Laplace ``p(a) ∝ exp(−λ‖a‖₂)`` → group-lasso penalty ``λ‖a‖₂`` (ℓ2,1 over groups);
  normalizer ``Z = 2π^{d/2} Γ(d) / (Γ(d/2) λ^d)``.
* multivariate t ``p(a) ∝ (1 + ‖a‖²/ν)^{−(ν+d)/2}`` → ``((ν+d)/2) log(1 + ‖a‖²/ν)``.
* mutually exclusive features (at most one active per group):
  ``p = (1 − π) δ₀ + (π/d) Σ_i g(a_i) Π_{j≠i} δ₀(a_j)`` → ``ι(‖a‖₀ ≤ 1)`` plus, per active
  feature, ``log((1 − π) d / (π g(0))) − log(g(a_i)/g(0))`` (counting measure on atoms, as
  spike-and-slab).
* ``scale_mixture(g)``: ``p(a) = ∫ N(a; 0, s) g(s) ds`` (exponential mixing of the variance →
  Laplace, Gamma mixing of the precision → Student-t, half-Cauchy scale → horseshoe).

References
----------
Yuan & Lin (2006), group lasso.  Andrews & Mallows (1974), scale mixtures of normal
distributions.  REFERENCES.md §4.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp

from ._symbolic import param_symbol, to_sympy_number
from .catalog import get
from .penalty import R_PLUS, Penalty, R, penalty, radial_profile
from .prior import Prior

__all__ = ["group_laplace", "multivariate_t", "mutually_exclusive", "radial_profile",
           "scale_mixture"]


#: the largest group sizes: the symbolic priors have O(d) terms (O(d²) when mutually exclusive)
D_MAX = 1024
D_MAX_EXCLUSIVE = 64


def _vars(d: int, top: int = D_MAX) -> tuple[sp.Symbol, ...]:
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
        raise TypeError(f"d: expected a positive integer group size, got {d!r}")
    if not 1 <= d <= top:
        raise ValueError(f"d: expected a group size in [1, {top}], got {d}")
    d = int(d)
    return tuple(sp.Symbol(f"a{i + 1}", real=True) for i in range(d))


def _param(name: str, value: Any) -> sp.Expr:
    sym = param_symbol(name)
    if value is None:
        return sym
    val = to_sympy_number(value)
    if not val > 0:
        raise ValueError(f"{name}: must be > 0, got {value}")
    return val


def _radial_prior(name, vs, f_r, log_z, params_meta=None) -> Prior:
    """Prior ``exp(−f(‖a‖) − log Z)`` with its penalty given directly (radial structure)."""
    norm2 = sum(v**2 for v in vs)
    pen_expr = f_r.subs(R, sp.sqrt(norm2))
    radial = Penalty(f_r, R, R_PLUS, None, True)
    pen = Penalty(pen_expr, vs, "real", log_z, True, None, {"radial": radial})
    dens = sp.exp(-pen_expr - log_z)
    params = tuple(sorted(dens.free_symbols - set(vs), key=lambda s: s.name))
    prior = Prior(dens, vs, sp.ProductSet(*([sp.Reals] * len(vs))), params, name,
                  meta={"penalty": pen, "radial": radial, **(params_meta or {})})
    object.__setattr__(pen, "prior", prior)
    return prior


def group_laplace(d: int, lam: float | None = None) -> Prior:
    r"""Group Laplace prior on ``d`` activations.

    Notes
    -----
    ``p(a) = λ^d Γ(d/2) / (2π^{d/2} Γ(d)) e^{−λ‖a‖}``.
    """
    vs = _vars(d)
    d = len(vs)
    lam_ = _param("lam", lam)
    log_z = sp.log(2 * sp.pi ** sp.Rational(d, 2) * sp.gamma(d) / (sp.gamma(sp.Rational(d, 2))
                                                                    * lam_**d))
    return _radial_prior("group_laplace", vs, lam_ * R, log_z)


def multivariate_t(d: int, nu: float | None = None) -> Prior:
    r"""Multivariate t: ``p(a) = Γ((ν+d)/2)/(Γ(ν/2)(νπ)^{d/2}) (1 + ‖a‖²/ν)^{−(ν+d)/2}``."""
    vs = _vars(d)
    d = len(vs)
    nu_ = _param("nu", nu)
    f_r = (nu_ + d) / 2 * sp.log(1 + R**2 / nu_)
    log_z = sp.log(sp.gamma(nu_ / 2) * (nu_ * sp.pi) ** sp.Rational(d, 2)
                   / sp.gamma((nu_ + d) / 2))
    return _radial_prior("multivariate_t", vs, f_r, log_z)


def mutually_exclusive(d: int, pi: float | None = None, slab: Prior | str = "gaussian",
                       **slab_params: Any) -> Prior:
    r"""At most one of ``d`` features active: ``(1−π)δ₀ + (π/d) Σ_i g(a_i) Π_{j≠i} δ₀(a_j)``.

    Parameters
    ----------
    d : int
        Group size.
    pi : float, optional
        Probability that one feature of the group is active (symbolic if omitted).
    slab : Prior or str
        Density ``g`` of the active feature (catalog name with ``slab_params``, or a Prior).
    """
    vs = _vars(d, D_MAX_EXCLUSIVE)
    d = len(vs)
    if isinstance(slab, str):
        slab = get(slab, **slab_params)
    elif slab_params:
        slab = slab.subs(**slab_params)
    if not isinstance(slab, Prior) or slab.dim != 1 or slab.atom is not None:
        raise TypeError("slab: expected a univariate Prior without a point mass, or a name")
    w = param_symbol("pi") if pi is None else to_sympy_number(pi)
    if w.is_number and not (0 < w < 1):
        raise ValueError(f"pi: expected a probability in (0, 1), got {pi}")
    g_pen = penalty(slab)
    if not g_pen.zero_at_zero:
        raise ValueError("slab: its density at 0 must be finite and positive")
    # −log(π g(a)/d) + log(1 − π) = log((1−π) d/(π g(0))) + pen_g(a); g(0) = exp(−logZ_g)
    l0 = sp.simplify(sp.log((1 - w) * d / w) + g_pen.log_normalizer)
    x = slab.var
    coord = [sp.Piecewise((0, sp.Eq(v, 0)), (l0 + g_pen.expr.subs(x, v), True)) for v in vs]
    # ‖a‖₀ > 1 as "two coordinates are non-zero": a condition on a sum of Piecewise indicators
    # is folded by sympy in time exponential in d
    more_than_one = sp.Or(*[sp.And(sp.Ne(vs[i], 0), sp.Ne(vs[j], 0))
                            for i in range(d) for j in range(i + 1, d)])
    pen_expr = sp.Piecewise((sp.oo, more_than_one), (sp.Add(*coord), True), evaluate=False)
    coord_pen = Penalty(sp.Piecewise((0, sp.Eq(x, 0)), (l0 + g_pen.expr, True)), x,
                        g_pen.support, None, True)
    ai = sp.Symbol("a_i", real=True)
    tex = (r"\iota(\|a\|_0 \le 1) + \sum_{i=1}^{" + str(d) + r"} 1[a_i \ne 0]\left("
           + sp.latex(l0) + " + " + sp.latex(g_pen.expr.subs(x, ai)) + r"\right)")
    pen = Penalty(pen_expr, vs, "real", -sp.log(1 - w), True, None,
                  {"exclusive": coord_pen, "l0_weight": l0, "latex": tex})
    dens = sum(w / d * slab.density.subs(x, vs[i])
               * sp.Mul(*[sp.DiracDelta(vs[j]) for j in range(d) if j != i]) for i in range(d))
    params = tuple(sorted((dens.free_symbols | w.free_symbols) - set(vs), key=lambda s: s.name))
    prior = Prior(dens, vs, sp.ProductSet(*([sp.Reals] * d)), params,
                  f"mutually_exclusive({slab.name})", atom=1 - w,
                  meta={"penalty": pen, "slab": slab, "pi": w})
    object.__setattr__(pen, "prior", prior)
    return prior


_KERNELS = {
    # N(a; 0, ·) as a function of the mixing variable s, for a = y > 0
    "variance": lambda y, s: sp.exp(-(y**2) / (2 * s)) / sp.sqrt(2 * sp.pi * s),
    "precision": lambda y, s: sp.sqrt(s / (2 * sp.pi)) * sp.exp(-s * y**2 / 2),
    "scale": lambda y, s: sp.exp(-(y**2) / (2 * s**2)) / (s * sp.sqrt(2 * sp.pi)),
}


def scale_mixture(mixing: Prior | sp.Expr, var: sp.Symbol | None = None,
                  over: str = "variance") -> Prior:
    r"""Marginal prior of a Gaussian scale mixture, ``p(a) = ∫ N(a; 0, s) g(s) ds``.

    Parameters
    ----------
    mixing : Prior or sympy.Expr
        Mixing density ``g`` on s > 0 (a Prior on ℝ₊, or an expression in ``var``).
    var : sympy.Symbol, optional
        The mixing variable when ``mixing`` is an expression.
    over : {"variance", "precision", "scale"}
        Whether ``s`` is the variance σ², the precision 1/σ² or the scale σ.

    Returns
    -------
    Prior
        On ℝ, with density in ``a`` (sympy integrates with ``a = y > 0`` and substitutes |a|).

    Notes
    -----
    Exponential mixing of the variance with rate ``λ²/2`` gives ``Laplace(1/λ)``; Gamma(α, β)
    mixing of the precision gives a Student-t with ``ν = 2α`` and scale ``√(β/α)``.
    """
    if over not in _KERNELS:
        raise ValueError(f"over: expected one of {sorted(_KERNELS)}, got {over!r}")
    if isinstance(mixing, Prior):
        if mixing.dim != 1:
            raise ValueError("mixing: expected a univariate prior")
        expr, s0 = mixing.density, mixing.var
        lo = mixing.support.inf
        if not (lo.is_number and lo >= 0):
            raise ValueError(f"mixing: its support must lie in [0, oo), got {mixing.support}")
    else:
        if var is None:
            raise ValueError("var: give the mixing variable when mixing is an expression")
        expr, s0 = sp.sympify(mixing), var
    s = sp.Symbol("s_", positive=True)
    y = sp.Symbol("y_", positive=True)
    integrand = _KERNELS[over](y, s) * expr.subs(s0, s)
    res = sp.integrate(integrand, (s, 0, sp.oo), conds="none")
    if res.has(sp.Integral):
        raise NotImplementedError(
            f"scale_mixture: sympy could not integrate {integrand} over s in (0, oo)"
        )
    a = sp.Symbol("a", real=True)
    dens = sp.simplify(sp.gammasimp(res)).subs(y, sp.Abs(a))
    params = tuple(sorted(dens.free_symbols - {a}, key=lambda p: p.name))
    return Prior(dens, a, sp.Reals, params, f"scale_mixture({over})",
                 meta={"mixing": expr, "over": over})
