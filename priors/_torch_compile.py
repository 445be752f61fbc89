"""Compile sympy expressions into differentiable torch callables.

``sympy.lambdify(modules="torch")`` (sympy >= 1.14) prints ``Max``, ``Min``, ``Heaviside``,
``gamma`` and ``expint`` into calls that fail, and ``|a|**p`` with ``p < 1`` has a NaN gradient
at 0 (``0 * inf``).  This module subclasses sympy's ``TorchPrinter`` so that those print into the
small helpers below, which accept tensors and Python numbers alike and keep the input's dtype and
device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import sympy as sp
import torch
from sympy.printing.pytorch import TorchPrinter

from ._symbolic import stable_form

__all__ = ["LogE1", "LogExpE1", "compile_torch", "expint1", "log_exp_expint1", "log_expint1"]


class LogE1(sp.Function):
    r"""``log E_1(z)`` for ``z > 0`` as one sympy function, so that it compiles to a stable kernel.

    Notes
    -----
    :math:`\frac{d}{dz}\log E_1(z) = -e^{-z} / (z E_1(z))`.
    """

    @classmethod
    def eval(cls, z):
        if z is sp.S.Zero:
            return sp.S.Infinity
        if z.is_Number and z.is_positive and not z.is_Float:
            return None
        return None

    def fdiff(self, argindex=1):
        z = self.args[0]
        return -sp.exp(-z) / (z * sp.expint(1, z))

    def _eval_evalf(self, prec):
        z = self.args[0]._eval_evalf(prec)
        if z is None or not z.is_Number:
            return None
        return sp.log(sp.expint(1, z)).evalf(prec)

    def _eval_rewrite_as_expint(self, z, **kwargs):
        return sp.log(sp.expint(1, z))

    def _latex(self, printer):
        return r"\log E_1\left(" + printer._print(self.args[0]) + r"\right)"


class LogExpE1(sp.Function):
    r"""``z + log E_1(z) = log(e^z E_1(z))`` for ``z > 0``: the horseshoe's penalty without the
    cancellation of ``z`` against ``log E_1(z) ≈ −z − log z`` at large ``z``.

    Notes
    -----
    :math:`\frac{d}{dz}\log(e^z E_1(z)) = 1 - e^{-z} / (z E_1(z))`.
    """

    def fdiff(self, argindex=1):
        z = self.args[0]
        return 1 - sp.exp(-z) / (z * sp.expint(1, z))

    def _eval_evalf(self, prec):
        z = self.args[0]._eval_evalf(prec)
        if z is None or not z.is_Number:
            return None
        return (z + sp.log(sp.expint(1, z))).evalf(prec)

    def _latex(self, printer):
        a = printer._print(self.args[0])
        return r"\log\left(e^{" + a + r"} E_1\left(" + a + r"\right)\right)"


def _as_tensor_like(x, ref):
    if isinstance(x, torch.Tensor):
        return x
    return torch.as_tensor(x, dtype=ref.dtype, device=ref.device)


def _first_tensor(args):
    for a in args:
        if isinstance(a, torch.Tensor):
            return a
    return None


def _reducer(tensor_op, scalar_op):
    """sympy's n-ary Max/Min as a torch callable (plain numbers when no argument is a tensor)."""

    def reduce_(*args):
        ref = _first_tensor(args)
        if ref is None:
            return scalar_op(args)
        out = _as_tensor_like(args[0], ref)
        for a in args[1:]:
            out = tensor_op(out, _as_tensor_like(a, ref))
        return out

    return reduce_


_tmax = _reducer(torch.maximum, max)
_tmin = _reducer(torch.minimum, min)


def _heaviside(x, h0=0.5):
    if not isinstance(x, torch.Tensor):
        return 1.0 if x > 0 else (0.0 if x < 0 else h0)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    return torch.where(x > 0, one, torch.where(x < 0, zero, torch.full_like(x, h0)))


def _gamma(x):
    if not isinstance(x, torch.Tensor):
        return math.gamma(x)
    # sign of Gamma for negative non-integers: (-1)^ceil(-x)
    sgn = torch.where(x > 0, 1.0, torch.where(torch.remainder(torch.floor(x), 2) == 0, 1.0, -1.0))
    return sgn.to(x.dtype) * torch.exp(torch.lgamma(x))


