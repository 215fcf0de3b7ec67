"""What travels with a task by value, and what engines must have installed.

    client                                                   engine
    local module (helpers.py, a package folder) ──by value──> rebuilt, and put in sys.modules
    installed distribution (numpy 2.1)       ──by reference─> imported there, its version
                                                              checked first (cluster/requirements.py)

Local modules (``installed.py`` tells them from installed ones) are registered with
cloudpickle to be pickled by value (``mark_local_modules``, called before anything is
pickled for engines). So functions and classes from a ``helpers.py`` beside the notebook or
script, or from a local package and its submodules, reach engines that cannot read the
client's files: as a task's code, as mapper/reducer/combiner code, and as instances of
local classes in inputs, parameters and shared values. Each submit pickles the code as it
is in the client now, so an edited and reloaded module goes out in its new version.
Exceptions: modules under a folder sent with ``cluster.sync`` (engines import those, from
the files synced) and compiled extension modules (a ``.so`` cannot go by value).

``survey`` finds what a task reaches: the local functions, classes and modules it brings
(which ``arrivals.py`` puts in the engine's ``sys.modules``) and the installed
distributions it needs, with the client's versions (which ``cluster/requirements.py``
checks on each engine).
"""

from __future__ import annotations

import dis
import functools
import importlib.util
import inspect
import itertools
import os
import sys
import threading
import types
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterable

import cloudpickle

from .arrivals import arrived
from .installed import Kind, distribution_for_import, origin_of
from .usercode import codes_of, named, reach

__all__ = ["mark_local_modules", "imported_on_engines", "survey", "Survey"]

#: distributions every engine is checked for by other means (the cluster's version check)
_CHECKED_ELSEWHERE = frozenset({"nbtasks"})
_VALUES_LOOKED_AT = 8  # elements of a container value whose classes are looked at


# -- the client: what goes by value ------------------------------------------------------
_lock = threading.Lock()
_modules_seen: list[Any] = [None]  # sys.modules' fingerprint at the last look
_classified: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # name -> module looked at
_engine_roots: list[str] = []  # folders sent with cluster.sync: engines import what is there


def _norm(path: str) -> str:
    return os.path.normcase(os.path.abspath(path))


def _imported_on_engines(module: types.ModuleType) -> bool:
    file = getattr(module, "__file__", None)
    if not file or not _engine_roots:
        return False
    file = _norm(file)
    return any(file == root or file.startswith(root + os.sep) for root in _engine_roots)


def _goes_by_value(module: Any) -> bool:
    """A local module of Python source, not synced: its code travels in the pickle."""
    if not isinstance(module, types.ModuleType) or module.__name__ in ("__main__", "__mp_main__"):
        return False  # cloudpickle sends a script's or a notebook's __main__ by value anyway
    if arrived(module):
        return False  # it arrived here by value: what goes back refers to the sender's
    file = getattr(module, "__file__", None)
    if file is not None and not file.endswith(".py"):
        return False  # an extension module, or bytecode only: needs cluster.sync
    return origin_of(module).kind is Kind.LOCAL and not _imported_on_engines(module)


def _fingerprint() -> tuple[int, int]:
    """Changes when a module is imported (or replaced) at the end of ``sys.modules``."""
    try:
        last = next(reversed(sys.modules))
    except (StopIteration, RuntimeError):  # empty, or changed under our feet
        return (len(sys.modules), -1)
    return (len(sys.modules), id(sys.modules.get(last)))


def mark_local_modules() -> None:
    """Have cloudpickle pickle every local module imported so far by value.

    Cheap when nothing was imported since the last call (a new import is the last entry
    of ``sys.modules``), so every pickling for engines can call it."""
    if _modules_seen[0] == _fingerprint():
        return
    with _lock:
        seen = _fingerprint()
        modules = sys.modules.copy()
        _modules_seen[0] = seen
        for name, module in modules.items():
            if _classified.get(name) is module:
                continue
            try:
                _classified[name] = module
            except TypeError:  # not a module (some libraries put other objects there)
                continue
            if _goes_by_value(module) and sys.modules.get(module.__name__) is module:
                cloudpickle.register_pickle_by_value(module)


def imported_on_engines(path: str | os.PathLike) -> None:
    """Modules under ``path`` (a file or folder sent with ``cluster.sync``) are imported by
    engines from what was synced, so they go by reference from now on."""
    root = _norm(os.fspath(path))
    with _lock:
        if root in _engine_roots:
            return
        _engine_roots.append(root)
        for name in cloudpickle.list_registry_pickle_by_value():
            module = sys.modules.get(name)
            if module is not None and _imported_on_engines(module):
                cloudpickle.unregister_pickle_by_value(module)


