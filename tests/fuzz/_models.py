"""Small models for the fuzz suite, built without touching the global RNG."""

import torch
from torch import nn


def mlp(widths, seed, act=nn.ReLU, dtype=torch.float64, extra=None):
    """An MLP built without touching the global RNG; ``extra`` after the first Linear."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                if i == 0 and extra is not None:
                    layers.append(extra(b))
                layers.append(act())
        return nn.Sequential(*layers).to(dtype)