def _lgamma(x):
    if not isinstance(x, torch.Tensor):
        return math.lgamma(x)
    return torch.lgamma(x)


class _SafePowFn(torch.autograd.Function):
    """``x**p`` whose derivative ``p x^{p−1}`` is set to 0 where ``x == 0`` (instead of inf/NaN).

    The backward is written with differentiable torch ops, so double backward works too.
    """

    @staticmethod
    def forward(ctx, x, p):
        y = torch.sqrt(x) if p == 0.5 else x**p
        ctx.save_for_backward(x, y)
        ctx.p = p
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        d = ctx.p * y / x  # = p x^{p-1}, without a second pow
        return torch.where(x == 0, torch.zeros_like(d), d) * grad, None


class _AbsPowFn(torch.autograd.Function):
    """``|x|**p`` (0 < p < 1) with derivative ``p |x|^p / x`` and 0 at ``x == 0``."""

    @staticmethod
    def forward(ctx, x, p):
        ax = x.abs()
        y = torch.sqrt(ax) if p == 0.5 else ax**p
        ctx.save_for_backward(x, y)
        ctx.p = p
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward: out-of-place, differentiable ops
            d = ctx.p * grad * y / x
            return torch.where(x == 0, torch.zeros_like(d), d), None
        d = grad.mul(ctx.p)
        d.mul_(y).div_(x)
        return d.masked_fill_(x == 0, 0.0), None


def _abs_pow(x, exponent):
    """``|x|**exponent`` for ``0 < exponent < 1`` with a zero subgradient at 0 (fast path)."""
    if not isinstance(x, torch.Tensor) or x.is_complex():
        return abs(x) ** exponent
    return _AbsPowFn.apply(x, float(exponent))


def _safe_pow(base, exponent):
    """``base**exponent`` with a zero (sub)gradient where ``base == 0`` and ``exponent < 1``."""
    if not isinstance(base, torch.Tensor):
        return base**exponent
    if base.is_complex():  # radical roots in the prox: no gradient needed
        return base**exponent
    return _SafePowFn.apply(base, float(exponent))


# Series (z <= 1) and continued fraction (z > 1) for E1; both are accurate to ~1e-15.
_EULER = 0.57721566490153286061
_N_SERIES = 40
_N_CF = 80


def _exp_e1_cf(z):
    """``exp(z) E1(z)`` for ``z >= 1`` by the continued fraction, evaluated bottom-up."""
    # E1(z) = e^{-z} / (z + 1/(1 + 1/(z + 2/(1 + 2/(z + ...)))))
    tail = torch.zeros_like(z)
    for n in range(_N_CF, 0, -1):
        tail = n / (1 + n / (z + tail))
    return 1.0 / (z + tail)


def _e1_series(z):
    term = -z  # (-1)^k z^k / k! for k = 1
    acc = torch.zeros_like(z)
    for k in range(1, _N_SERIES):
        acc = acc + term / k
        term = -term * z / (k + 1)
    return -_EULER - torch.log(z) - acc


def log_expint1(z):
    """``log E_1(z)`` for ``z > 0`` (tensor), stable for large ``z``."""
    if not isinstance(z, torch.Tensor):
        return math.log(float(sp.expint(1, z).evalf()))
    small = z <= 1
    zs = torch.where(small, z, torch.ones_like(z))
    zl = torch.where(small, torch.full_like(z, 2.0), z)
    # z = 0 gives log(inf) = inf, as it should (E1(0) = inf)
    return torch.where(small, torch.log(_e1_series(zs)), torch.log(_exp_e1_cf(zl)) - zl)


def log_exp_expint1(z):
    """``z + log E_1(z)`` for ``z > 0`` (tensor), stable for large ``z`` (≈ −log z)."""
    if not isinstance(z, torch.Tensor):
        return float(z) + log_expint1(z)
    small = z <= 1
    zs = torch.where(small, z, torch.ones_like(z))
    zl = torch.where(small, torch.full_like(z, 2.0), z)
    return torch.where(small, torch.log(_e1_series(zs)) + zs, torch.log(_exp_e1_cf(zl)))


def expint1(z):
    """``E_1(z)`` for ``z > 0`` (tensor)."""
    return torch.exp(log_expint1(z))


def _expint(nu, z):
    if nu != 1:
        raise NotImplementedError("only expint(1, z) (= E1) compiles to torch")
    return expint1(z)


