"""The user's own code that a task reaches: what travels with it and what its results depend on.

From a task's function (or its class), the walk follows the functions and classes it names
(in its body, its nested functions and lambdas, and its closure) a few levels deep, and
stops at library code: the standard library and installed distributions (``installed.py``;
nbtasks itself is one, even as an editable checkout). Local modules it names are reached
too, but not entered. Three readers use it: the store's unit keys (editing a helper counts
as a change), the code origins shipped for tracebacks on engines (``sources.py``), and
what travels with a task (``travel.py``).
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any, Iterator

from .installed import is_installed, is_installed_file

__all__ = ["is_users", "is_library_file", "reach", "codes_of", "named"]

DEPTH = 3


def is_library_file(path: str) -> bool:
    """A file of the standard library or of an installed distribution (every engine has its own)."""
    return is_installed_file(path)


def is_users(obj: Any) -> bool:
    """Code the user wrote (a cell, a script, a local module), not a library's."""
    module = obj if inspect.ismodule(obj) else sys.modules.get(getattr(obj, "__module__", None) or "")
    if module is None or getattr(module, "__file__", None) is None:
        return True  # __main__ in a kernel, or made at runtime
    return not is_installed(module)


def codes_of(code: types.CodeType) -> Iterator[types.CodeType]:
    """A code object and every code object nested in it (functions, lambdas, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from codes_of(const)


def named(fn: types.FunctionType) -> Iterator[Any]:
    """What a function's code names in its globals, and what its closure holds."""
    scope = fn.__globals__
    for code in codes_of(fn.__code__):
        for name in code.co_names:
            if name in scope:
                yield scope[name]
    for cell in fn.__closure__ or ():
        try:
            yield cell.cell_contents
        except ValueError:  # an empty cell
            pass


def reach(root: Any, seen: set[int] | None = None, depth: int = DEPTH) -> Iterator[Any]:
    """``root`` and the user's functions, classes and modules it reaches, depth first.

    Classes are entered through their functions; modules are yielded, not entered.
    ``seen`` (ids) lets several walks share their visits.
    """
    seen = set() if seen is None else seen

    def visit(obj: Any, level: int) -> Iterator[Any]:
        if id(obj) in seen or level > depth:
            return
        seen.add(id(obj))
        yield obj
        if inspect.isclass(obj):
            for value in vars(obj).values():
                if inspect.isfunction(value):
                    yield from visit(value, level + 1)
            return
        if not inspect.isfunction(obj):
            return
        for value in named(obj):
            if (inspect.isfunction(value) or inspect.isclass(value)) and is_users(value):
                yield from visit(value, level + 1)
            elif inspect.ismodule(value) and getattr(value, "__file__", None) and is_users(value):
                if id(value) not in seen:
                    seen.add(id(value))
                    yield value

    yield from visit(root, 0)
