"""A guard that stops a local cluster when the process that started it dies, however it dies.

ipyparallel's controller, engines and nannies are processes of their own: a kernel killed
with SIGKILL (an out-of-memory kill, a restart that timed out) runs no exit handler, and
they would go on running for good. So a local cluster starts a small guard process that
holds one end of a pipe from its owner. The owner tells it which processes to watch; when
the pipe closes, which happens however the owner ends, the guard stops those processes
(and their children) and exits. Each is named by pid and start time, so a pid that was
reused meanwhile is left alone.

    python .../nbtasks/cluster/guard.py      (reads "pid start-time" lines on stdin)

The guard runs this file as a script, so it starts without importing nbtasks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import IO

import psutil

__all__ = ["Guard", "end"]

GRACE = 2.0  # seconds between SIGTERM and SIGKILL


class Guard:
    """The owner's side: a guard process, told about each process to stop with the owner."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-I", os.path.abspath(__file__)], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # a signal to the owner's process group spares it
            text=True)
        self._pipe: IO[str] | None = self._process.stdin
        self._lock = threading.Lock()  # engines are checked on more than one thread

    @property
    def pid(self) -> int:
        return self._process.pid

    def watch(self, pids: list[int]) -> None:
        """Stop these processes (and their children then) if the owner dies."""
        lines = []
        for pid in pids:
            try:
                lines.append(f"{pid} {psutil.Process(pid).create_time()!r}\n")
            except psutil.Error:
                pass
        with self._lock:
            if self._pipe is not None and lines:
                try:
                    self._pipe.write("".join(lines))
                    self._pipe.flush()
                except (BrokenPipeError, ValueError):  # the guard is gone; nothing to tell it
                    self._pipe = None

    def release(self) -> None:
        """The owner stopped the cluster itself: the guard has nothing left to do."""
        with self._lock:
            if self._pipe is not None:
                try:
                    self._pipe.write("release\n")
                    self._pipe.close()
                except (BrokenPipeError, ValueError):
                    pass
                self._pipe = None
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()


def _stop(watched: list[tuple[int, float]]) -> None:
    """Stop the watched processes that are still the ones we were told about, with children."""
    found: list[psutil.Process] = []
    for pid, started in watched:
        try:
            process = psutil.Process(pid)
            if abs(process.create_time() - started) > 0.01:
                continue  # that pid belongs to another process now
            found += [process, *process.children(recursive=True)]
        except psutil.Error:
            continue
    end(found, GRACE)


def end(processes: list[psutil.Process], grace: float, terminate: bool = True) -> None:
    """SIGTERM them (unless ``terminate`` is False: they were asked to stop already),
    SIGKILL those still alive ``grace`` seconds later, and wait for them."""
    for process in processes if terminate else ():
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def main() -> None:
    watched: list[tuple[int, float]] = []
    for line in sys.stdin:
        if line.strip() == "release":
            return
        pid, started = line.split()
        watched.append((int(pid), float(started)))
    _stop(watched)  # the pipe closed without a release: the owner died


if __name__ == "__main__":
    main()
