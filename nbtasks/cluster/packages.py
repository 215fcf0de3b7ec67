"""Task packages, the Pydra way: ``cluster.sync(path)`` ships a local module or
directory (and its ``lib/`` folder) to every engine, including engines that
join later, and re-sends it only when its content changed.

On an engine a package lives in a folder named after its content digest; a
new version replaces the old one on ``sys.path`` and drops the modules that
were imported from it, so the next import loads the new code.
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field

from ..core.arrivals import forget_arrived

__all__ = ["Package", "pack", "install"]

_SKIP = {"__pycache__", ".git", ".ipynb_checkpoints", ".pytest_cache"}


@dataclass(frozen=True)
class Package:
    name: str
    digest: str
    blob: bytes                     # a zip of the files
    roots: tuple[str, ...]          # folders (inside the zip) to put on sys.path
    requires: tuple[str, ...] = field(default=())


def pack(path: str | os.PathLike, requires: tuple[str, ...] = ()) -> Package:
    """Zip a module file or a directory; ``name`` is the file or folder name."""
    source = pathlib.Path(path).expanduser().resolve()
    if not source.exists():
        raise FileNotFoundError(f"cluster.sync: {source} does not exist")
    files: list[tuple[pathlib.Path, str]] = []
    if source.is_file():
        if source.suffix != ".py":
            raise ValueError(f"cluster.sync: {source} is neither a directory nor a .py module")
        files.append((source, source.name))
        roots = [""]
    else:
        for file in sorted(source.rglob("*")):
            parts = file.relative_to(source).parts
            if file.is_file() and not any(p in _SKIP or p.startswith(".") for p in parts):
                files.append((file, str(pathlib.Path(source.name, *parts))))
        # a package (with __init__.py) is imported by its name: its parent goes on sys.path;
        # a plain folder of modules goes on sys.path itself; lib/ inside either does too
        roots = ["" if (source / "__init__.py").exists() else source.name]
        if (source / "lib").is_dir():
            roots.append(f"{source.name}/lib")
    digest = hashlib.sha256()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file, arcname in files:
            data = file.read_bytes()
            digest.update(arcname.encode() + b"\0" + data + b"\0")
            info = zipfile.ZipInfo(arcname, date_time=(2000, 1, 1, 0, 0, 0))
            archive.writestr(info, data)
    return Package(source.stem if source.is_file() else source.name, digest.hexdigest()[:16],
                   buffer.getvalue(), tuple(roots), tuple(requires))


_installed: dict[str, tuple[str, list[str]]] = {}  # name -> (digest, sys.path entries) on this engine


def install(package: Package) -> list[str]:
    """Unpack ``package`` on this engine (idempotent per digest); returns its sys.path entries."""
    current = _installed.get(package.name)
    if current is not None and current[0] == package.digest:
        return current[1]
    base = pathlib.Path(tempfile.gettempdir(), f"nbtasks-packages-{os.getuid()}", f"{package.name}-{package.digest}")
    if not base.exists():
        staging = base.with_name(base.name + f".tmp{os.getpid()}")
        with zipfile.ZipFile(io.BytesIO(package.blob)) as archive:
            archive.extractall(staging)
        try:
            staging.rename(base)
        except OSError:  # another engine on this host unpacked it first
            pass
    if current is not None:
        _forget(current[1])
    entries = [str(base / root) if root else str(base) for root in package.roots]
    for entry in reversed(entries):
        sys.path.insert(0, entry)
    _installed[package.name] = (package.digest, entries)
    forget_arrived()  # the synced files win over code that came by value before
    return entries


def _forget(entries: list[str]) -> None:
    """Take an old version off sys.path and out of sys.modules."""
    for entry in entries:
        while entry in sys.path:
            sys.path.remove(entry)
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if any(file.startswith(entry + os.sep) for entry in entries):
            del sys.modules[name]
