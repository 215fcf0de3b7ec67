"""Throwaway installed distributions, for tests of what engines must have installed."""

from __future__ import annotations

import pathlib


def make_distribution(where: pathlib.Path, name: str, version: str,
                      extra_files: dict[str, str] | None = None) -> None:
    """A module and its dist-info (METADATA, RECORD) in ``where``: installed, as far as
    ``importlib.metadata`` can tell, once ``where`` is on the path."""
    module = name.replace("-", "_")
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{module}.py").write_text(f"VERSION = {version!r}\n\n\ndef plus(x):\n    return x + 1\n")
    info = where / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text(f"{module}.py,,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
    for file, text in (extra_files or {}).items():
        (where / file).write_text(text)