class _Printer(TorchPrinter):
    """TorchPrinter with translations for the functions sympy prints into failing calls."""

    def _print_Max(self, expr):
        return "_tmax(" + ", ".join(self._print(a) for a in expr.args) + ")"

    def _print_Min(self, expr):
        return "_tmin(" + ", ".join(self._print(a) for a in expr.args) + ")"

    def _print_Heaviside(self, expr):
        h0 = self._print(expr.args[1]) if len(expr.args) > 1 else "0.5"
        return f"_heaviside({self._print(expr.args[0])}, {h0})"

    def _print_gamma(self, expr):
        return f"_gamma({self._print(expr.args[0])})"

    def _print_loggamma(self, expr):
        return f"_lgamma({self._print(expr.args[0])})"

    def _print_expint(self, expr):
        return f"_expint({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_LogE1(self, expr):
        return f"_log_expint1({self._print(expr.args[0])})"

    def _print_LogExpE1(self, expr):
        return f"_log_exp_expint1({self._print(expr.args[0])})"

    def _print_log1p(self, expr):
        return f"torch.log1p({self._print(expr.args[0])})"

    def _print_Pow(self, expr):
        base, exp = expr.args
        if exp.is_Number and not exp.is_Integer and 0 < exp < 1 and isinstance(base, sp.Abs):
            return f"_abs_pow({self._print(base.args[0])}, {self._print(sp.Float(exp, 17))})"
        if exp.is_Number and not exp.is_Integer and exp < 1:
            return f"_safe_pow({self._print(base)}, {self._print(sp.Float(exp, 17))})"
        if exp.is_Integer and exp > 0:
            # integer powers: plain multiplication-friendly ** (fast and exact gradient)
            return f"({self._print(base)})**{int(exp)}"
        return super()._print_Pow(expr)

    def _print_Exp1(self, expr):
        return repr(math.e)

    def _print_Pi(self, expr):
        return repr(math.pi)

    def _print_EulerGamma(self, expr):
        return repr(_EULER)

    def _print_Infinity(self, expr):
        return "math.inf"

    def _print_NegativeInfinity(self, expr):
        return "-math.inf"

    def _print_BooleanTrue(self, expr):
        return "True"

    def _print_BooleanFalse(self, expr):
        return "False"


_NAMESPACE = {
    "_tmax": _tmax,
    "_tmin": _tmin,
    "_heaviside": _heaviside,
    "_gamma": _gamma,
    "_lgamma": _lgamma,
    "_safe_pow": _safe_pow,
    "_abs_pow": _abs_pow,
    "_expint": _expint,
    "_log_expint1": log_expint1,
    "_log_exp_expint1": log_exp_expint1,
    "math": math,
}


def rewrite_for_torch(expr: sp.Expr) -> sp.Expr:
    """Stable forms before printing: ``log(expint(1, z))`` as ``LogExpE1(z) − z`` (so that a
    ``−z`` beside it cancels symbolically, not in floating point), ``log(1 + x)`` as
    ``log1p(x)`` (:func:`priors._symbolic.stable_form`)."""
    expr = expr.replace(
        lambda e: isinstance(e, sp.log)
        and isinstance(e.args[0], sp.expint)
        and e.args[0].args[0] == 1,
        lambda e: LogExpE1(e.args[0].args[1]) - e.args[0].args[1],
    )
    return stable_form(expr)


def compile_torch(expr: sp.Expr, args: Sequence[sp.Symbol]) -> Callable:
    """``sympy.lambdify(args, expr)`` into torch with this module's translations.

    The returned callable takes tensors or numbers in the order of ``args``.
    """
    expr = rewrite_for_torch(sp.sympify(expr))
    # numeric subexpressions (log(2), gamma(3/2), sqrt(pi)) become floats: torch functions
    # reject Python numbers
    expr = expr.replace(
        lambda e: isinstance(e, sp.Expr) and e.is_number and not e.is_Number
        and not isinstance(e, (sp.NumberSymbol, sp.core.numbers.ImaginaryUnit)),
        lambda e: e.evalf(17),
    )
    printer = _Printer({"fully_qualified_modules": True, "strict": True})
    return sp.lambdify(list(args), expr, modules=[_NAMESPACE, "torch"], printer=printer, cse=True)
