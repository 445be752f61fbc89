"""Models whose forward branches on input values: vmap refuses them, the chains then loop."""

import numpy as np
import pytest
import torch
from torch import nn

import llc


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))

    def forward(self, x):
        return self.net(x)


class Branching(Plain):
    """The same function behind a branch on the inputs' values (always taken)."""

    def forward(self, x):
        if x.abs().sum() >= 0:
            return self.net(x)
        return torch.zeros(x.shape[0], 2)


class ItemBranching(Plain):
    def forward(self, x):
        if x.abs().sum().item() >= 0:
            return self.net(x)
        return torch.zeros(x.shape[0], 2)


@pytest.mark.parametrize("kind", [Branching, ItemBranching])
def test_loop_gives_the_batched_chains(one_thread, kind):
    g = torch.Generator().manual_seed(0)
    plain = Plain()
    branching = kind()
    branching.load_state_dict(plain.state_dict())
    x = torch.randn(256, 3, generator=g)
    y = plain(x).detach() + 0.1 * torch.randn(256, 2, generator=g)
    kw = dict(num_chains=3, num_burnin=100, num_draws=100, batch_size=64, seed=4, progress=False)
    ref = llc.estimate_llc(plain, (x, y), **kw)
    with pytest.warns(UserWarning, match="one after another"):
        got = llc.estimate_llc(branching, (x, y), **kw)
    # same minibatches and noise; only the order of floating-point operations differs
    np.testing.assert_allclose(got.llc_trace, ref.llc_trace, rtol=1e-3, atol=1e-3)


def test_other_runtime_errors_are_not_swallowed():
    class Broken(Plain):
        def forward(self, x):
            raise RuntimeError("something else")

    with pytest.raises(ValueError, match="something else"):
        llc.estimate_llc(Broken(), (torch.randn(8, 3), torch.randn(8, 2)), progress=False)
