"""Serialization for engines (cloudpickle), with errors that name the culprit.

cloudpickle sends lambdas, closures and classes defined in notebook cells by
value. When something cannot be pickled, its own message rarely says where
the object hides; ``find_unpicklable`` walks the object to name it.
"""

from __future__ import annotations

import pickle
import types
from typing import Any

import cloudpickle

from .travel import mark_local_modules

__all__ = ["dumps", "loads", "find_unpicklable", "UnpicklableError"]

loads = pickle.loads


class UnpicklableError(pickle.PicklingError, TypeError):
    """Something that must travel to an engine cannot be pickled."""


def _picklable(obj: Any) -> bool:
    try:
        cloudpickle.dumps(obj)
        return True
    except Exception:
        return False


def _parts(obj: Any) -> list[tuple[str, Any]]:
    """Named pieces of ``obj`` that pickling it would also pickle."""
    if isinstance(obj, types.FunctionType):
        parts = []
        code = obj.__code__
        for name in code.co_names:
            if name in obj.__globals__:
                parts.append((f"global {name!r} of {obj.__qualname__}", obj.__globals__[name]))
        for name, cell in zip(code.co_freevars, obj.__closure__ or ()):
            try:
                parts.append((f"variable {name!r} captured by {obj.__qualname__}", cell.cell_contents))
            except ValueError:
                pass
        parts += [(f"default {i} of {obj.__qualname__}", d) for i, d in enumerate(obj.__defaults__ or ())]
        return parts
    if isinstance(obj, types.MethodType):
        return [("its instance", obj.__self__), ("its function", obj.__func__)]
    if isinstance(obj, dict):
        return [(f"[{k!r}]", v) for k, v in obj.items()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [(f"[{i}]", v) for i, v in enumerate(obj)]
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict):
        return [(f".{k}", v) for k, v in state.items()]
    return []


def find_unpicklable(obj: Any, depth: int = 6) -> tuple[str, Any]:
    """A path to the innermost part of ``obj`` that cannot be pickled, and that part."""
    path, current = [], obj
    seen = {id(obj)}
    for _ in range(depth):
        for label, part in _parts(current):
            if id(part) in seen or _picklable(part):
                continue
            seen.add(id(part))
            path.append(label)
            current = part
            break
        else:
            break
    return " → ".join(path), current


def dumps(obj: Any, what: str) -> bytes:
    """Pickle ``obj`` for an engine; on failure name ``what`` and the culprit."""
    mark_local_modules()  # local modules' code goes by value (travel.py)
    try:
        return cloudpickle.dumps(obj)
    except Exception as exc:
        path, culprit = find_unpicklable(obj)
        where = f" ({path})" if path else ""
        raise UnpicklableError(
            f"{what} cannot be sent to engines: {type(culprit).__name__} object{where} "
            f"cannot be pickled: {exc}") from exc
