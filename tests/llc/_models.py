"""Models shared by the llc tests."""

import torch
from torch import nn


class CustomForward(nn.Module):
    """A network behind a custom forward: the estimator takes its generic vmap path."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


class Shuffled:
    """A re-iterable of minibatches, reshuffled at every pass by its own generator."""

    def __init__(self, x, y, batch, seed):
        self.x, self.y, self.batch = x, y, batch
        self.gen = torch.Generator().manual_seed(seed)

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=self.gen)
        for i in range(0, len(order), self.batch):
            j = order[i : i + self.batch]
            yield self.x[j], self.y[j]
