"""Source lines of code defined in notebook cells, for tracebacks made on engines.

A function defined in a cell has a file name like ``/tmp/ipykernel_1234/567.py``
that exists only in the kernel's ``linecache``. Shipped with the task, those
lines let an engine's traceback show the failing line, not just its number.
"""

from __future__ import annotations

import linecache
import os
import types
from typing import Any

__all__ = ["cell_sources", "install_sources"]


def _codes(obj: Any, seen: set[int], depth: int = 0) -> list[types.CodeType]:
    """Code objects of a function and of the functions and classes it names."""
    if id(obj) in seen or depth > 2:
        return []
    seen.add(id(obj))
    if isinstance(obj, type):
        return [c for value in vars(obj).values() if isinstance(value, types.FunctionType)
                for c in _codes(value, seen, depth + 1)]
    code = getattr(obj, "__code__", None)
    if code is None:
        return []
    found = [code] + [c for c in code.co_consts if isinstance(c, types.CodeType)]
    scope = getattr(obj, "__globals__", {})
    for name in code.co_names:
        value = scope.get(name)
        if isinstance(value, (types.FunctionType, type)):
            found += _codes(value, seen, depth + 1)
    return found


def cell_sources(task: Any) -> dict[str, tuple]:
    """``linecache`` entries of the task's code that exist in no file (notebook cells)."""
    seen: set[int] = set()
    codes = _codes(getattr(task, "fn", None), seen) + _codes(type(task), seen)
    out = {}
    for code in codes:
        name = code.co_filename
        if name not in out and name in linecache.cache and not os.path.exists(name):
            size, _, lines, fullname = linecache.cache[name]
            out[name] = (size, None, list(lines), fullname)  # mtime None: checkcache keeps it
    return out


def install_sources(sources: dict[str, tuple]) -> None:
    for name, entry in sources.items():
        linecache.cache.setdefault(name, entry)