# -- the client: what a task reaches -------------------------------------------------------
@dataclass
class Survey:
    """The local code a task brings and the installed distributions it needs."""

    #: local module -> its functions and classes the task reaches, by their top-level name
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: local modules the task's code names (a global, an ``import`` in a body): they go whole
    modules: dict[str, types.ModuleType] = field(default_factory=dict)
    #: installed distribution -> (the client's version, its import names the task uses)
    distributions: dict[str, tuple[str, set[str]]] = field(default_factory=dict)

    def add_library(self, value: Any) -> None:
        """The distribution of a module, function or class, or of a value's class; a local
        function or class (or a value's local class) is kept with the local code."""
        if inspect.ismodule(value):
            holder, module = None, value
        else:
            holder = value if inspect.isclass(value) or inspect.isroutine(value) else type(value)
            module = sys.modules.get(getattr(holder, "__module__", None) or "")
        if module is None:
            return
        origin = origin_of(module)
        if origin.kind is Kind.INSTALLED and origin.distribution and origin.distribution not in _CHECKED_ELSEWHERE:
            _, names = self.distributions.setdefault(origin.distribution, (origin.version, set()))
            names.add(module.__name__.partition(".")[0])
        elif origin.kind is Kind.LOCAL and holder is not None:
            self.add_local(holder)

    def add_local(self, obj: Any) -> None:
        """A function or class of a local module, kept by its name in that module."""
        module = sys.modules.get(getattr(obj, "__module__", None) or "")
        qualname = getattr(obj, "__qualname__", "")
        if module is None or not _goes_by_value(module) or "." in qualname \
                or getattr(module, qualname, None) is not obj:
            return
        members = self.members.get(module.__name__)
        if members is None:
            members = self.members[module.__name__] = {}
            if hasattr(module, "__path__"):
                members["__path__"] = []  # a package: its submodules can be imported
        members[qualname] = obj

    def add_import(self, name: str) -> None:
        """What an ``import name`` in a task's body loads."""
        module = sys.modules.get(name)
        if module is None:
            origin = distribution_for_import(name)
            if origin is not None and origin.distribution not in _CHECKED_ELSEWHERE:
                _, names = self.distributions.setdefault(origin.distribution, (origin.version, set()))
                names.add(name.partition(".")[0])
        elif _goes_by_value(module):
            self.modules[name] = module
        else:
            self.add_library(module)

    def needs(self) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
        """(distribution, the client's version, its import names), sorted: a stable key."""
        return tuple(sorted((name, version, tuple(sorted(tops)))
                            for name, (version, tops) in self.distributions.items()))


def _imports(fn: types.FunctionType) -> Iterable[str]:
    """The absolute names a function's body imports (``from . import x`` resolved against
    its package)."""
    package = fn.__globals__.get("__package__") or ""
    for level, name in _imported_names(fn.__code__):
        if level == 0:
            yield name
        elif package:
            try:
                yield importlib.util.resolve_name("." * level + name, package)
            except ImportError:  # beyond the top-level package
                pass


@functools.lru_cache(maxsize=4096)
def _imported_names(code: types.CodeType) -> tuple[tuple[int, str], ...]:
    """(level, name) of each import in ``code`` and the code nested in it. Bytecode does not
    change, so each is read once: reading it is most of what a submit costs the dispatcher."""
    found = []
    for inner in codes_of(code):
        consts: list[Any] = [None, None]
        for instruction in dis.get_instructions(inner):
            if instruction.opname == "LOAD_CONST":
                consts = [consts[1], instruction.argval]
            elif instruction.opname == "IMPORT_NAME" and isinstance(instruction.argval, str):
                level = consts[0] if isinstance(consts[0], int) else 0  # LOAD_CONST level, fromlist
                found.append((level, instruction.argval))
    return tuple(found)


def _values(values: Iterable[Any]) -> Iterable[Any]:
    """The values, and a few elements of those that are containers (one level)."""
    for value in values:
        yield value
        if isinstance(value, dict):
            yield from itertools.islice(value.values(), _VALUES_LOOKED_AT)
        elif isinstance(value, (list, tuple, set, frozenset)):
            yield from itertools.islice(value, _VALUES_LOOKED_AT)


def survey(roots: Iterable[Any], values: Iterable[Any] = ()) -> Survey:
    """What ``roots`` (a task's function, its class, a combiner's...) reach, and what the
    classes of ``values`` (parameters, a first input) come from."""
    found = Survey()
    seen: set[int] = set()
    for root in roots:
        if root is None:
            continue
        for obj in reach(root, seen):
            if inspect.ismodule(obj):
                if _goes_by_value(obj):
                    found.modules[obj.__name__] = obj
                continue
            found.add_local(obj)
            if inspect.isfunction(obj):
                for value in named(obj):
                    found.add_library(value)
                for name in _imports(obj):
                    found.add_import(name)
            elif inspect.isclass(obj):
                for base in obj.__mro__[1:]:
                    found.add_library(base)
    for value in _values(values):
        found.add_library(value)
    return found
