"""Curvature of the loss at w*: dense Gauss–Newton / Hessian matrices and matrix-free products.

Everything works on the flat parameter vector of :class:`llc._functional.FlatModel`, in the
requested dtype (float64 by default), on the model's device.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch.func import hessian, jacrev, jvp, vjp, vmap

from ._data import LossFn, narrow, num_samples
from ._functional import FlatModel

__all__ = ["Curvature", "default_rtol", "lanczos_spectrum", "non_finite_message"]

CHUNK = 256  # samples per Jacobian block


class Curvature:
    """Second-order information of ``L_n(w) = (1/n) Σ ℓ(f_w(x_i), y_i)`` at the centre w*.

    ``gauss_newton``: ``G = (1/n) Σ J_iᵀ H_i J_i`` with ``J_i = ∂f_w(x_i)/∂w`` and
    ``H_i = ∂²ℓ/∂f²`` (the Fisher information for MSE and cross-entropy). ``hessian``: ``∇²L_n``.
    """

    def __init__(self, flat: FlatModel, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn):
        self.flat, self.x, self.y, self.loss_fn = flat, x, y, loss_fn
        self.n = num_samples(x)

    # ---- dense ------------------------------------------------------------------------
    def _output_hessians(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``H_i`` of shape (B, o, o), o the flattened output size."""
        shape = out.shape[1:]

        def one(o, t):
            return self.loss_fn(o.reshape(1, *shape), t.unsqueeze(0))[0]

        h = vmap(hessian(one))(out.reshape(out.shape[0], -1), y)
        return h

    def dense(self, method: str) -> torch.Tensor:
        """The d×d matrix, symmetrised."""
        flat = self.flat
        if method == "hessian":

            def total(w):
                return flat.per_sample_loss(w, self.x, self.y, self.loss_fn).mean()

            mat = hessian(total)(flat.center)
        else:
            mat = torch.zeros(
                flat.dim, flat.dim, dtype=flat.center.dtype, device=flat.center.device
            )
            for i in range(0, self.n, CHUNK):
                xb, yb = narrow(self.x, i, CHUNK), self.y[i : i + CHUNK]
                out = flat.forward(flat.center, xb).detach()
                jac = jacrev(lambda w, xb=xb, m=out.shape[0]: flat.forward(w, xb).reshape(m, -1))(
                    flat.center
                )
                h = self._output_hessians(out, yb)  # (B, o, o)
                mat += torch.einsum("boi,bop,bpj->ij", jac, h, jac)
            mat /= self.n
        return 0.5 * (mat + mat.T)

    # ---- matrix-free ------------------------------------------------------------------
    def matvec(self, method: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """``v ↦ M v`` for the Gauss–Newton matrix or the Hessian, without forming M."""
        flat, c = self.flat, self.flat.center
        if method == "hessian":

            def grad_fn(w):
                return torch.func.grad(
                    lambda u: flat.per_sample_loss(u, self.x, self.y, self.loss_fn).mean()
                )(w)

            return lambda v: jvp(grad_fn, (c,), (v,))[1]

        def ggn(v: torch.Tensor) -> torch.Tensor:
            acc = torch.zeros_like(c)
            for i in range(0, self.n, 4 * CHUNK):
                xb, yb = narrow(self.x, i, 4 * CHUNK), self.y[i : i + 4 * CHUNK]
                fwd = lambda w, xb=xb: flat.forward(w, xb)  # noqa: E731
                out, jv = jvp(fwd, (c,), (v,))
                o = out.detach().requires_grad_(True)

                def lsum(oo, yb=yb):
                    return self.loss_fn(oo, yb).sum()

                _, hjv = jvp(torch.func.grad(lsum), (o,), (jv,))
                _, pull = vjp(fwd, c)
                acc += pull(hjv)[0]
            return acc / self.n

        return ggn


def lanczos_spectrum(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    d: int,
    *,
    like: torch.Tensor,
    rtol: float,
    psd: bool,
    seed: int,
    start_k: int = 32,
    max_k: int | None = None,
    name: str = "gauss_newton",
) -> tuple[np.ndarray, float, bool]:
    """Leading eigenvalues by Lanczos (ARPACK ``eigsh``) with k doubled until one falls below τ.

    Returns ``(eigenvalues descending by |μ|, τ, complete)``: ``complete`` is true when the
    smallest Ritz value found is below ``τ = rtol·|μ_max|``, so that every eigenvalue above τ was
    found (the rank estimate is the count above τ); otherwise the rank is only a lower bound.
    A zero product ``M v0`` (random v0) means M = 0 with probability one: ARPACK cannot start
    there, and the zero spectrum is returned with τ = 0.
    """
    max_k = min(d - 1, max_k or d - 1)
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(d)

    def mv(v: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.asarray(v).reshape(-1), dtype=like.dtype, device=like.device)
        out = matvec(t).detach().cpu().double().numpy()
        if not np.isfinite(out).all():
            raise ValueError(non_finite_message(name, like.dtype))
        return out

    k = min(start_k, max_k)
    if not np.any(mv(v0)):
        return np.zeros(k), 0.0, True
    from scipy.sparse.linalg import LinearOperator, eigsh  # on first use: import llc stays fast

    op = LinearOperator((d, d), matvec=mv, dtype=np.float64)
    while True:
        vals = eigsh(
            op,
            k=k,
            which="LA" if psd else "LM",
            v0=v0,
            return_eigenvectors=False,
            tol=1e-10,
            maxiter=max(1000, 20 * k),
        )
        vals = vals[np.argsort(-np.abs(vals))]
        tau = rtol * float(np.abs(vals[0]))
        done = np.abs(vals[-1]) < tau
        if done or k >= max_k:
            return vals, tau, bool(done)
        k = min(2 * k, max_k)


def non_finite_message(method: str, dtype: torch.dtype) -> str:
    """The error for a curvature matrix with NaN or inf entries (finite weights and loss)."""
    what = "Hessian" if method == "hessian" else "Gauss–Newton"
    return (
        f"the {what} curvature matrix at the model's weights is not finite (NaN or inf) in "
        f"{dtype}: products of Jacobians overflow; use dtype=torch.float64 or rescale the inputs"
    )


def default_rtol(n: int, dtype: torch.dtype, d: int) -> float:
    """``max(1/√n, 100·d·eps)``: see :func:`llc.bounds.hessian_bounds`."""
    return max(1.0 / math.sqrt(n), 100.0 * d * torch.finfo(dtype).eps)
