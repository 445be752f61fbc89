"""Fixtures shared by every test package."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matrices on a shared machine: more threads only contend (and slow down ~100x)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
