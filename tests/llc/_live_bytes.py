"""An exact count of tensor storage, for checking the memory readings of :mod:`llc._memory`."""

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LiveBytes(TorchDispatchMode):
    """Context: the peak bytes of tensor storage created by torch operations inside it, on any
    device (each storage counted from its creation until it is freed)."""

    def __init__(self):
        super().__init__()
        self._live: dict[tuple[str, int], int] = {}
        self.current = self.peak = 0

    def _free(self, key) -> None:
        self.current -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = (str(storage.device), storage.data_ptr())
            if key[1] and key not in self._live:
                self._live[key] = storage.nbytes()
                self.current += storage.nbytes()
                self.peak = max(self.peak, self.current)
                weakref.finalize(storage, self._free, key)
        return out
