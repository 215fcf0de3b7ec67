"""Print how this environment's packages differ from the lock: the drift `make test-latest` tries.

    .venv-latest/bin/python tools/drift.py requirements/lock.txt
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)(?:\s*;\s*([^\\]+))?")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: Path) -> dict[str, str]:
    """Pins of the lock that apply to this interpreter (its markers evaluated here)."""
    pins = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match and (not match.group(3) or Marker(match.group(3).strip()).evaluate()):
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def main(lock: str) -> int:
    pins = locked(Path(lock))
    here = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    changed = sorted((n, pins[n], v) for n, v in here.items() if n in pins and pins[n] != v)
    new = sorted(n for n in here if n not in pins and n not in {"nbtasks", "pip", "setuptools"})
    print(f"drift from {lock}: {len(changed)} newer or other release(s), {len(new)} not in the lock")
    for name, was, now in changed:
        print(f"  {name}: {was} -> {now}")
    for name in new:
        print(f"  {name}: not locked ({here[name]})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "requirements/lock.txt"))
