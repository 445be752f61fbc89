"""Argument types of the command lines: a bad number is an argparse error, not a traceback."""

from __future__ import annotations

import argparse

import torch

from ._checks import resolve_device

__all__ = ["device", "nonnegative_int", "positive_int"]


def _integer(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (a seed)."""
    return _integer(text, 0)


def positive_int(text: str) -> int:
    """An integer >= 1 (a count)."""
    return _integer(text, 1)


def device(text: str) -> str:
    """A device this machine has: 'cpu', 'cuda', 'cuda:1'."""
    try:
        resolve_device(text, torch.device("cpu"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text
