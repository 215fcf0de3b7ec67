"""MPI engines: Debian's MPICH under the ``mpi4py`` wheel.

The wheel looks for MPICH's ``libmpi.so.12``, which Debian names ``libmpich.so.12``; a
symlink in a directory of ours, put first on ``LD_LIBRARY_PATH`` (``mpiexec`` passes the
environment on to every rank), makes it load. ``env`` is that environment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .system import HostsError, require_program, run

__all__ = ["MPI"]

LIBMPICH = Path("/usr/lib/x86_64-linux-gnu/libmpich.so.12")


class MPI:
    """The environment under which ``mpiexec`` runs ``mpi4py`` ranks (``start()`` makes it)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.lib_dir = Path(root) / "mpi-lib"
        self.env: dict[str, str] = {}

    def start(self) -> "MPI":
        mpiexec = require_program("mpiexec", "mpich")
        found = [Path(p) for p in (LIBMPICH, *Path("/usr/lib").glob("*/libmpich.so.12")) if Path(p).exists()]
        if not found:
            raise HostsError(f"{LIBMPICH} is missing: install the Debian package 'mpich'")
        self.lib_dir.mkdir(parents=True, exist_ok=True)
        link = self.lib_dir / "libmpi.so.12"
        if not link.exists():
            link.symlink_to(found[0])
        self.env = {"LD_LIBRARY_PATH": os.pathsep.join(filter(None, [str(self.lib_dir),
                                                                     os.environ.get("LD_LIBRARY_PATH")]))}
        check = "from mpi4py import MPI; c = MPI.COMM_WORLD; r = c.allgather(c.Get_rank()); c.Get_rank() or print(r)"
        try:
            out = run([mpiexec, "-n", "2", sys.executable, "-c", check], env={**os.environ, **self.env}, timeout=60)
        except HostsError as exc:
            raise HostsError(f"mpi4py cannot run under mpiexec (is mpi4py installed? "
                             f"it is in the test extra): {exc}") from exc
        if out.strip() != "[0, 1]":
            raise HostsError(f"two MPI ranks did not see each other: {out!r}")
        return self

    def close(self) -> None:
        self.env = {}

    def __enter__(self) -> "MPI":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
