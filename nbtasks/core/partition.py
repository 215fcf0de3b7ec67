"""Key partitioning for map-reduce that every process agrees on.

Python's ``hash`` of a string is salted per process, so the same key would
land in different partitions on different engines; this hash is not.
"""

from __future__ import annotations

import pickle
import struct
import zlib
from typing import Any

__all__ = ["stable_hash", "partition_of"]


def _canonical(key: Any) -> bytes:
    if isinstance(key, str):
        return b"s" + key.encode("utf-8", "surrogatepass")
    if key is None:
        return b"n"
    if isinstance(key, int):  # bools too: True == 1, so they must hash alike
        return b"i" + str(int(key)).encode()
    if isinstance(key, float):
        return b"i" + str(int(key)).encode() if key.is_integer() else b"f" + struct.pack("<d", key)
    if isinstance(key, (bytes, bytearray)):
        return b"b" + bytes(key)
    if isinstance(key, tuple):
        parts = [_canonical(k) for k in key]
        return b"t" + b"".join(struct.pack("<I", len(p)) + p for p in parts)
    if isinstance(key, frozenset):
        parts = sorted(_canonical(k) for k in key)
        return b"z" + b"".join(struct.pack("<I", len(p)) + p for p in parts)
    # other picklable keys: pickle is deterministic for plain data classes and enums
    return b"p" + pickle.dumps(key, protocol=4)


def stable_hash(key: Any) -> int:
    """A 32-bit hash of ``key`` that is the same in every process (equal keys hash equal)."""
    return zlib.crc32(_canonical(key))


def partition_of(key: Any, partitions: int) -> int:
    return stable_hash(key) % partitions
