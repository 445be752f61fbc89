"""Models shared by the llc tests."""

from torch import nn


class CustomForward(nn.Module):
    """A network behind a custom forward: the estimator takes its generic vmap path."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)
