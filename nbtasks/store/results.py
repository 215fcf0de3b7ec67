"""Stored results read back: a ``blobs`` row into the object that was pickled.

A run's own result is kept like chunk outcomes (``Store._blob``); a result that
cannot be pickled is kept as an ``UnpicklableResult`` saying why, so a later
kernel's ``result()`` can say so instead of finding nothing.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from ..core.errors import NbtasksError
from ..core.serialize import Pickled

__all__ = ["UnpicklableResult", "ResultNotKept", "read_blob"]


class UnpicklableResult:
    """Stands in the store for a run's result that could not be pickled."""

    def __init__(self, why: str) -> None:
        self.why = why


class ResultNotKept(NbtasksError, LookupError):
    """A stored run's result (or a unit's) is not in the store: dropped by its size
    limit, never picklable, from before results were kept, or unreadable now."""


def read_blob(conn: sqlite3.Connection, database: str, blob: int, what: str) -> Any:
    """Unpickle the ``blobs`` row ``blob`` of the store at ``database`` (``what``:
    whose result it is, for the error); raises ``ResultNotKept`` saying why not."""
    row = conn.execute("SELECT data, path, dropped FROM blobs WHERE id = ?", (blob,)).fetchone()
    if row is None:
        raise ResultNotKept(f"{what} is not in the run store {database} (its blob {blob} is gone)")
    data, path, dropped = row
    if dropped is not None:
        raise ResultNotKept(f"{what} was dropped to keep the run store {database} within its size limit "
                            "(its records are still there; run it again to get it)")
    try:
        if data is None:  # into memory of its own: arrays are rebuilt on it, writable
            with open(os.path.join(database + "-results", path), "rb") as f:
                data = bytearray(os.fstat(f.fileno()).st_size)
                f.readinto(data)
        return Pickled.from_bytes(data).loads()
    except Exception as exc:  # a file removed, a class whose module is gone
        raise ResultNotKept(f"{what} cannot be read from the run store {database}: "
                            f"{type(exc).__name__}: {exc}") from exc
