"""An SAE encoder nonlinearity from a prior: the proximal operator of its penalty.

One step of proximal gradient on the MAP objective ``½‖x − x̂‖² + t·pen(f)`` from the encoder's
pre-activations gives ``f = prox_{t·pen}(hidden_pre)``: L1 gives a shifted ReLU, L0 a hard
threshold (JumpReLU), and every other derived prox its own thresholding function.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
from torch import nn

from ..prox import prox as _derive_prox
from ._checks import as_penalty, check_activations, check_nonnegative
from ._deadzone import dead_zone
from ._live_prox import LiveProx, derivative_functions
from ._prox_grad import ProxFunction, ThresholdStep, joint_prox_vjp

__all__ = ["ProxActivation"]


class ProxActivation(nn.Module):
    r"""``f = prox_{t·pen}(hidden_pre)`` with a learnable weight per latent (or per group).

    Parameters
    ----------
    prior : priors.Prior, priors.Penalty or priors.FitReport
        Its penalty ``pen``; joint priors of dimension ``k`` act on consecutive blocks of ``k``
        latents and give a non-separable activation.
    d_sae : int
        Number of latents (a multiple of ``k``).
    t : float
        Initial penalty weight ``t > 0``.
    threshold : float, optional
        Initial dead-zone threshold instead of ``t`` (priors whose prox has a dead zone only).
    learn : bool
        Whether the parameter is trained.
    nonnegative : bool
        Latents restricted to ``f ≥ 0`` (``prox`` of ``pen + ι_{[0,∞)}``, which is
        ``prox(max(v, 0))`` for a symmetric penalty).  Needs a symmetric penalty or one
        supported on ``[0, ∞)``.
    bandwidth : float
        ε of the rectangle kernel in the pseudo-derivative at a jump.
    params : dict, optional
        Values of the prior's free parameters.

    Attributes
    ----------
    threshold : nn.Parameter (d_sae,)
        The dead-zone threshold τ (priors whose prox has a dead zone); ``t = t(τ)``.
    log_t : nn.Parameter (d_sae / k,)
        ``log t`` (priors without a dead zone, and joint priors).

    Notes
    -----
    Forward: ``f_i = prox_{t_i·pen}(v_i)`` for ``|v_i| > τ_i`` and 0 otherwise, the prox computed
    in float64 (:func:`priors.prox`) and the dead zone by the comparison ``v > τ``, so the L0
    activation is JumpReLU's ``v·1[v > τ]`` bit for bit.

    Backward, where ``f ≠ 0`` (implicit function theorem on ``f − v + t·pen'(f) = 0``):

    .. math::

        \frac{\partial f}{\partial v} = \frac{1}{1 + t\,\mathrm{pen}''(f)}, \qquad
        \frac{\partial f}{\partial t} = -\frac{\mathrm{pen}'(f)}{1 + t\,\mathrm{pen}''(f)},

    zero inside the dead zone, and ``∂f/∂τ = (∂f/∂t)(dt/dτ)``.  Where the prox jumps from 0 to
    ``f_τ = lim_{v↓τ} prox(v)``, the threshold also gets the pseudo-derivative of
    Rajamanoharan et al. (2024):

    .. math::

        \frac{\partial f}{\partial \tau} \mathrel{+}= -\frac{f_\tau}{\varepsilon}\,
        K\!\Big(\frac{|v| - \tau}{\varepsilon}\Big)\,\mathrm{sign}(v),
        \qquad K = 1_{[-1/2,\,1/2]},

    which for L0 (``f_τ = τ``) is JumpReLU's ``−(τ/ε)K``; the input gets no gradient from the
    jump.  Joint priors use the same implicit derivative with the Hessian of ``pen`` on the
    group's non-zero coordinates, ``(I + t\,H_{AA})^{-1}``, and have no jump term.

    References
    ----------
    Rajamanoharan et al. (2024), Jumping ahead: improving reconstruction fidelity with JumpReLU
    sparse autoencoders, arXiv:2407.14435.
    Parikh & Boyd (2014), Proximal algorithms, Found. Trends Optim. 1(3).

    Raises
    ------
    TypeError, ValueError
        For the prior (see :class:`priors.sae.SparsityPenalty`), ``d_sae`` not a positive
        multiple of ``k``, ``t``/``threshold``/``bandwidth`` not positive, ``threshold`` for a
        prox without a dead zone, ``nonnegative`` with an asymmetric penalty on the real line;
        in :meth:`forward`, pre-activations that are not finite floating point or whose last
        axis is not ``d_sae``.
    """

    def __init__(
        self,
        prior: Any,
        d_sae: int,
        *,
        t: float = 1.0,
        threshold: float | None = None,
        learn: bool = True,
        nonnegative: bool = True,
        bandwidth: float = 0.05,
        params: dict | None = None,
    ):
        super().__init__()
        pen = as_penalty(prior, params)
        k = pen.dim
        if isinstance(d_sae, bool) or not isinstance(d_sae, int) or d_sae < 1 or d_sae % k:
            raise ValueError(
                f"d_sae must be a positive multiple of the prior's dimension {k}, got {d_sae!r}"
            )
        check_nonnegative("t", t, strict=True)
        check_nonnegative("bandwidth", bandwidth, strict=True)
        pen = _closure(pen)
        px = _derive_prox(pen)
        support_pos = bool(pen.support.is_subset(_nonneg_set(k)))
        if nonnegative and not (_sign_symmetric(px) or support_pos):
            raise ValueError(
                "nonnegative: the penalty is neither symmetric nor supported on "
                "[0, ∞), so prox(max(v, 0)) is not its prox on f ≥ 0; pass "
                "nonnegative=False"
            )
        self.penalty, self.d_sae, self.k = pen, d_sae, k
        self.nonnegative, self.bandwidth = nonnegative and not support_pos, float(bandwidth)
        parts = _compiled(_PenaltyKey(pen, px))
        self._prox, self._pen, self._zone = parts["prox"], parts["pen"], parts.get("zone")
        if k == 1:
            self._symmetric, self._zero_below = parts["symmetric"], parts["zero_below"]
            self._derivs, self._live = parts["derivs"], parts["live"]
        if threshold is not None:
            if self._zone is None:
                raise ValueError(
                    "threshold: this prox has no dead zone (or the prior is joint); give t instead"
                )
            check_nonnegative("threshold", threshold, strict=True)
        if self._zone is not None:
            tau0 = (
                threshold
                if threshold is not None
                else float(self._zone.tau_of(torch.tensor([float(t)]))[0])
            )
            self.threshold = nn.Parameter(torch.full((d_sae,), tau0), requires_grad=learn)
        else:
            self.log_t = nn.Parameter(
                torch.full((d_sae // k,), float(t)).log(), requires_grad=learn
            )

    @property
    def t(self) -> torch.Tensor:
        """The penalty weight per latent (per group for joint priors), float64, detached."""
        if self._zone is not None:
            return self._zone.t_of(self.threshold.detach().clamp_min(1e-30))
        return self.log_t.detach().double().exp()

    def forward(self, hidden_pre: torch.Tensor) -> torch.Tensor:
        """Latents of ``hidden_pre``'s shape ``(..., d_sae)`` and dtype."""
        v = check_activations(hidden_pre, "hidden_pre")
        if v.shape[-1] != self.d_sae:
            raise ValueError(
                f"hidden_pre: last axis must be d_sae = {self.d_sae}, got {tuple(v.shape)}"
            )
        if self.nonnegative:
            v = torch.relu(v)
        if self.k > 1:
            groups = v.unflatten(-1, (-1, self.k))
            out = joint_prox_vjp(self._prox, self._pen, groups, self.log_t)
            return out.flatten(-2)
        param = self.threshold if self._zone is not None else self.log_t
        return ProxFunction.apply(v, param, self)

    @property
    def has_jump(self) -> bool:
        """Whether the prox jumps from 0 to a non-zero value at its threshold."""
        return self._zone is not None and self._zone.has_jump

    def jump_height(self) -> torch.Tensor:
        """``f_τ = lim_{v↓τ} prox(v)`` per latent, shape ``(d_sae,)``, detached (0 if no jump)."""
        if not self.has_jump:
            return torch.zeros(self.d_sae, dtype=torch.float64)
        tau = self.threshold.detach().double().clamp_min(1e-30)
        return self._prox(tau * (1 + 1e-12), self.t).abs()

    def active(self, hidden_pre: torch.Tensor) -> torch.Tensor:
        """``1[|v| > τ]`` of shape ``hidden_pre``'s, differentiable in τ by the pseudo-derivative.

        What :class:`SparsityPenalty` uses to pass the penalty's own jump at the threshold to
        τ (as SAELens' ``Step`` does for L0); requires a prox with a dead zone.
        """
        if self._zone is None:
            raise ValueError("active: this prox has no dead zone")
        v = torch.relu(hidden_pre) if self.nonnegative else hidden_pre
        a = v.abs() if self._symmetric else v
        return ThresholdStep.apply(a, self.threshold.clamp_min(1e-30), self.bandwidth)

    def extra_repr(self) -> str:
        kind = "threshold" if self._zone is not None else "log_t"
        return f"pen={self.penalty.expr}, d_sae={self.d_sae}, k={self.k}, parameter={kind}"


def _closure(pen):
    """A spike-and-slab penalty whose slab undercuts the spike at 0 (``l0 + slab(0⁺) < 0``,
    as a hurdle fit gives when ``π·g(0⁺) > 1 − π``) is not lower semicontinuous: its prox does
    not exist near 0.  Its closure, the slab's penalty on ``[0, ∞)`` or ℝ with 0 included, has
    the same infimum and a continuous prox; it is used, with a warning."""
    import warnings

    import sympy as sp

    from ..penalty import Penalty

    if pen.dim != 1 or not {"slab_penalty", "l0_weight", "slab_support"} <= set(pen.meta):
        return pen
    slab = pen.meta["slab_penalty"] + pen.meta["l0_weight"]
    at0 = sp.limit(slab, pen.var, 0, "+")
    if not (at0.is_number and at0.is_finite and float(at0) < 0):
        return pen
    warnings.warn(
        f"prior: the slab undercuts the spike at 0 (l0 weight + slab penalty at 0+ = "
        f"{float(at0):.3g} < 0), so the spike-and-slab penalty has no prox near 0; the "
        "activation uses its closure, the slab's penalty with 0 included (a continuous prox)",
        UserWarning,
        stacklevel=3,
    )
    support = sp.Union(pen.meta["slab_support"], sp.FiniteSet(0))
    return Penalty(slab, pen.var, support, zero_at_zero=False)


class _PenaltyKey:
    """Hashes a penalty by its expression, variable, support and spike-and-slab parts, so
    that activations of equal penalties share their compiled functions and tables."""

    def __init__(self, pen, px):
        self.pen, self.px = pen, px
        slab = tuple(str(pen.meta.get(k)) for k in ("slab_penalty", "l0_weight", "slab_support"))
        self.key = (pen.expr, pen.var, pen.support, slab, pen.dim)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _PenaltyKey) and self.key == other.key


@lru_cache(maxsize=32)
def _compiled(key: _PenaltyKey) -> dict:
    """Compiled prox and penalty, and for a scalar penalty its dead zone and fast solver
    (built once per penalty: about a second of exact prox evaluations)."""
    pen, px = key.pen, key.px
    parts = {"prox": px.to_torch(), "pen": pen.to_torch()}
    if pen.dim > 1:
        return parts
    zone = dead_zone(parts["prox"], parts["pen"])
    parts["zone"] = zone if zone.exists else None
    parts["symmetric"] = bool(px.symmetric)
    parts["zero_below"] = parts["symmetric"] or _zero_below(parts["prox"])
    parts["derivs"] = derivative_functions(pen, parts["symmetric"])
    parts["live"] = LiveProx(parts["prox"], parts["pen"], parts["zone"], parts["derivs"])
    return parts


def _sign_symmetric(px) -> bool:
    """``pen`` unchanged by flipping the sign of any coordinate."""
    from ..penalty import radial_profile

    pen = px.penalty
    if pen.dim == 1:
        return bool(px.symmetric)
    if "exclusive" in pen.meta:
        return bool(_derive_prox(pen.meta["exclusive"]).symmetric)
    return radial_profile(pen) is not None


def _zero_below(prox_fn) -> bool:
    """Whether ``prox_t(v) = 0`` for ``v ≤ 0`` on a grid (a penalty non-decreasing on [0, ∞))."""
    v = -torch.logspace(-8, 8, 65, dtype=torch.float64)[:, None]
    t = torch.logspace(-6, 6, 25, dtype=torch.float64)[None, :]
    return bool((prox_fn(v.expand(65, 25), t.expand(65, 25)) == 0).all())


def _nonneg_set(k: int):
    import sympy as sp

    half = sp.Interval(0, sp.oo)
    return half if k == 1 else sp.ProductSet(*([half] * k))
