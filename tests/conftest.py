"""Fixtures shared by every test package."""

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path

import pytest
import torch


def pytest_configure(config):
    # Under pytest-xdist every worker takes its share of the cores: threads beyond it only
    # contend (a notebook's kernel or a README block then ran 3-4x slower).
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // int(workers)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    # Under pytest-xdist a test marked `alone` runs while no other worker runs a test: memory
    # readings are polled, and a busy neighbour makes the poller miss brief peaks.
    stem = _lock_stem()
    if stem is None:
        yield
        return
    with _turn(stem, item.get_closest_marker("alone") is not None):
        yield


def pytest_unconfigure(config):
    # a worker that stops runs no more tests: whoever is left runs alone anyway
    stem = _lock_stem()
    for end in (".gate", ".lock") if stem else ():
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{stem}{end}")


def _lock_stem() -> Path | None:
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    return None if run is None else Path(tempfile.gettempdir()) / f"slt-interp-tests-{run}"


@contextlib.contextmanager
def _turn(stem: Path, alone: bool):
    """A readers-writer lock between workers: a test holds the lock shared, an `alone` test
    exclusively; a waiting `alone` test holds the gate, so that no new test starts meanwhile."""
    with open(f"{stem}.gate", "a") as gate, open(f"{stem}.lock", "a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        if not alone:
            fcntl.flock(gate, fcntl.LOCK_UN)
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            fcntl.flock(gate, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matrices on a shared machine: more threads only contend (and slow down ~100x)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
