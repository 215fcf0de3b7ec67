"""The system commands the test hosts are made of, with errors that say what failed and why.

Nothing here is skipped: a machine that is not root or lacks a program fails with a message
naming what to do (``tools/system-deps.sh`` installs every program, CI runs it as root).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable

import psutil

from nbtasks.cluster.guard import end

__all__ = ["HostsError", "end_processes", "free_port", "require_program", "require_root", "run", "wait_for_port"]


class HostsError(RuntimeError):
    """The test hosts could not be set up (or torn down); the message says which step failed."""


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise HostsError(f"{what} needs root (network namespaces, mounts, daemons): run the tests as root, "
                         f"as CI does")


def require_program(path: str, package: str) -> str:
    """The full path of a program, or a ``HostsError`` naming the Debian package that has it."""
    found = path if os.path.isabs(path) and os.access(path, os.X_OK) else shutil.which(path)
    if not found:
        raise HostsError(f"{path} is missing: install the Debian package {package!r} "
                         f"(bash tools/system-deps.sh installs everything the test hosts need)")
    return found


def run(argv: list[str], *, timeout: float = 30, check: bool = True, **kwargs) -> str:
    """Run a command, return its stdout; on failure raise ``HostsError`` with its stderr."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as exc:
        raise HostsError(f"{' '.join(argv)} did not finish within {timeout:g}s") from exc
    if check and done.returncode != 0:
        raise HostsError(f"{' '.join(argv)} failed (exit {done.returncode}): {done.stderr.strip()}")
    return done.stdout


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``address`` now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def wait_for_port(address: str, port: int, timeout: float, what: str, alive: subprocess.Popen | None = None) -> None:
    """Wait until something accepts TCP connections at ``address:port``; ``alive``, if given,
    is the process that should listen there: its early exit is reported at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError as exc:
            if alive is not None and alive.poll() is not None:
                raise HostsError(f"{what} exited (code {alive.returncode}) before listening on "
                                 f"{address}:{port}") from exc
            if time.monotonic() > deadline:
                raise HostsError(f"{what} is not listening on {address}:{port} after {timeout:g}s: {exc}") from exc
        time.sleep(0.05)


def end_processes(pids: Iterable[int], grace: float = 3.0) -> None:
    """SIGTERM these processes, SIGKILL those alive ``grace`` seconds later, wait for them."""
    processes = []
    for pid in set(pids):
        try:
            processes.append(psutil.Process(pid))
        except psutil.Error:
            pass
    end(processes, grace)
