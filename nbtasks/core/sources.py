"""Where a task's code came from, so tracebacks made on engines show the user's lines.

cloudpickle rebuilds the functions of notebook cells, of a script's ``__main__`` and of
modules it pickles by value as new code objects on the engine. Their file name need not
survive the trip (cloudpickle 3.1.3 names them all ``"<dynamic-code>"``), and the file
need not exist there: a cell lives only in the kernel's ``linecache``, a remote host lacks
the client's files. So a task travels with its :class:`CodeOrigins`: the file of each of
its code objects, keyed by what pickling keeps (name, first line, bytecode), and the lines
of those files. The engine maps each traceback frame back through them; nothing here
depends on how cloudpickle names what it rebuilds.
"""

from __future__ import annotations

import hashlib
import inspect
import linecache
import os
import traceback
import types
from dataclasses import dataclass, field
from typing import Any

from .usercode import codes_of, is_library_file, reach

__all__ = ["CodeOrigins", "code_origins"]

def _key(code: types.CodeType) -> tuple[str, int, bytes]:
    return code.co_name, code.co_firstlineno, hashlib.blake2b(code.co_code, digest_size=8).digest()


@dataclass
class CodeOrigins:
    """The original file of each code object of a task, and the lines of that code.

    Only the lines the task's code spans travel, not whole files: the task's blob goes
    with every chunk."""

    files: dict[tuple[str, int, bytes], str] = field(default_factory=dict)
    lines: dict[str, dict[int, str]] = field(default_factory=dict)  # file -> line number -> text

    def file_of(self, code: types.CodeType) -> str | None:
        return self.files.get(_key(code))

    def install(self) -> None:
        """Give ``linecache`` the lines of the files this process cannot read itself."""
        for name, known in self.lines.items():
            if not os.path.exists(name):
                lines = [known.get(n, "\n") for n in range(1, max(known) + 1)]
                linecache.cache[name] = (sum(map(len, lines)), None, lines, name)  # mtime None: kept

    def frames(self, tb: types.TracebackType | None) -> list[traceback.FrameSummary]:
        """The frames of ``tb`` under their original file names (their lines read from there)."""
        walked = list(traceback.walk_tb(tb))
        stack = traceback.StackSummary.extract(iter(walked), lookup_lines=False)
        for summary, (frame, _) in zip(stack, walked):
            origin = self.file_of(frame.f_code)
            if origin is not None:
                summary.filename = origin
        return list(stack)


def _objects(roots: tuple[Any, ...]) -> list[Any]:
    """The user's functions and classes the roots reach, local modules' members included
    (a module pickled by value travels whole)."""
    seen: set[int] = set()
    found = []
    for root in roots:
        for obj in reach(root, seen):
            if not inspect.ismodule(obj):
                found.append(obj)
                continue
            for member in vars(obj).values():
                if (inspect.isfunction(member) or inspect.isclass(member)) \
                        and getattr(member, "__module__", None) == obj.__name__:
                    found += reach(member, seen, depth=1)
    return found


def _codes(obj: Any) -> list[types.CodeType]:
    if inspect.isclass(obj):
        functions = [v for v in vars(obj).values() if inspect.isfunction(v)]
    else:
        functions = [obj] if inspect.isfunction(obj) else []
    return [c for f in functions for c in codes_of(f.__code__)]


def code_origins(*roots: Any) -> CodeOrigins:
    """The origins of the code of ``roots`` (a task's function, its class, a combiner...)."""
    origins = CodeOrigins()
    for obj in _objects(roots):
        for code in _codes(obj):
            name = code.co_filename
            if is_library_file(name):
                continue  # engines have their own copy
            origins.files[_key(code)] = name
            lines = linecache.getlines(name)  # a cell's from the cache, a file's from disk (once)
            numbers = [n for _, _, n in code.co_lines() if n] or [code.co_firstlineno]
            for n in range(code.co_firstlineno, min(max(numbers), len(lines)) + 1):
                origins.lines.setdefault(name, {})[n] = lines[n - 1]
    return origins
