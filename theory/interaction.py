"""The local interaction basis (LIB) of a network, layer by layer.

The interaction basis rotates each node layer's activations into directions that are (i)
uncorrelated, with second moments ``Λ``, and (ii) each of unit mean-squared influence on the next
layer's features, found from the output backwards (Bushnaq et al. 2024).  Directions with no
influence on the outputs get ``Λ = 0`` and are dropped, so the kept dimension is a measure of how
many directions the network actually uses at that layer.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from theory.interaction import interaction_basis
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<...>
>>> net = nn.Sequential(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Linear(8, 2))
>>> lib = interaction_basis(net, torch.randn(500, 4), progress=False)
>>> [layer.n_kept for layer in lib.layers]  # inputs (4 + constant), hidden, outputs
[5, 2, 2]

The hidden layer has 8 units and a constant, but the linear read-out of 2 outputs uses only 2
directions of it, so only 2 are kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._interaction_edges import accumulate_edges, accumulate_mdash, accumulate_stats
from ._interaction_layers import _AffineAct, check_batch_independent, check_chain, make_block
from ._interaction_linalg import (
    Moments,
    interaction_rotation,
    output_rotation,
    pca_basis,
    quadrature,
)

__all__ = ["interaction_basis", "InteractionBasis", "LayerBasis"]

_INTEGRATIONS = ("gradient", "trapezoid", "gauss-legendre")
_DEFAULT_POINTS = {"gradient": 1, "trapezoid": 21, "gauss-legendre": 8}


@dataclass(frozen=True)
class LayerBasis:
    """Interaction basis of one node layer (width ``d``, kept dimension ``k``).

    Coordinates are homogeneous row vectors ``f = (x, 1)`` (the constant slot last, the folded
    bias); features are ``f̂ = f C`` and ``f ≈ f̂ C⁺``.

    Attributes
    ----------
    C : Tensor, shape ``(d + 1, k)``
        Interaction basis, ``C = Y U D^{-1/2} V Λ^{1/2}`` (columns sorted by ``Λ``, descending).
        For the output layer ``C = (U; 0)``: the outputs, optionally rotated to their eigenbasis.
    C_pinv : Tensor, shape ``(k, d + 1)``
        ``C⁺ = Λ^{-1/2} Vᵀ D^{1/2} Uᵀ Y⁻¹``; its rows are the features' directions in activation
        space.
    eigenvalues : Tensor, shape ``(k,)``
        ``Λ`` kept, descending; ``Cᵀ G C = diag(Λ)`` with ``G = E[fᵀ f]``.  For the output layer:
        the eigenvalues of ``E[y yᵀ]``.
    all_eigenvalues : Tensor
        ``Λ`` before truncation.
    pca_basis, pca_pinv : Tensor, shapes ``(d + 1, r)`` and ``(r, d + 1)``
        The PCA basis ``Y U`` and its inverse ``Uᵀ Y⁻¹`` (with ``center``, the constant direction
        first), for comparison.
    pca_eigenvalues : Tensor, shape ``(r,)``
        ``D``, the eigenvalues of the (centered) Gram, constant direction first.
    mean : Tensor, shape ``(d,)``
        Mean activation.
    edges : Tensor or None, shape ``(k_next, k)``
        ``E_ij`` from feature ``j`` of this layer to feature ``i`` of the next; ``None`` for the
        output layer or when ``edges=False``.
    width : int
        ``d``, the number of activations (without the constant slot).
    is_output : bool
        Whether this is the output node layer.
    """

    C: Tensor
    C_pinv: Tensor
    eigenvalues: Tensor
    all_eigenvalues: Tensor
    pca_basis: Tensor
    pca_pinv: Tensor
    pca_eigenvalues: Tensor
    mean: Tensor
    edges: Tensor | None
    width: int
    is_output: bool = False

    @property
    def n_kept(self) -> int:
        """Kept dimension ``k``."""
        return int(self.C.shape[1])


@dataclass(frozen=True)
class InteractionBasis:
    """Result of :func:`interaction_basis`: one :class:`LayerBasis` per node layer.

    ``layers[0]`` is the inputs, ``layers[-1]`` the outputs.  The remaining fields are the
    settings that produced it and diagnostics.
    """

    layers: tuple[LayerBasis, ...]
    center: bool
    threshold: float
    dtype: torch.dtype
    integration: str
    n_points: int
    batch_size: int
    rotate_outputs: bool
    n_samples: int
    closed_form: tuple[bool, ...] = field(default=())  # per layer: Hadamard-form Jacobians
    seconds: float = 0.0

    def _layer(self, layer_index: int) -> LayerBasis:
        n = len(self.layers)
        if isinstance(layer_index, bool) or not isinstance(layer_index, int):
            raise TypeError(f"layer_index must be an int, got {type(layer_index).__name__}")
        if not -n <= layer_index < n:
            raise ValueError(f"layer_index must be in [-{n}, {n}), got {layer_index}")
        return self.layers[layer_index]

    def transform(self, layer_index: int, activations: Tensor) -> Tensor:
        """Features ``f̂ = (x, 1) C`` of activations ``x`` of shape ``(..., d)`` → ``(..., k)``."""
        lb = self._layer(layer_index)
        x = _as_tensor(activations, "activations", lb.width, lb.C)
        return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1) @ lb.C

    def inverse_transform(self, layer_index: int, features: Tensor) -> Tensor:
        """Activations ``(f̂ C⁺)[..., :d]`` of features of shape ``(..., k)`` → ``(..., d)``.

        Exact on activations whose dropped directions carry no variance; otherwise the
        projection onto the kept directions.
        """
        lb = self._layer(layer_index)
        f = _as_tensor(features, "features", lb.n_kept, lb.C)
        return (f @ lb.C_pinv)[..., :lb.width]

    def plot_spectrum(self, ax=None) -> Figure:
        """``Λ`` against the PCA eigenvalues ``D`` at every node layer (log scale)."""
        from ._interaction_plot import plot_spectrum

        return plot_spectrum(self, ax)

    def plot_graph(self, max_nodes: int = 12, ax=None) -> Figure:
        """Interaction graph: node layers as columns, edges drawn by strength."""
        from ._interaction_plot import plot_graph

        return plot_graph(self, max_nodes, ax)

    def plot(self) -> Figure:
        """Same as :meth:`plot_spectrum`."""
        return self.plot_spectrum()


def _as_tensor(x, name: str, width: int, like: Tensor) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != width:
        raise ValueError(f"{name} must have shape (..., {width}), got {tuple(x.shape)}")
    return x.to(device=like.device, dtype=like.dtype)


def _validate(layers, inputs, threshold, dtype, integration, n_points, batch_size):
    if isinstance(layers, nn.Sequential):
        layers = list(layers)
    elif isinstance(layers, (list, tuple)):
        layers = list(layers)
    else:
        raise TypeError(
            "layers must be an nn.Sequential or a list of modules/callables, "
            f"got {type(layers).__name__}"
        )
    if not layers:
        raise ValueError("layers must contain at least one layer")
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.ndim != 2 or inputs.shape[0] < 2:
        raise ValueError(f"inputs must have shape (n_samples >= 2, d), got {tuple(inputs.shape)}")
    if not (inputs.is_floating_point() or inputs.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"inputs must be real-valued, got dtype {inputs.dtype}")
    if not torch.isfinite(inputs.float() if not inputs.is_floating_point() else inputs).all():
        raise ValueError("inputs contain NaN or infinite values")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or dtype.is_complex:
        raise TypeError(f"dtype must be a real floating torch.dtype, got {dtype!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype} (the "
                         "eigen-solvers have no half-precision kernels)")
    if threshold is None:
        threshold = 1e-10 if dtype == torch.float64 else 1e-5
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a float, got {type(threshold).__name__}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1) (relative to the largest eigenvalue), "
                         f"got {threshold}")
    if integration not in _INTEGRATIONS:
        raise ValueError(f"integration must be one of {_INTEGRATIONS}, got {integration!r}")
    if n_points is None:
        n_points = _DEFAULT_POINTS[integration]
    if isinstance(n_points, bool) or not isinstance(n_points, int):
        raise TypeError(f"n_points must be an int, got {type(n_points).__name__}")
    least = {"gradient": 1, "trapezoid": 2, "gauss-legendre": 1}[integration]
    if integration == "gradient" and n_points != 1:
        raise ValueError(f"n_points must be 1 (or None) with integration='gradient', "
                         f"got {n_points}")
    if n_points < least:
        raise ValueError(f"n_points must be >= {least} with integration={integration!r}, "
                         f"got {n_points}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    check_batch_independent(layers)
    return layers, float(threshold), n_points


def interaction_basis(
    layers: nn.Sequential | Sequence[nn.Module | Callable[[Tensor], Tensor]],
    inputs: Tensor,
    *,
    center: bool = True,
    threshold: float | None = None,
    dtype: torch.dtype = torch.float64,
    edges: bool = True,
    integration: str = "gradient",
    n_points: int | None = None,
    batch_size: int = 1024,
    rotate_outputs: bool = False,
    progress: bool = True,
) -> InteractionBasis:
    r"""Local interaction basis of every node layer of a network.

    Parameters
    ----------
    layers : nn.Sequential or list of modules or callables
        ``layers[l]`` maps node layer ``l`` of shape ``(batch, d_l)`` to node layer ``l + 1``;
        there are ``len(layers) + 1`` node layers, the inputs first and the outputs last.
        Biases of ``nn.Linear`` are folded into a constant direction; for the folding of other
        modules see Notes.  The model is never modified (parameters and buffers are read and
        copied).  BatchNorm in training mode is refused (its output depends on the batch): call
        ``model.eval()`` first.
    inputs : Tensor, shape ``(N, d_0)``
        Samples of the inputs; every computation runs on their device.
    center : bool
        Center the Gram matrices (``Y``) before the PCA step.  Only the PCA basis reported for
        comparison and which near-constant directions count as zero-variance depend on it: ``C``
        itself does not (any whitening of ``G`` gives the same ``C``).
    threshold : float, optional
        Relative truncation: eigenvalues ``D`` (PCA) and ``Λ`` at most ``threshold`` times the
        layer's largest are treated as zero and their directions dropped.  Default ``1e-10`` in
        float64 (round-off of the eigen-solver is ~``d · 1e-16``), ``1e-5`` otherwise.
    dtype : torch.float32 or torch.float64
        Precision of all computations (float64 by default; half precisions are refused).
    edges : bool
        Compute the squared integrated-gradient edges between consecutive node layers (cost
        ``O(N d³)`` per layer, the dominant cost at large width).
    integration : {"gradient", "trapezoid", "gauss-legendre"}
        Quadrature of the path integral in α for the edges: the gradient at α = 1, the trapezoid
        rule on ``n_points`` equally spaced points of [0, 1], or Gauss–Legendre with
        ``n_points`` nodes.
    n_points : int, optional
        Quadrature points (default 1, 21 and 8 for the three rules).
    batch_size : int
        Samples per streamed batch; Jacobian blocks are further chunked to at most ``2**24``
        entries, so memory is ``O(d²)`` per layer whatever ``N``.
    rotate_outputs : bool
        Use the eigenbasis of the uncentered output Gram ``E[y yᵀ]`` as the output basis instead
        of the outputs themselves (an orthogonal rotation: earlier layers are unchanged).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    InteractionBasis

    Notes
    -----
    Row vectors, homogeneous ``f = (x, 1)``, node layers processed from the output backwards:

    1. ``G = (1/N) Σ_x fᵀ f``; with centering ``Yᵀ G Y = U D Uᵀ`` (``f Y = (x - μ, 1)``), keep
       ``D > threshold · max D``; PCA basis ``Y U``.
    2. ``M' = (1/N) Σ_x J_xᵀ J_x`` with ``J_x = ∂f̂^{l+1}/∂f^l`` (the next layer's features in
       its basis, already computed), and ``M = D^{1/2} Uᵀ Y⁻¹ M' Y⁻ᵀ U D^{1/2} = V Λ Vᵀ``.
    3. ``C = Y U D^{-1/2} V Λ^{1/2}``, ``C⁺ = Λ^{-1/2} Vᵀ D^{1/2} Uᵀ Y⁻¹``, dropping
       ``Λ ≤ threshold · max Λ``.  Then ``Cᵀ G C = diag(Λ)`` and ``E_x[Ĵᵀ Ĵ] = I`` for
       ``Ĵ = ∂f̂^{l+1}/∂f̂^l``.
    4. ``E_ij = (1/N) Σ_x ( ∫₀¹ ∂f̂^{l+1}_i(α f̂^l)/∂(α f̂^l_j) · f̂^l_j dα )²``.

    The basis uses the Jacobian at the data (α = 1), as in the LIB paper; ``integration`` only
    affects the edges.  Folding: ``nn.Linear`` maps ``(x, c) ↦ (x Wᵀ + c b, c)``;
    parameter-free elementwise activations act on ``x`` only; any other module or callable
    ``g`` is extended homogeneously, ``(x, c) ↦ (c g(x/c), c)``.  For ReLU networks the folded
    layer is positively homogeneous, so the path integral equals the gradient.  A layer of
    affine maps around at most one elementwise activation is treated in closed form
    (``M' = P ((QC)(QC)ᵀ ⊙ Σ_x σ̃'σ̃'ᵀ) Pᵀ / N``), other layers with per-sample Jacobians from
    ``torch.func``.  Within a degenerate eigenspace of ``M`` the basis is defined only up to a
    rotation; each column only up to sign.

    References
    ----------
    L. Bushnaq et al., "The Local Interaction Basis: Identifying Computationally-Relevant and
    Sparsely Interacting Features in Neural Networks", arXiv:2405.10928 (2024); and
    "Using Degeneracy in the Loss Landscape for Mechanistic Interpretability",
    arXiv:2405.10927 (2024).  Reference code: github.com/ApolloResearch/rib.
    """
    layers, threshold, n_points = _validate(
        layers, inputs, threshold, dtype, integration, n_points, batch_size
    )
    start = time.perf_counter()
    device = inputs.device
    x = inputs.detach()  # cast batch by batch: no full-size copy
    blocks = [make_block(layer, i, device, dtype) for i, layer in enumerate(layers)]
    with torch.no_grad():
        widths = check_chain(blocks, x[:2].to(dtype))
    n_layers = len(blocks)
    n_batches = -(-x.shape[0] // batch_size)
    n_generic = sum(not isinstance(b, _AffineAct) for b in blocks)
    total = n_batches * (1 + n_generic + (n_layers if edges else 0))
    bar = tqdm(total=total, desc="interaction basis", disable=not progress)

    # One forward pass: moments of every node layer, slope products of closed-form layers.
    moments = [Moments(w, device, dtype) for w in widths]
    slope_products = accumulate_stats(blocks, x, moments, batch_size, bar.update)
    for i, mom in enumerate(moments):
        if not torch.isfinite(mom.s2).all():
            bar.close()
            raise ValueError(f"layers produce NaN or infinite activations at node layer {i}")

    alphas, weights = quadrature(integration, n_points, device, dtype)
    rot = output_rotation(moments[-1], rotate_outputs)
    pca = pca_basis(moments[-1], center, threshold)
    result = [LayerBasis(rot.C, rot.C_pinv, rot.eigenvalues, rot.all_eigenvalues, pca.basis,
                         pca.pinv, pca.eigenvalues, moments[-1].mean, None, widths[-1], True)]
    for layer in range(n_layers - 1, -1, -1):
        c_next = result[0].C
        if isinstance(blocks[layer], _AffineAct):
            mdash = blocks[layer].mdash_finish(slope_products[layer], c_next, x.shape[0])
        else:
            mdash = accumulate_mdash(blocks, x, layer, c_next, batch_size, bar.update)
        pca = pca_basis(moments[layer], center, threshold)
        rot = interaction_rotation(pca, mdash, threshold)
        if rot.C.shape[1] == 0:
            bar.close()
            raise ValueError(
                f"the outputs do not depend on node layer {layer} on these inputs "
                "(all interaction eigenvalues are zero)"
            )
        edge = None
        if edges:
            edge = accumulate_edges(blocks, x, layer, rot.C, rot.C_pinv, c_next, alphas,
                                    weights, batch_size, bar.update)
        result.insert(0, LayerBasis(rot.C, rot.C_pinv, rot.eigenvalues, rot.all_eigenvalues,
                                    pca.basis, pca.pinv, pca.eigenvalues, moments[layer].mean,
                                    edge, widths[layer]))
    bar.close()
    return InteractionBasis(
        layers=tuple(result), center=center, threshold=threshold, dtype=dtype,
        integration=integration, n_points=n_points, batch_size=batch_size,
        rotate_outputs=rotate_outputs, n_samples=int(x.shape[0]),
        closed_form=tuple(isinstance(b, _AffineAct) for b in blocks),
        seconds=time.perf_counter() - start,
    )
