"""Fixtures shared by the llc tests."""

import pytest
import torch
from torch import nn


@pytest.fixture
def problem():
    """A small float32 tanh network with noisy targets near its outputs, (model, x, y)."""
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2))
    x = torch.randn(200, 3, generator=gen)
    with torch.no_grad():
        y = model(x) + 0.1 * torch.randn(200, 2, generator=gen)
    return model, x, y


@pytest.fixture
def tanh_net():
    """A float64 tanh network with seeded weights and random data, (model, x, y)."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(64, 3, generator=g, dtype=torch.float64)
    y = torch.randn(64, 2, generator=g, dtype=torch.float64)
    return model, x, y
