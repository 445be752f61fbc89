r"""Vectorized numeric proximal operator for univariate penalties without a closed form.

For a penalty that is unimodal with minimizer ``m`` (non-increasing before ``m``, non-decreasing
after), the minimizer of ``φ(x) = ½(x − v)² + t·pen(x)`` lies between ``v`` and ``m``: outside
that interval both terms increase away from it.  Each element is solved on its own interval by
a grid of ``K`` points (global search, catches jumps), golden-section search in the best grid
cell, and Newton steps on ``φ'`` with the sympy derivatives (accepted only if ``φ`` decreases).
``x = 0`` is always a candidate.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import sympy as sp
import torch
from scipy import optimize

from ._torch_compile import compile_torch

__all__ = ["check_t", "check_v", "finish", "finite_inputs", "numeric_prox_1d",
           "penalty_minimizer", "prox_inputs"]

_GOLD = (math.sqrt(5) - 1) / 2


def penalty_minimizer(pen, lo: float, hi: float) -> float:
    """Global minimizer of a numeric univariate penalty on [lo, hi] (grid + bounded Brent,
    then Newton on ``pen'``; 0 when it is no worse)."""
    return _polish_minimizer(pen, _grid_minimizer(pen, lo, hi), lo, hi)


def _grid_minimizer(pen, lo: float, hi: float) -> float:
    f = pen.to_numpy()
    a_lo = max(lo, -1e3) if math.isfinite(lo) else -1e3
    a_hi = min(hi, 1e3) if math.isfinite(hi) else 1e3
    grid = np.unique(np.concatenate([
        np.linspace(a_lo, a_hi, 4001),
        np.clip(np.geomspace(1e-8, 1e3, 400), a_lo, a_hi),
        np.clip(-np.geomspace(1e-8, 1e3, 400), a_lo, a_hi),
        [0.0] if a_lo <= 0 <= a_hi else [],
    ]))
    with np.errstate(all="ignore"):
        vals = np.asarray(f(grid), dtype=float) * np.ones_like(grid)
    vals = np.where(np.isnan(vals), np.inf, vals)
    k = int(np.argmin(vals))
    if not np.isfinite(vals[k]) and vals[k] > 0:
        return 0.5 * (a_lo + a_hi)
    left, right = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    if right > left:

        def g(x):
            with np.errstate(all="ignore"):
                val = float(f(x))
            return val if np.isfinite(val) else (np.inf if val > 0 or np.isnan(val) else -1e300)

        res = optimize.minimize_scalar(g, bounds=(left, right), method="bounded",
                                       options={"xatol": 1e-12})
        if res.fun <= vals[k]:
            return float(res.x)
    return float(grid[k])


def check_v(v) -> None:
    """``v`` must be a real floating-point tensor (the prox returns its dtype)."""
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"v: expected a torch.Tensor, got {type(v).__name__}")
    if v.is_complex() or not v.is_floating_point():
        raise TypeError(f"v: expected a real floating-point tensor, got dtype {v.dtype}")


def check_t(t, device=None) -> torch.Tensor:
    """``t`` as a float64 tensor: a real number or real tensor, ``0 ≤ t ≤ inf``, never NaN."""
    if isinstance(t, torch.Tensor):
        if t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"t: expected a real step size, got a tensor of dtype {t.dtype}")
    elif isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)):
        raise TypeError(
            f"t: expected a non-negative real number or tensor, got {type(t).__name__} {t!r}"
        )
    t64 = torch.as_tensor(t, dtype=torch.float64, device=device)
    if torch.any(torch.isnan(t64)):
        raise ValueError("t: expected a non-negative step size, got NaN")
    if torch.any(t64 < 0):
        raise ValueError(f"t: expected a non-negative step size, got min {t64.min().item():g}")
    return t64


def _polish_minimizer(pen, m: float, lo: float, hi: float) -> float:
    """Newton steps on ``pen'`` from the numeric minimizer ``m``; 0 when it is no worse."""
    f = pen.to_numpy()
    d1 = sp.lambdify(pen.var, sp.diff(pen.expr, pen.var), modules="numpy")
    d2 = sp.lambdify(pen.var, sp.diff(pen.expr, pen.var, 2), modules="numpy")
    with np.errstate(all="ignore"):
        for _ in range(4):
            try:
                step = float(d1(m)) / float(d2(m))
            except Exception:  # noqa: BLE001 - kinks (DiracDelta), 0/0: keep the numeric m
                break
            m_new = m - step
            # near the minimum pen is flat to rounding: judge the step by |pen'|
            if not (np.isfinite(m_new) and lo <= m_new <= hi
                    and abs(float(d1(m_new))) < abs(float(d1(m)))
                    and float(f(m_new)) <= float(f(m)) + 1e-12 * (1 + abs(float(f(m))))):
                break
            m = m_new
        if lo <= 0 <= hi and float(f(0.0)) <= float(f(m)):
            return 0.0
    return m


