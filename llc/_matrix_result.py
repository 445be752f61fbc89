"""What the posterior-covariance results share: a matrix, its Monte Carlo error, the LLC run
it came from, a heatmap and a labelled export."""

from __future__ import annotations

import numpy as np


def heatmap(matrix: np.ndarray, title: str, xlabel: str, ylabel: str, ax=None, symmetric=True):
    """A heatmap of ``matrix`` (diverging colours centred at 0 when ``symmetric``); the figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
    else:
        fig = ax.figure
    finite = np.abs(matrix[np.isfinite(matrix)])
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    kw = dict(cmap="RdBu_r", vmin=-vmax, vmax=vmax) if symmetric else dict(cmap="viridis")
    image = ax.imshow(matrix, aspect="auto", interpolation="nearest", **kw)
    fig.colorbar(image, ax=ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def to_dataset(arrays: dict, dims: tuple[str, str], attrs: dict):
    """An :class:`xarray.Dataset` of ``(dims)``-shaped arrays with ``attrs``."""
    import xarray as xr

    return xr.Dataset({k: (dims, np.asarray(v)) for k, v in arrays.items()}, attrs=attrs)


def settings(llc) -> dict:
    """The sampling settings of an :class:`llc.LLCResult`, for ``attrs``."""
    return dict(
        nbeta=llc.nbeta, step_size=llc.step_size, localization=llc.localization,
        sampler=llc.sampler, scheme=llc.scheme, num_chains=llc.num_chains,
        num_draws=llc.num_draws, num_burnin=llc.num_burnin, batch_size=llc.batch_size,
        llc_mean=llc.mean, llc_mcse=llc.mcse, r_hat=llc.r_hat, ess=llc.ess,
    )  # fmt: skip
