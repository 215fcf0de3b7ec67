"""Local code that came with a task, put in place on the engine (``travel.py`` sends it).

The local functions and classes a task reaches are put in a module of their module's name
in ``sys.modules``, and modules that came whole (named as a global, imported in a body)
under their own; never over a module this process has of its own (the client's, or an
engine that can read the same files). Instances of those classes in results then pickle
by reference: the client unpickles them as instances of its own class (``isinstance``
holds; a rebuilt copy would also overwrite the client's class with the engine's rebuild
of it), in this kernel and when the store hands them to a later one. It also makes
``import helpers`` inside a task's body work on the engine.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
from typing import Any

__all__ = ["Arrivals", "arrive", "arrived", "forget_arrived"]


class Arrivals:
    """A task's code origins, with the local modules its code brings: unpickled on an
    engine, it puts them in ``sys.modules`` there (``arrive``) and becomes the origins."""

    def __init__(self, origins: Any, members: dict[str, dict[str, Any]],
                 modules: dict[str, types.ModuleType]) -> None:
        self.origins = origins
        self.members = members  # module name -> {top-level name: function or class}
        self.modules = modules  # module name -> a module that goes whole

    def __reduce__(self) -> tuple:
        return arrive, (self.origins, self.members, self.modules)


_ours: dict[str, types.ModuleType] = {}  # modules this process got from clients, by name
_own: dict[str, bool] = {}  # top-level name -> this process can import a module of its own by it


def arrived(module: types.ModuleType) -> bool:
    """``module`` came here by value (and is still in place)."""
    return _ours.get(module.__name__) is module


def _has_own(top: str) -> bool:
    """This process can import a module of its own named ``top`` (from its ``sys.path``)."""
    if top not in _own:
        try:
            _own[top] = importlib.machinery.PathFinder.find_spec(top) is not None
        except Exception:  # a broken path entry: do not take the name
            _own[top] = True
    return _own[top]


def _may_take(name: str) -> bool:
    """Whether ``name`` may be (or stays) a module that arrived: never over one of this
    process's own (on the client, say, or an engine that can read the same files)."""
    current = sys.modules.get(name)
    if current is not None:
        return current is _ours.get(name)
    return not _has_own(name.partition(".")[0])


def _link(name: str, module: types.ModuleType) -> None:
    """Put ``module`` in ``sys.modules`` and on its parent package (made if missing)."""
    sys.modules[name] = _ours[name] = module
    parent, _, child = name.rpartition(".")
    if parent and _may_take(parent):
        setattr(_package(parent), child, module)


def _package(name: str) -> types.ModuleType:
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__path__ = []
        _link(name, module)
    return module


def arrive(origins: Any, members: dict[str, dict[str, Any]], modules: dict[str, types.ModuleType]) -> Any:
    """Put the local modules that came with a task in ``sys.modules``; returns ``origins``."""
    for name, module in modules.items():
        if _may_take(name):
            _link(name, module)
    for name, attrs in members.items():
        if not _may_take(name):
            continue
        module = sys.modules.get(name)
        if module is None:
            module = types.ModuleType(name)
            _link(name, module)
        for attr, value in attrs.items():
            setattr(module, attr, value)
    return origins


def forget_arrived() -> None:
    """Drop modules that arrived by value where this process can now import its own (a
    ``cluster.sync`` put them on ``sys.path``): imports must find the synced files."""
    _own.clear()
    for name, module in list(_ours.items()):
        if sys.modules.get(name) is module and _has_own(name.partition(".")[0]):
            del sys.modules[name]
        if sys.modules.get(name) is not module:
            del _ours[name]
