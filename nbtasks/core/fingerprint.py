"""Digests of values for the run store's keys, with files counted by what they hold.

A value is "the same" as an earlier one when its pickle is. A ``pathlib`` path is
the exception: a unit given ``Path("data/day1.csv")`` depends on what the file
holds, so a path enters a digest as its name plus a fingerprint of its content
(size and a hash of the bytes; a directory: every entry's name and fingerprint).
The hash of a file is computed once per version of it (device, inode, size,
modification time), so rerunning over unchanged files reads them once per process.

    digest(value)        one value (parameters, a shared value, a whole input list)
    unit_digests(list)   8 bytes per item: a unit's own input, for per-unit reuse (an int
                         is itself; 2**64 digests make a collision among a store's
                         units of one task out of reach)
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import sys
import threading
from array import array
from pathlib import PurePath
from typing import Any, Iterable, Iterator

from .serialize import split

__all__ = ["digest", "feed", "unit_digests", "unit_digest_pieces", "unit_digests_if_changeable",
           "content_of", "UNIT_DIGEST"]

UNIT_DIGEST = 8  # bytes per unit: collisions among a store's units are out of reach (2**64)
_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})
_INT_ONLY = frozenset({int})
_READ = 1 << 20
_hashes: dict[tuple, bytes] = {}  # (path, dev, ino, size, mtime_ns) -> content hash
_hashes_lock = threading.Lock()


def content_of(path: "str | os.PathLike[str]") -> tuple:
    """What a path holds, as a small tuple: ("file", size, hash), ("dir", entries) or ("missing",)."""
    try:
        st = os.stat(path)
    except OSError:
        return ("missing",)
    if os.path.isdir(path):
        try:
            names = sorted(os.listdir(path))
        except OSError as exc:
            return ("unreadable", type(exc).__name__)
        return ("dir", tuple((name, content_of(os.path.join(path, name))) for name in names))
    version = (os.fspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _hashes_lock:
        known = _hashes.get(version)
    if known is None:
        h = hashlib.blake2b(digest_size=16)
        try:
            with open(path, "rb") as f:
                while block := f.read(_READ):
                    h.update(block)
        except OSError as exc:
            return ("unreadable", type(exc).__name__)
        known = h.digest()
        with _hashes_lock:
            _hashes[version] = known
    return ("file", st.st_size, known)


class _KeyPickler(pickle.Pickler):
    """A pickler for keys only: paths become their name and content."""

    def __init__(self, file: Any, protocol: int, buffer_callback: Any = None) -> None:
        super().__init__(file, protocol=protocol, buffer_callback=buffer_callback)
        self.paths = 0

    def reducer_override(self, obj: Any) -> Any:  # not called for ints, floats, str, lists...
        if isinstance(obj, PurePath):
            self.paths += 1
            return (_path_content, (type(obj).__name__, str(obj), content_of(obj)))
        return NotImplemented


def _path_content(*args: Any) -> None:
    """Stands for a path in a key's pickle (never called)."""


class _KeyDumps:
    """``pickle.dumps`` for ``serialize.split`` with ``_KeyPickler``, counting the paths."""

    paths = 0

    def __call__(self, obj: Any, protocol: int, buffer_callback: Any) -> bytes:
        out = io.BytesIO()
        pickler = _KeyPickler(out, protocol, buffer_callback)
        pickler.dump(obj)
        self.paths = pickler.paths
        return out.getvalue()


def feed(h: Any, value: Any) -> int:
    """Feed ``value``'s key pickle to the hash ``h``; big buffers (arrays) are hashed where
    they are, as ``serialize.split`` leaves them out. Returns how many paths it holds."""
    dumps = _KeyDumps()
    try:
        pickled = split(value, dumps)
    except Exception:
        import cloudpickle  # lambdas and cell-defined classes: by value, paths by name only

        h.update(cloudpickle.dumps(value))
        return 0
    h.update(pickled.head)
    for buffer in pickled.buffers:
        h.update(buffer.nbytes.to_bytes(8, "little"))
        h.update(buffer)
    return dumps.paths


def digest(value: Any, size: int = 16) -> bytes:
    """The digest of ``value`` as keys see it (paths by content)."""
    h = hashlib.blake2b(digest_size=size)
    feed(h, value)
    return h.digest()


def unit_digests(items: Iterable[Any]) -> bytes:
    """``UNIT_DIGEST`` bytes per item, in order: each unit's input on its own.

    An int is its own 8 bytes (a list of ints, or a range, takes one C call); other plain
    values (numbers, strings, bytes) are pickled and hashed (about 0.6 microseconds an
    item); items that may hold paths go through ``digest``.
    """
    if not isinstance(items, (list, tuple, range)):
        items = list(items)
    if isinstance(items, range) or _INT_ONLY.issuperset(map(type, items)):
        try:
            return array("q", items).tobytes()
        except OverflowError:
            pass
    return b"".join([_unit_digest(item) for item in items])


def unit_digest_pieces(items: Any, per_piece: int = 8192) -> Iterator[bytes]:
    """``unit_digests(items)`` a piece at a time (64 KiB each by default): a million units'
    digests never sit in one 8 MB allocation, which glibc keeps in the process after it is
    freed (measured: +10 MB of the client's RSS after a million-unit run)."""
    if not isinstance(items, (list, tuple, range)):
        items = list(items)
    for start in range(0, len(items), per_piece):
        yield unit_digests(items[start:start + per_piece])


def unit_digests_if_changeable(items: Any) -> bytes | None:
    """``unit_digests(items)`` now, unless every item is a plain value that cannot change
    (then None: they may be taken later, off the caller's path). A list of dicts can be
    changed in place and a file edited after the run: their digests must be of the
    inputs as the units got them."""
    if isinstance(items, range) or _PLAIN.issuperset(map(type, items)):
        return None
    return unit_digests(items)


def _unit_digest(item: Any) -> bytes:
    kind = type(item)
    if kind is int and -(1 << 63) <= item < (1 << 63):
        return item.to_bytes(UNIT_DIGEST, sys.byteorder, signed=True)
    if kind in _PLAIN:
        return hashlib.blake2b(pickle.dumps(item, 5), digest_size=UNIT_DIGEST).digest()
    return digest(item, UNIT_DIGEST)
