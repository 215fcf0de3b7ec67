"""Engines that left a cluster nbtasks started are stopped for good, then replaced.

An engine leaves when its process dies, or when its controller stops hearing it (its
host's link went down, it froze). In the second case it is still alive: it may come
back and finish the units that already ran elsewhere, so it is an orphan and must be
stopped before a replacement takes its place — through the launcher that started it
(``ssh host kill`` for SSH engines, a signal for local ones). While its host cannot be
reached the stop is retried; the replacement starts on the same host once the stop went
through, so a cluster of two engines per host stays that way. Engines started as one
batch (Slurm, MPI, PBS) have no launcher of their own: they end by themselves after
missing the controller's heartbeats, and a replacement starts at once.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from typing import Any, Callable

import psutil

log = logging.getLogger("nbtasks")

__all__ = ["Replacements", "STOP_RETRY_EVERY", "STOP_PATIENCE"]

STOP_RETRY_EVERY = 2.0  # seconds between two attempts to stop an engine whose host is unreachable
STOP_PATIENCE = 600.0  # after this long unreachable, give up (its own heartbeat check ends it)
SSH_UNREACHABLE = 255  # ssh's exit status when it could not reach the host


class Replacements:
    """Stops and replaces engines of one ipyparallel cluster, each in a thread of its own."""

    def __init__(self, ipp_cluster: Any, running: Callable[[], bool]) -> None:
        self._ipp = ipp_cluster
        self._running = running  # False once the cluster stops: pending work is dropped
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def replace(self, engine: int, pid: int | None) -> None:
        """Stop engine ``engine`` (process ``pid``) where it runs, then start another one."""
        launcher, place = self._launcher_of(pid)
        thread = threading.Thread(target=self._stop_then_start, args=(engine, launcher, place),
                                  name=f"nbtasks-replace-{engine}", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _launcher_of(self, pid: int | None) -> tuple[Any, dict[str, Any]]:
        """The launcher that started process ``pid``, and how to start one engine like it."""
        if pid is None:
            return None, {}
        for engine_set in list((self._ipp.engines or {}).values()):
            for launcher in list(getattr(engine_set, "launchers", {}).values()):
                if getattr(launcher, "pid", None) == pid:
                    return launcher, _same_place(engine_set, launcher)
        return None, {}

    def _stop_then_start(self, engine: int, launcher: Any, place: dict[str, Any]) -> None:
        try:
            if launcher is not None and not self._stop(engine, launcher):
                return
            if not self._running():
                return
            log.info("nbtasks: starting an engine to replace engine %s", engine)
            self._ipp.start_engines_sync(n=1, **place)
        except Exception:
            log.warning("nbtasks: replacing engine %s failed", engine, exc_info=True)

    def _stop(self, engine: int, launcher: Any) -> bool:
        """Kill the engine's process; retried while its host cannot be reached."""
        give_up = time.monotonic() + STOP_PATIENCE
        while self._running():
            try:
                launcher.signal(signal.SIGKILL)
                return True
            except (ProcessLookupError, psutil.NoSuchProcess):
                return True  # it had died by itself
            except subprocess.CalledProcessError as exc:
                if exc.returncode != SSH_UNREACHABLE:
                    return True  # the host answered: the remote kill found no such process
                error: Exception = exc
            except OSError as exc:
                error = exc
            if time.monotonic() > give_up:
                log.warning("nbtasks: engine %s could not be stopped for %.0f s (%s); giving up",
                            engine, STOP_PATIENCE, error)
                return False
            log.info("nbtasks: engine %s left the cluster but cannot be stopped yet (%s); retrying", engine, error)
            time.sleep(STOP_RETRY_EVERY)
        return False


def _same_place(engine_set: Any, launcher: Any) -> dict[str, Any]:
    """Arguments for ``start_engines`` that put one engine where ``launcher``'s was:
    the same SSH host (with that host's settings); anywhere for other launchers."""
    hosts = getattr(engine_set, "engines", None)
    identifier = getattr(launcher, "identifier", "") or ""
    if not isinstance(hosts, dict) or "/" not in identifier:
        return {}
    host = identifier.rsplit("/", 1)[0]  # SSH engine launchers are named "<host>/<i>"
    if host not in hosts:
        return {}
    settings = hosts[host]
    # ipyparallel pops "n" from a host's settings dict when it starts: pass a copy
    return {"engines": {host: {**settings, "n": 1} if isinstance(settings, dict) else 1}}
