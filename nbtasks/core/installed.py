"""Which code an engine has a copy of its own, and which is the user's.

A module is *installed* when it is part of the standard library or belongs to a
distribution that ``importlib.metadata`` knows: its RECORD lists the module's file, or
it is an editable install whose source tree holds it under one of its import names.
Where a file lives is not enough: nbtasks itself (and any project installed with
``pip install -e``) is a checkout outside site-packages, and a ``helpers.py`` dropped
into site-packages belongs to no distribution. Everything else is *local*: a script,
a ``helpers.py`` beside the notebook, a package folder on ``sys.path``. Local code
travels by value (``travel.py``); installed code must be on the engines, at the
client's version.

Deciding costs one read of every distribution's RECORD (tens of ms, once per process;
again when a module seems to belong to nobody while ``sys.path`` changed or the module is
in a site folder, in case its distribution came since); each module's answer is kept.
"""

from __future__ import annotations

import csv
import enum
import functools
import importlib.metadata as metadata
import json
import os
import site
import sys
import sysconfig
import threading
import time
import types
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["Kind", "Origin", "origin_of", "is_installed", "is_installed_file", "distribution_for_import"]


class Kind(str, enum.Enum):
    STDLIB = "stdlib"        # the standard library, built-in and frozen modules
    INSTALLED = "installed"  # a distribution's (``distribution`` names it, when one can be told)
    LOCAL = "local"          # the user's own: travels by value


class Origin(NamedTuple):
    kind: Kind
    distribution: str | None = None  # its project name, as ``importlib.metadata`` spells it
    version: str | None = None


STDLIB = Origin(Kind.STDLIB)
LOCAL = Origin(Kind.LOCAL)
UNOWNED = Origin(Kind.INSTALLED)  # not the user's, but no distribution can be named (runtime modules)


def _norm(path: str) -> str:
    return os.path.normcase(os.path.abspath(path))


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root + os.sep) for root in roots)


def _stdlib_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple({_norm(paths[k]) for k in ("stdlib", "platstdlib") if paths.get(k)})


def _site_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths.get("purelib"), paths.get("platlib")}
    try:
        roots.update(site.getsitepackages())
    except AttributeError:  # old virtualenvs' site.py
        pass
    user = getattr(site, "USER_SITE", None)
    roots.add(user)
    return tuple(_norm(r) for r in roots if r)


_STDLIB_ROOTS = _stdlib_roots()
_SITE_ROOTS = _site_roots()
_STDLIB_NAMES = frozenset(getattr(sys, "stdlib_module_names", ())) | frozenset(sys.builtin_module_names)


def _record(dist: Any) -> list[str]:
    """The paths a distribution's RECORD lists, relative to its base folder (raw strings:
    ``Distribution.files`` makes a ``pathlib`` object per line, ten times slower)."""
    text = dist.read_text("RECORD") or dist.read_text("installed-files.txt") or ""
    return [row[0] for row in csv.reader(text.splitlines()) if row]


@dataclass
class _Dist:
    """One installed distribution, its files read only when asked."""

    dist: Any  # importlib.metadata.Distribution
    paths: list[str]  # its RECORD
    editable_roots: tuple[str, ...] = ()  # source trees of an editable install
    _files: frozenset[str] | None = None

    def files(self) -> frozenset[str]:
        if self._files is None:
            base = str(self.dist.locate_file(""))
            self._files = frozenset(_norm(os.path.join(base, p)) for p in self.paths)
        return self._files

    def owns(self, file: str) -> bool:
        if _under(file, self.editable_roots):
            return True
        files = self.files()
        return file in files or _norm(os.path.realpath(file)) in files

    @functools.cached_property
    def origin(self) -> Origin:
        """Its name and version (read from METADATA only now: parsing it is the slow part)."""
        return Origin(Kind.INSTALLED, self.dist.metadata["Name"], self.dist.version)


