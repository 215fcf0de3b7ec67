"""Keys: what makes two units "the same work" across runs and kernels.

A *leaf* is a task as the engines run it: its code, parameters and the shared
values (``leaf_digest``; with a part of it per function, parameter and shared
value, so a later run can say what changed). A unit is the same when
its leaf is and so is its own input (``fingerprint.unit_digests``); a whole
request (a leaf over a list of inputs) has a key of its own too
(``request_key``), the quick way to find a rerun of the very same list.
Code is hashed from its bytecode, constants and names (fast, and the same for
the same cell in any kernel: file names and line numbers do not enter),
together with the functions, classes and local modules of the user's it
calls, so editing a helper counts as a change. Paths count by content
(``core/fingerprint.py``).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
import types
from typing import Any, Mapping

from ..core.fingerprint import digest, feed
from ..core.usercode import is_users, named, reach

__all__ = ["task_digest", "leaf_digest", "request_key"]


def _hasher() -> "hashlib._Hash":
    return hashlib.blake2b(digest_size=16)


def _code_bytes(code: types.CodeType) -> bytes:
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    for const in code.co_consts:
        parts.append(_code_bytes(const) if isinstance(const, types.CodeType) else repr(const).encode())
    return b"\0".join(parts)


def _source(obj: Any) -> bytes:
    code = getattr(obj, "__code__", None)
    if code is not None:
        return _code_bytes(code)
    if inspect.isclass(obj):
        return repr(sorted(vars(obj))).encode()  # its functions are fed one by one
    return repr(obj).encode()


class _Pieces:
    """Feeds a hash and, when ``named`` is asked for, keeps each piece's own digest under
    a name people know (``function smooth``, ``class Model``, ``module helpers.py``) and
    the functions and classes the walk reached (``objects``, for ``_callers``)."""

    def __init__(self, h: Any, named: dict[str, str] | None = None, objects: list | None = None) -> None:
        self.h, self.named, self.objects = h, named, objects

    def feed(self, label: str, data: bytes, obj: Any = None) -> None:
        self.h.update(data)
        if self.named is not None:
            self.named[label] = hashlib.blake2b(data, digest_size=8).hexdigest()
            if obj is not None and self.objects is not None:
                self.objects.append(obj)


def _feed_code(pieces: _Pieces, root: Any, seen: set[int]) -> None:
    """Hash ``root``'s code and that of the user's functions, classes and modules it reaches;
    a function or class of a local module brings that module's file (a constant it reads
    there may have changed)."""
    for obj in reach(root, seen):
        if inspect.ismodule(obj):
            _feed_file(pieces, obj.__file__)
        else:
            name = getattr(obj, "__qualname__", type(obj).__qualname__)
            pieces.feed(f"{'class' if inspect.isclass(obj) else 'function'} {name}", name.encode() + _source(obj),
                        obj)
            module = sys.modules.get(getattr(obj, "__module__", None) or "")
            file = getattr(module, "__file__", None)
            if file and module.__name__ != "__main__" and id(module) not in seen and is_users(module):
                seen.add(id(module))
                _feed_file(pieces, file)


def _feed_file(pieces: _Pieces, path: str) -> None:
    """A local module the code uses, as it is on disk now (``cluster.sync`` ships that)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        data = path.encode()
    pieces.feed(f"module {os.path.basename(path)}", data)


def _settings(task: Any) -> bytes:
    """What an instance carries besides code (settings that change results)."""
    out = []
    for name, value in sorted(vars(task).items()):
        if callable(value) or name in ("retries", "timeout", "max_engine_failures", "max_concurrent", "rate"):
            continue
        out.append(f"{name}={value!r}" if isinstance(value, (int, float, str, bool, type(None), tuple))
                   else f"{name}:{type(value).__qualname__}")
    return "\n".join(out).encode()


def task_digest(task: Any, code: dict[str, str] | None = None, objects: list | None = None) -> bytes:
    """The identity of a task's code and settings (not its name's position in a tree);
    ``code`` gets a digest per function, class and module it reaches, ``objects`` the
    functions and classes themselves."""
    h = _hasher()
    pieces = _Pieces(h, code, objects)
    h.update(type(task).__qualname__.encode())
    fn = getattr(task, "fn", None)
    seen: set[int] = set()
    if fn is not None:
        _feed_code(pieces, fn, seen)
    if type(task).work is not getattr(type(task).__mro__[-2], "work", None) or fn is None:
        _feed_code(pieces, type(task), seen)
    pieces.feed("settings", _settings(task))
    for sub in task.subtasks():
        h.update(task_digest(sub, code, objects))
    return h.digest()


def _callers(objects: list) -> dict[str, str]:
    """Which reached function names each other one: ``{"smooth": "simulate"}``."""
    names = {id(obj): obj.__qualname__ for obj in objects}
    out: dict[str, str] = {}
    for obj in objects:
        if inspect.isfunction(obj):
            for value in named(obj):
                name = names.get(id(value))
                if name and name != obj.__qualname__:
                    out.setdefault(name, obj.__qualname__)
    return out


def leaf_digest(task: Any, mode: str, params: Mapping[str, Any], extra: tuple,
                parts: dict[str, Any] | None = None) -> bytes:
    """One leaf task as the engines run it: code, mode (map/reduce/call), parameters.

    ``parts`` gets what it is made of, one digest per piece a person can name: ``code``
    (function, class or module -> digest), ``calls`` (function -> a function that calls
    it), ``params`` (name -> digest), ``mode``. The store keeps them to explain a later run."""
    code: dict[str, str] | None = {} if parts is not None else None
    objects: list = []
    h = _hasher()
    h.update(task_digest(task, code, objects))
    h.update(mode.encode())
    feed(h, sorted(params.items()))
    if extra:
        combiner, cparams = extra
        if combiner is not None:
            h.update(task_digest(combiner, code, objects))
            feed(h, sorted((cparams or {}).items()))
            params = {**(cparams or {}), **params}
    if parts is not None:
        parts.update(code=code, calls=_callers(objects), mode=mode,
                     params={name: digest(value, 8).hex() for name, value in params.items()})
    return h.digest()


def request_key(leaf: bytes, inputs: Any) -> str | None:
    """The key of a leaf's request over the whole list ``inputs``; None when they cannot
    be pickled."""
    h = _hasher()
    h.update(leaf)
    try:
        feed(h, inputs)
    except Exception:
        return None
    return h.hexdigest()
