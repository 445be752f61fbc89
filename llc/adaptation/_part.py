from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Part"]


class Part(NamedTuple):
    """An adaptation rule: ``init(...) -> state``, ``update(state, ...) -> state``,
    ``final(state, ...) -> value``."""

    init: Callable
    update: Callable
    final: Callable