def _normalized(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _folder_name(dist: Any) -> str:
    """A distribution's normalized name, from its ``name-version.dist-info`` folder when it
    has one (no METADATA parsing), else from its metadata."""
    folder = os.path.basename(str(getattr(dist, "_path", "")))
    if folder.endswith((".dist-info", ".egg-info")):
        return _normalized(folder.rpartition(".")[0].partition("-")[0])
    return _normalized(dist.metadata["Name"] or "")


_MODULE_SUFFIXES = (".py", ".pyc", ".so", ".pyd")


def _top_levels(dist: Any, paths: list[str]) -> set[str]:
    """Import names a distribution provides (declared, or read off its files)."""
    declared = (dist.read_text("top_level.txt") or "").split()
    if declared:
        return set(declared)
    names = set()
    for path in paths:
        top, sep, _ = path.partition("/")
        if not sep:  # a module at the top: name.py, name.cpython-311-x86_64-linux-gnu.so
            if path.endswith(_MODULE_SUFFIXES):
                names.add(path.split(".")[0])
        elif path.endswith(_MODULE_SUFFIXES) and top != ".." and not top.endswith((".dist-info", ".data")):
            names.add(top)
    return names


def _editable(dist: Any, name: str, paths: list[str]) -> tuple[tuple[str, ...], set[str]] | None:
    """Source roots and import names of an editable install (None: not editable).

    Two shapes exist: a ``.pth`` file that puts a source folder on ``sys.path`` (its
    import names: the project's own name and any declared ones), and a finder module
    with a ``MAPPING`` of import name to folder (setuptools).
    """
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return None
    if not direct.get("dir_info", {}).get("editable"):
        return None
    roots: list[str] = []
    names = {name}
    names.update((dist.read_text("top_level.txt") or "").split())
    for path in paths:
        if path.endswith(".pth") and "/" not in path:
            try:
                with open(dist.locate_file(path)) as f:
                    lines = f.read().splitlines()
            except OSError:
                continue
            roots += [line.strip() for line in lines if line.strip() and not line.startswith(("#", "import"))]
        elif path.startswith("__editable__") and path.endswith(".py") and "/" not in path:
            finder = sys.modules.get(path[:-3])
            mapping = getattr(finder, "MAPPING", None)
            if isinstance(mapping, dict):
                names.update(mapping)
                roots += [str(p) for p in mapping.values()]
    return tuple(_norm(r) for r in roots if os.path.isdir(r)), names


class _Index:
    """Import name -> the distributions that may provide it (built once, rebuilt when stale)."""

    def __init__(self) -> None:
        self.by_top: dict[str, list[_Dist]] = {}
        self.built = 0.0
        self.path: tuple[str, ...] = ()  # sys.path when built
        self.lock = threading.Lock()

    def build(self) -> None:
        by_top: dict[str, list[_Dist]] = {}
        seen: set[str] = set()
        for dist in metadata.distributions():
            name = _folder_name(dist)
            if not name or name in seen:  # the first on sys.path is the one imported
                continue
            seen.add(name)
            paths = _record(dist)
            editable = _editable(dist, name, paths)
            entry = _Dist(dist, paths, editable[0] if editable else ())
            tops = _top_levels(dist, paths) | (editable[1] if editable else set())
            for top in tops:
                by_top.setdefault(top, []).append(entry)
        self.by_top = by_top
        self.built = time.monotonic()
        self.path = tuple(sys.path)

    def candidates(self, top: str) -> list[_Dist]:
        with self.lock:
            if not self.built:
                self.build()
            return self.by_top.get(top, [])

    def refresh(self, file: str, min_age: float = 2.0) -> bool:
        """Read the distributions again if ``file``, which seems to belong to nobody, may
        belong to one installed since: ``sys.path`` changed, or it is in a site folder."""
        with self.lock:
            if tuple(sys.path) == self.path and not (
                    _under(file, _SITE_ROOTS) and time.monotonic() - self.built >= min_age):
                return False
            self.build()
            return True


_index = _Index()
_decided: dict[str, tuple[str | None, Origin]] = {}  # module name -> (its file, origin)
_by_file: dict[str, str] = {}  # a module file -> its module's name
_by_file_count = [0]  # len(sys.modules) when _by_file was made


def _owner(top: str, file: str) -> Origin | None:
    for candidate in _index.candidates(top):
        if candidate.owns(file):
            return candidate.origin
    return None


def _decide(name: str, module: types.ModuleType | None, file: str | None) -> Origin:
    if name == "__main__":
        return LOCAL
    top = name.partition(".")[0]
    if file is None:
        if top in _STDLIB_NAMES:
            return STDLIB  # built in, or frozen
        path = getattr(module, "__path__", None)
        if path is None:  # made at runtime, or frozen: there is nothing of it to send
            return UNOWNED
        # a namespace package: the user's when no distribution provides that name
        providers = _index.candidates(top)
        if len(providers) == 1:
            return providers[0].origin
        return UNOWNED if providers else LOCAL
    file = _norm(file)
    if _under(file, _STDLIB_ROOTS) and not _under(file, _SITE_ROOTS):
        return STDLIB  # by where it is: a local test.py is not the standard library's test
    owner = _owner(top, file)
    if owner is not None:
        return owner
    if _index.refresh(file):  # installed since we looked?
        owner = _owner(top, file)
        if owner is not None:
            return owner
    return LOCAL


def origin_of(module: types.ModuleType) -> Origin:
    """Where ``module`` comes from: the standard library, a distribution, or the user."""
    name = getattr(module, "__name__", None) or ""
    file = getattr(module, "__file__", None)
    known = _decided.get(name)
    if known is not None and known[0] == file:
        return known[1]
    origin = _decide(name, module, file)
    _decided[name] = (file, origin)
    return origin


def is_installed(module: types.ModuleType) -> bool:
    """Every engine is expected to have its own copy (stdlib or a distribution's)."""
    return origin_of(module).kind is not Kind.LOCAL


def is_installed_file(path: str) -> bool:
    """The file of an installed module (of the standard library or of a distribution)."""
    if path.startswith("<"):  # a cell, or code made at runtime
        return False
    module = _module_of_file(path)
    if module is not None:
        return is_installed(module)
    # not the file of an imported module: an exec'd file, a script run by path
    norm = _norm(path)
    return _under(norm, _STDLIB_ROOTS) and not _under(norm, _SITE_ROOTS)


def _module_of_file(path: str) -> types.ModuleType | None:
    name = _by_file.get(path)
    if name is None and len(sys.modules) != _by_file_count[0]:  # modules came (or went) since
        _by_file.clear()
        for mod_name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None)
            if isinstance(file, str):
                _by_file[file] = mod_name
        _by_file_count[0] = len(sys.modules)
        name = _by_file.get(path)
    module = sys.modules.get(name) if name is not None else None
    return module if getattr(module, "__file__", None) == path else None


def distribution_for_import(name: str) -> Origin | None:
    """The distribution an ``import name`` would load, for a module not imported here yet
    (None: stdlib, local, or more than one could)."""
    top = name.partition(".")[0]
    if top in _STDLIB_NAMES:
        return None
    providers = _index.candidates(top)
    return providers[0].origin if len(providers) == 1 else None
