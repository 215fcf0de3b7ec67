"""Shared fixtures: one real local ipyparallel cluster of 2 engines per session.

Cluster files go to a temporary IPYTHONDIR, never the user's ~/.ipython, and
runs to a temporary store ($NBTASKS_STORE), never the user's.
Test modules are pickled by value, since engines cannot import them.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile

import cloudpickle
import pytest

os.environ["IPYTHONDIR"] = tempfile.mkdtemp(prefix="nbtasks-test-ipython-")
os.environ["NBTASKS_STORE"] = os.path.join(tempfile.mkdtemp(prefix="nbtasks-test-store-"), "runs.db")
# scripts and notebooks the tests run start no default cluster on import (tests of that opt in)
os.environ["NBTASKS_PRESTART"] = "0"

import nbtasks as nt  # noqa: E402  (after IPYTHONDIR is set)
from tests.hosts.fixtures import mpi, network, slurm, ssh_hosts  # noqa: E402,F401  (one set per session)

_by_value: set[str] = set()


class _DispatchBugs(logging.Handler):
    """Errors the dispatch thread logs (and survives) instead of raising: each one is a
    bug (an illegal unit move, say), so any test during which one is logged fails."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "dispatcher failed" in record.getMessage():
            self.seen.append(self.format(record))


_dispatch_bugs = _DispatchBugs()
logging.getLogger("nbtasks").addHandler(_dispatch_bugs)


@pytest.fixture(autouse=True)
def no_dispatch_bugs():
    before = len(_dispatch_bugs.seen)
    yield
    assert _dispatch_bugs.seen[before:] == [], "the dispatch thread logged an error"


def pytest_runtest_setup(item: pytest.Item) -> None:
    module = getattr(item, "module", None)
    if module is not None and module.__name__ not in _by_value:
        cloudpickle.register_pickle_by_value(module)
        _by_value.add(module.__name__)


@pytest.fixture(scope="session")
def cluster():
    c = nt.Cluster(n=2).start()
    yield c
    c.stop()


@pytest.fixture
def python_script(tmp_path):
    """Write a script and return the command to run it in a fresh interpreter."""

    def make(source: str, name: str = "script.py") -> list[str]:
        path = tmp_path / name
        path.write_text(source)
        return [sys.executable, str(path)]

    return make
