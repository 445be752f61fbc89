"""Small linear programs over polytopes, solved with HiGHS (private).

``LPSolver`` talks to a ``highspy.Highs`` object (the public HiGHS package),
reusing one instance: about 7x less overhead per tiny LP than
``scipy.optimize.linprog``, which wraps the same solver and is used with
``backend="linprog"`` (or when highspy is not importable).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

try:  # a dependency; the linprog route still works without it
    import highspy
except ImportError:  # pragma: no cover - only in an environment without highspy
    highspy = None

__all__: list[str] = []

BACKENDS = ("highs", "linprog")


class LPSolver:
    """Solves ``min c·x s.t. A x ≤ b, lo ≤ x ≤ hi`` and counts calls (per
    enumeration call; no global state)."""

    def __init__(self, backend: str = "highs"):
        if backend not in BACKENDS:
            raise ValueError(f"lp_backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend if highspy is not None else "linprog"
        self.n_lp = 0
        self.n_nodes = 0
        self.n_dropped = 0
        self._h = None
        if self.backend == "highs":
            self._h = highspy.Highs()
            self._h.setOptionValue("output_flag", False)
            # presolve costs more than it saves on LPs of a few dozen rows (~1.5x per LP)
            self._h.setOptionValue("presolve", "off")

    def solve(self, c, A, b, lo, hi) -> np.ndarray | None:
        """Optimal x, or None if the LP is not solved to optimality."""
        self.n_lp += 1
        if self._h is None:
            res = linprog(c, A_ub=A, b_ub=b, bounds=list(zip(lo, hi)), method="highs")
            return res.x if res.status == 0 else None
        inf = highspy.kHighsInf
        m, n = A.shape
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = n, m
        lp.col_cost_ = np.asarray(c, dtype=np.float64)
        lp.col_lower_ = np.where(np.isfinite(lo), lo, -inf)
        lp.col_upper_ = np.where(np.isfinite(hi), hi, inf)
        lp.row_lower_ = np.full(m, -inf)
        lp.row_upper_ = np.asarray(b, dtype=np.float64)
        mat = lp.a_matrix_
        mat.format_ = highspy.MatrixFormat.kRowwise
        mat.start_ = np.arange(0, m * n + 1, n, dtype=np.int32)
        mat.index_ = np.tile(np.arange(n, dtype=np.int32), m)
        mat.value_ = np.ascontiguousarray(A, dtype=np.float64).ravel()
        mat.num_col_, mat.num_row_ = n, m
        h = self._h
        h.clearModel()
        h.passModel(lp)
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        return np.array(h.getSolution().col_value)

    def chebyshev(self, G, h, lo, hi) -> tuple[np.ndarray | None, float]:
        """Largest ball in ``{x : G x ≤ h, lo ≤ x ≤ hi}`` (unit-norm rows of G).

        Solves ``max t  s.t.  G x + t ≤ h,  x + t ≤ hi,  −x + t ≤ −lo``; returns
        (centre, radius), radius ≤ 0 meaning no interior.
        """
        d = lo.shape[0]
        k = G.shape[0]
        A = np.empty((k + 2 * d, d + 1))
        A[:k, :d] = G
        A[k : k + d, :d] = np.eye(d)
        A[k + d :, :d] = -np.eye(d)
        A[:, d] = 1.0
        b = np.concatenate([h, hi, -lo])
        c = np.zeros(d + 1)
        c[d] = -1.0
        free = np.full(d + 1, np.inf)
        x = self.solve(c, A, b, -free, free)
        if x is None:
            return None, -np.inf
        return x[:d], float(x[d])

    def bounding_box(self, G, h, lo, hi, margin: float) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box containing ``{G x ≤ h} ∩ [lo, hi]`` (2d LPs), widened
        by ``margin`` to stay an outer bound despite the solver's tolerances."""
        d = lo.shape[0]
        blo, bhi = lo.copy(), hi.copy()
        if G.shape[0] == 0:
            return blo, bhi
        for j in range(d):
            for sgn in (1.0, -1.0):
                c = np.zeros(d)
                c[j] = sgn
                x = self.solve(c, G, h, lo, hi)
                if x is None:
                    continue  # keep the outer bound: always valid
                if sgn > 0:
                    blo[j] = max(lo[j], x[j] - margin)
                else:
                    bhi[j] = min(hi[j], x[j] + margin)
        return blo, bhi
