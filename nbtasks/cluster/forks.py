"""The owner's side of a fork server (``forkserver.py``): start one, ask it to fork a
controller or an engine, stop it; which fork server a cluster's launchers use (``forked.py``).

A fork server may be started ahead, as a spare, while ``import nbtasks`` is still under
way (``_prestart.py``): this module imports little for that reason.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import threading

__all__ = ["ForkServer", "ForkServerError", "forget", "give_back", "serve", "server_for", "start_spare", "take"]

SERVER = "nbtasks.cluster.forkserver"
# Linux only: elsewhere there is no fork, or forking a process that imported system
# frameworks is not safe (macOS); ipyparallel's launchers start new interpreters there.
SUPPORTED = sys.platform.startswith("linux")
GRACE = 2.0  # seconds the server gives what it forked between SIGTERM and SIGKILL when it stops
TITLE_ROOM = 256  # bytes of blank command line the server starts with: room for its children's titles
REPLY_TIMEOUT = 120.0  # seconds a fork may take to be answered (the server may still be importing)


class ForkServerError(RuntimeError):
    """The fork server could not start a process (or is gone)."""


class ForkServer:
    """The owner's handle on a fork server process; ``fork()`` is safe from any thread."""

    def __init__(self) -> None:
        self._started_in = (os.getcwd(), dict(os.environ))
        env = dict(os.environ, NBTASKS_PRESTART="0", PYTHONUNBUFFERED="1")  # logs as they are written
        self._errors = tempfile.TemporaryFile()  # what the server says if it fails to start
        self._process = subprocess.Popen(
            [sys.executable, "-m", SERVER, " " * TITLE_ROOM], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._errors, env=env,
            start_new_session=True)  # a Ctrl-C in the owner's terminal is not for it
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self._process.pid

    def fits_here(self) -> bool:
        """Alive, and started in this directory and environment (what it imported may have
        read them): what it forks now is what a new interpreter would be."""
        cwd, env = self._started_in
        return self._process.poll() is None and cwd == os.getcwd() and env == os.environ

    def fork(self, role: str, argv: list[str], env: dict[str, str], cwd: str, output: str,
             connection_file: str | None = None, wait: float = 60.0) -> int:
        """Start a ``"controller"`` or an ``"engine"`` with these arguments and environment,
        its output appended to ``output``; returns its pid. An engine first waits up to
        ``wait`` seconds for the controller's ``connection_file``."""
        request = json.dumps({"role": role, "argv": argv, "env": env, "cwd": cwd, "output": output,
                              "connection_file": connection_file, "wait": wait})
        with self._lock:
            try:
                self._process.stdin.write(request.encode() + b"\n")
                self._process.stdin.flush()
                if not select.select([self._process.stdout], [], [], REPLY_TIMEOUT)[0]:
                    self._process.kill()  # stuck: what it forked goes with it
                    raise ForkServerError(f"the fork server did not answer within {REPLY_TIMEOUT:g}s")
                line = self._process.stdout.readline()
            except (OSError, ValueError) as exc:
                raise ForkServerError(f"the fork server is gone: {exc}{self._said()}") from exc
        if not line:
            raise ForkServerError(f"the fork server ended (exit status {self._process.poll()}){self._said()}")
        reply = json.loads(line)
        if "error" in reply:
            raise ForkServerError(f"the fork server could not start a {role}: {reply['error']}")
        return int(reply["pid"])

    def _said(self) -> str:
        try:
            self._errors.seek(0)
            text = self._errors.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""
        return f": {text.splitlines()[-1]}" if text else ""

    def close(self, timeout: float = GRACE + 3) -> None:
        """Stop the server, and with it whatever it forked that is still running."""
        if self._lock.acquire(timeout=timeout):  # not while a fork is asked for
            try:
                self._process.stdin.close()
            except OSError:
                pass
            finally:
                self._lock.release()
        else:
            self._process.kill()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process.stdout.close()
        self._errors.close()


_servers: dict[str, ForkServer] = {}  # cluster id -> the fork server its launchers use (forked.py)
_spare: ForkServer | None = None  # a warm one, for the next local cluster
_spare_lock = threading.Lock()


def start_spare() -> None:
    """Start a fork server now, for the next local cluster that starts (``take``): it
    imports ipyparallel while the owner still imports nbtasks (``_prestart.py``)."""
    global _spare
    with _spare_lock:
        if _spare is None:
            _spare = ForkServer()


def give_back(server: ForkServer) -> None:
    """A cluster that stops hands its fork server to the next one (``take``), warm."""
    global _spare
    with _spare_lock:
        server, _spare = _spare, server
    if server is not None:
        server.close()


def take() -> ForkServer:
    """The spare fork server if it fits here (``ForkServer.fits_here``), else a new one."""
    global _spare
    with _spare_lock:
        spare, _spare = _spare, None
    if spare is not None:
        if spare.fits_here():
            return spare
        spare.close()
    return ForkServer()


def serve(cluster_id: str, server: ForkServer) -> None:
    """From now on, the launchers of cluster ``cluster_id`` fork through ``server``."""
    _servers[cluster_id] = server


def server_for(cluster_id: str) -> ForkServer | None:
    return _servers.get(cluster_id)


def forget(cluster_id: str) -> None:
    _servers.pop(cluster_id, None)