def prox_inputs(v: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a prox call's arguments; return ``v`` and ``t`` as float64 tensors of v's shape."""
    check_v(v)
    v64 = v.detach().to(torch.float64)
    t64 = check_t(t, v.device)
    try:
        t64 = t64.expand_as(v64)
    except RuntimeError:
        raise ValueError(
            f"t: shape {tuple(t64.shape)} does not broadcast to v's shape {tuple(v64.shape)}"
        ) from None
    return v64, t64


def finite_inputs(v64: torch.Tensor, t64: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``v`` and ``t`` with NaN/inf replaced by 0 and 1, for the solvers; see :func:`finish`."""
    return (torch.where(torch.isfinite(v64), v64, 0.0),
            torch.where(torch.isinf(t64), 1.0, t64))


def finish(out: torch.Tensor, v64: torch.Tensor, t64: torch.Tensor, support,
           minimizer: Callable[[], float]) -> torch.Tensor:
    r"""Apply the prox's contract where the inputs are not finite.

    ``v = NaN`` gives NaN (as numpy and pyproximal do); ``t = inf`` gives the penalty's
    minimizer (``minimizer()``, computed only when needed); ``v = ±inf`` (finite ``t``) gives
    the limit of ``prox_t(v)``, the end of the support on that side (``±inf`` on ℝ);
    ``v = ±inf`` with ``t = inf`` is indeterminate: NaN.
    """
    t_inf = torch.isinf(t64)
    if bool(t_inf.any()):
        out = torch.where(t_inf, torch.full_like(out, float(minimizer())), out)
    lo = float(support.inf) if support.inf.is_finite else -math.inf
    hi = float(support.sup) if support.sup.is_finite else math.inf
    out = torch.where(v64 == math.inf, hi, out)
    out = torch.where(v64 == -math.inf, lo, out)
    bad = torch.isnan(v64) | (torch.isinf(v64) & t_inf)
    return torch.where(bad, math.nan, out)


def numeric_prox_1d(pen, pen_t: Callable, n_grid: int = 64, n_golden: int = 60,
                    chunk: int = 1 << 15) -> Callable:
    """Build ``f(v, t)`` for a univariate penalty with numeric parameters."""
    if pen.params:
        raise ValueError(
            f"numeric prox: give values for the parameters {[s.name for s in pen.params]}"
        )
    sup = pen.support
    lo_s = float(sup.inf) if sup.inf.is_finite else -math.inf
    hi_s = float(sup.sup) if sup.sup.is_finite else math.inf
    m = penalty_minimizer(pen, lo_s, hi_s)
    d1 = sp.diff(pen.expr, pen.var)
    d2 = sp.diff(d1, pen.var)
    try:
        g1 = compile_torch(d1, [pen.var])
        g2 = compile_torch(d2, [pen.var])
    except Exception:  # noqa: BLE001 - derivatives that do not compile: no Newton polish
        g1 = g2 = None
    zero_in = lo_s <= 0 <= hi_s

    def phi(x, v, t):
        val = pen_t(x)
        val = torch.where(torch.isnan(val), torch.full_like(val, math.inf), val)
        tp = torch.where(t == 0, torch.zeros_like(val), t * val)
        return 0.5 * (x - v) ** 2 + tp

    def solve_chunk(v, t):
        lo = torch.minimum(v, torch.full_like(v, m)).clamp(min=lo_s, max=hi_s)
        hi = torch.maximum(v, torch.full_like(v, m)).clamp(min=lo_s, max=hi_s)
        s = torch.linspace(0, 1, n_grid, dtype=v.dtype, device=v.device)
        grid = lo[:, None] + (hi - lo)[:, None] * s[None, :]
        vals = phi(grid, v[:, None], t[:, None])
        k = torch.argmin(vals, dim=1)
        step = (hi - lo) / (n_grid - 1)
        xk = torch.gather(grid, 1, k[:, None]).squeeze(1)
        best_x, best_f = xk, torch.gather(vals, 1, k[:, None]).squeeze(1)
        # golden-section search on the two cells around the best grid point
        a = torch.maximum(xk - step, lo)
        b = torch.minimum(xk + step, hi)
        c = b - _GOLD * (b - a)
        d = a + _GOLD * (b - a)
        fc, fd = phi(c, v, t), phi(d, v, t)
        for _ in range(n_golden):
            left = fc < fd
            b = torch.where(left, d, b)
            a = torch.where(left, a, c)
            c_new = b - _GOLD * (b - a)
            d_new = a + _GOLD * (b - a)
            c, d = c_new, d_new
            fc, fd = phi(c, v, t), phi(d, v, t)
        x = 0.5 * (a + b)
        fx = phi(x, v, t)
        if g1 is not None:
            for _ in range(3):
                h = x - v + t * g1(x)
                dh = 1 + t * g2(x)
                x_new = (x - h / dh).clamp(min=lo_s, max=hi_s)
                x_new = torch.where(torch.isfinite(x_new), x_new, x)
                f_new = phi(x_new, v, t)
                take = (f_new <= fx) & ((x_new - x).abs() <= 2 * step + 1e-300)
                x, fx = torch.where(take, x_new, x), torch.where(take, f_new, fx)
        take = fx < best_f
        best_x, best_f = torch.where(take, x, best_x), torch.where(take, fx, best_f)
        if zero_in:
            z = torch.zeros_like(v)
            f0 = phi(z, v, t)
            take = f0 <= best_f
            best_x = torch.where(take, z, best_x)
        return torch.where(t == 0, v, best_x)

    def f(v: torch.Tensor, t) -> torch.Tensor:
        with torch.no_grad():
            v64, t64 = prox_inputs(v, t)
            vf, tf = finite_inputs(v64, t64)
            flat_v, flat_t = vf.reshape(-1), tf.reshape(-1)
            out = torch.empty_like(flat_v)
            for i in range(0, flat_v.numel(), chunk):
                out[i : i + chunk] = solve_chunk(flat_v[i : i + chunk], flat_t[i : i + chunk])
            out = finish(out.reshape(v.shape), v64, t64, sup, lambda: m)
            return out.to(v.dtype)

    return f
