"""Unit keys: what makes two units "the same work" across runs and kernels.

A request (a leaf task over a list of inputs) is keyed by the task's code,
its parameters and the pickled inputs; a unit's key is that plus its
position. Code is hashed from its bytecode, constants and names (fast, and
the same for the same cell in any kernel: file names and line numbers do
not enter), together with the functions, classes and local modules of the
user's it calls, so editing a helper counts as a change.
"""

from __future__ import annotations

import hashlib
import inspect
import pickle
import sys
import types
from typing import Any, Mapping

from ..core.serialize import split
from ..core.usercode import is_users, reach

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


def _feed_code(h: Any, root: Any, seen: set[int]) -> None:
    """Hash ``root``'s code and that of the user's functions, classes and modules it reaches;
    a function or class of a local module brings that module's file (a constant it reads
    there may have changed)."""
    for obj in reach(root, seen):
        if inspect.ismodule(obj):
            _feed_file(h, obj.__file__)
        else:
            h.update(getattr(obj, "__qualname__", type(obj).__qualname__).encode())
            h.update(_source(obj))
            module = sys.modules.get(getattr(obj, "__module__", None) or "")
            file = getattr(module, "__file__", None)
            if file and module.__name__ != "__main__" and id(module) not in seen and is_users(module):
                seen.add(id(module))
                _feed_file(h, file)


def _feed_file(h: Any, path: str) -> None:
    """A local module the code uses, as it is on disk now (``cluster.sync`` ships that)."""
    try:
        with open(path, "rb") as f:
            h.update(f.read())
    except OSError:
        h.update(path.encode())


def _settings(task: Any) -> bytes:
    """What an instance carries besides code (settings that change results)."""
    out = []
    for name, value in sorted(vars(task).items()):
        if callable(value) or name in ("retries", "timeout", "max_engine_failures", "max_concurrent", "rate"):
            continue
        out.append(f"{name}={value!r}" if isinstance(value, (int, float, str, bool, type(None), tuple))
                   else f"{name}:{type(value).__qualname__}")
    return "\n".join(out).encode()


def task_digest(task: Any) -> bytes:
    """The identity of a task's code and settings (not its name's position in a tree)."""
    h = _hasher()
    h.update(type(task).__qualname__.encode())
    fn = getattr(task, "fn", None)
    seen: set[int] = set()
    if fn is not None:
        _feed_code(h, fn, seen)
    if type(task).work is not getattr(type(task).__mro__[-2], "work", None) or fn is None:
        _feed_code(h, type(task), seen)
    h.update(_settings(task))
    for sub in task.subtasks():
        h.update(task_digest(sub))
    return h.digest()


def _pickled_digest(h: Any, value: Any) -> None:
    # big buffers (arrays) are hashed where they are, not first copied into the pickle
    pickled = split(value, pickle.dumps)
    h.update(pickled.head)
    for buffer in pickled.buffers:
        h.update(buffer.nbytes.to_bytes(8, "little"))
        h.update(buffer)


def leaf_digest(task: Any, mode: str, params: Mapping[str, Any], extra: tuple) -> bytes:
    """One leaf task as the engines run it: code, mode (map/reduce/call), parameters."""
    h = _hasher()
    h.update(task_digest(task))
    h.update(mode.encode())
    _pickled_digest(h, sorted(params.items()))
    if extra:
        combiner, cparams = extra
        if combiner is not None:
            h.update(task_digest(combiner))
            _pickled_digest(h, sorted((cparams or {}).items()))
    return h.digest()


def request_key(leaf: bytes, inputs: list) -> str | None:
    """The key of a leaf's request over ``inputs``; None when they cannot be pickled."""
    h = _hasher()
    h.update(leaf)
    try:
        _pickled_digest(h, inputs)
    except Exception:
        try:
            import cloudpickle

            h.update(cloudpickle.dumps(inputs))
        except Exception:
            return None
    return h.hexdigest()
