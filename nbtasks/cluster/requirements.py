"""The installed distributions a task needs, checked on an engine before its units run.

The client lists the distributions its task's code reaches, at the client's versions
(``core/travel.py``). The list travels at the head of the task's blob, so unpickling the
blob on an engine checks it before anything else of the task is loaded (which would fail
on a missing import, or worse, load another version and run). A mismatch raises
``PackageMismatch`` there: the chunk fails without running a unit and the run fails with
``EngineUnfit``, naming the task, the engine, its host, the package and both versions.
Each engine checks each list once: a verdict that holds is kept; engines that join later
check it with their first chunk.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata as metadata
import os
import socket
from typing import Any

__all__ = ["Needs", "PackageMismatch", "Checked", "verify", "checked"]

#: (distribution, the client's version, the import names of it the task uses)
Needs = tuple[tuple[str, str, tuple[str, ...]], ...]


class PackageMismatch(ImportError):
    """An engine lacks a distribution the task needs, or has another version of it."""


_verified: set[Needs] = set()  # lists that hold on this engine


def _importable(names: tuple[str, ...]) -> bool:
    try:
        return all(importlib.machinery.PathFinder.find_spec(name) is not None for name in names)
    except Exception:
        return False


def verify(needs: Needs) -> Needs:
    """Raise ``PackageMismatch`` unless this process has each distribution at the version given.

    A distribution without metadata here whose modules import anyway passes: its version
    cannot be told, and it is there."""
    if needs in _verified:
        return needs
    problems = []
    for name, version, tops in needs:
        try:
            here = metadata.version(name)
        except metadata.PackageNotFoundError:
            if not (tops and _importable(tops)):
                problems.append(f"{name} is not installed there (the client has {name}=={version})")
            continue
        if here != version:
            problems.append(f"{name} is {here} there, {version} on the client")
    if problems:
        raise PackageMismatch(f"host {socket.gethostname()!r} (pid {os.getpid()}) cannot run the task: "
                              + "; ".join(problems) + ". Install the client's versions on every engine")
    _verified.add(needs)
    return needs


def checked(needs: Needs, task: Any) -> Any:
    """The task, once ``needs`` was verified (``verify`` ran as its argument was unpickled)."""
    return task


class _Verified:
    """Unpickles as ``verify(needs)``."""

    def __init__(self, needs: Needs) -> None:
        self.needs = needs

    def __reduce__(self) -> tuple:
        return verify, (self.needs,)


class Checked:
    """A task that an engine unpickles only after checking what it needs (first in the blob)."""

    def __init__(self, needs: Needs, task: Any) -> None:
        self.needs = needs
        self.task = task

    def __reduce__(self) -> tuple:
        return checked, (_Verified(self.needs), self.task)
