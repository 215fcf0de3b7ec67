"""Refresh ``requirements/lock.txt``: every Python package `make` installs, pinned with hashes.

The lock covers nbtasks' dependencies with all its extras, the build backend and hooks
that ``pip install -e .`` needs (installed from the lock too, then built without isolation,
so a fresh machine builds with exactly what was tested) and uv itself. It is universal:
markers pick the right pins on each Python that ``requires-python`` admits.

    .venv/bin/python tools/lock.py            # keep current pins where still allowed
    .venv/bin/python tools/lock.py --upgrade  # newest releases pyproject.toml allows

uv comes from the lock (``make setup`` installs it); a machine without .venv can run this
file with any Python that has ``uv`` on PATH or installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
# Locked with the rest: uv, so refreshing the lock is reproducible too; editables, which
# hatchling asks for (get_requires_for_build_editable) to build `pip install -e .`.
TOOLS = ["uv", "editables"]


def _uv() -> list[str]:
    beside = Path(sys.executable).parent / "uv"
    if beside.exists():
        return [str(beside)]
    if shutil.which("uv"):
        return ["uv"]
    return [sys.executable, "-m", "uv"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="take the newest allowed releases")
    args = parser.parse_args()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    build = project["build-system"]["requires"]
    with tempfile.TemporaryDirectory() as tmp:
        extra = Path(tmp) / "build-and-tools.in"
        extra.write_text("\n".join(build + TOOLS) + "\n")
        command = _uv() + [
            "pip", "compile", "--quiet", "--universal", "--all-extras", "--generate-hashes",
            "--python-version", project["project"]["requires-python"].lstrip(">="),
            "--no-header", "--annotation-style", "line",
            "pyproject.toml", str(extra), "-o", str(LOCK),
        ] + (["--upgrade"] if args.upgrade else [])
        env = dict(os.environ, UV_CUSTOM_COMPILE_COMMAND="python tools/lock.py")
        done = subprocess.run(command, cwd=ROOT, env=env)
    if done.returncode == 0:
        # the temporary file's name would change on every refresh: name what it holds
        text = LOCK.read_text().replace(str(extra), "build-system.requires + tools")
        LOCK.write_text("# Written by tools/lock.py: do not edit. `make lock` refreshes it.\n" + text)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
