"""Processes nbtasks starts for a local cluster, and a way to run ipyparallel's
blocking helpers from inside a notebook cell."""

from __future__ import annotations

import threading
from typing import Any

import psutil

from .guard import Guard, end

__all__ = ["OwnProcesses", "descendants", "in_plain_thread"]


def descendants() -> set[int]:
    """Pids of this process's children, grandchildren...: what was started on this host.
    (An SSH launcher's pid is the engine's on its remote host: it means nothing here.)"""
    return {p.pid for p in psutil.Process().children(recursive=True)}


class OwnProcesses:
    """The controller, engines and nannies we started, so that none outlives the cluster:
    ``reap()`` when it stops, and a :class:`Guard` for when its owner dies without stopping it
    (not for those a fork server started: it stops them itself when its owner dies)."""

    def __init__(self) -> None:
        self._processes: list[psutil.Process] = []
        self._guard: Guard | None = None
        self._fork_server: int | None = None

    def forked_by(self, pid: int) -> None:
        """Processes under fork server ``pid`` need no guard."""
        self._fork_server = pid

    def remember(self, pids: list[int]) -> None:
        found = []
        for pid in pids:
            try:
                process = psutil.Process(pid)
                found += [process, *process.children(recursive=True)]
            except psutil.Error:
                pass
        self._processes += found
        unguarded = [p for p in found if not self._under_fork_server(p)]
        if unguarded:
            if self._guard is None:
                self._guard = Guard()
            self._guard.watch([p.pid for p in unguarded])

    def forget(self, pid: int) -> None:
        """Not ours to stop any more (a fork server handed to another cluster)."""
        self._processes = [p for p in self._processes if p.pid != pid]

    def _under_fork_server(self, process: psutil.Process) -> bool:
        if self._fork_server is None:
            return False
        try:
            return process.pid == self._fork_server or any(p.pid == self._fork_server for p in process.parents())
        except psutil.Error:
            return True  # gone: nothing to guard

    def reap(self, grace: float = 0.5) -> None:
        """Kill those still alive ``grace`` seconds after their cluster was stopped.

        A nanny runs in its own session, so stopping the engines' process group
        misses it; it lingers for seconds, and one was seen hanging on for good
        after its controller had gone. With the controller stopped it has no job left.
        """
        end(self._processes, grace, terminate=False)
        self._processes = []
        if self._guard is not None:
            self._guard.release()
            self._guard = None


def in_plain_thread(fn: Any) -> Any:
    """Run ``fn`` in a thread without an event loop (ipyparallel's *_sync
    helpers refuse to run inside a running loop, as in a notebook cell)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="nbtasks-cluster", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")
