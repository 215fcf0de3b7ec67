"""Giving freed memory back to the system once a run is over.

A run of a million tiny units allocates and frees a few hundred MB on several threads
(the dispatcher's, ipyparallel's, the store's). glibc keeps what those threads freed in
their malloc arenas, so the kernel's RSS stays at the run's peak long after its results
are gone, run after run. ``malloc_trim`` hands the free pages back (dask's workers do the
same); elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any

__all__ = ["give_back_free_memory"]

_trim: Any = None


def _load() -> Any:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def give_back_free_memory() -> bool:
    """Return free heap pages to the system (~1 ms); True if it could."""
    global _trim
    if _trim is None:
        _trim = _load()
    if not _trim:
        return False
    _trim(0)
    return True
