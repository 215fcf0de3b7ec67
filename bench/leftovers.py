"""Nothing the bench starts outlives it.

Every measurement runs with ``IPYTHONDIR`` set to the bench's own temporary directory, and
every process it starts inherits that environment: ipyparallel controllers, engines and
nannies, nbtasks' default cluster, dask's nannies and workers, joblib's loky workers,
``multiprocessing`` pools. After each measurement the bench looks for processes that still
carry that directory, waits a moment for them to exit, then terminates them by pid and
reports them as orphans. Processes of other sessions never carry it and are never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from typing import Any, Iterator

IPP_MARKERS = ("ipengine", "ipcontroller", "ipyparallel.engine", "ipyparallel.controller")


@contextlib.contextmanager
def bench_environment() -> Iterator[tuple[dict[str, str], str]]:
    """The environment of every measurement, and its temporary ``IPYTHONDIR`` (deleted after).

    ``NBTASKS_PRESTART=0``: importing nbtasks must not start a default cluster beside the one a
    measurement starts itself; the cold start of nbtasks runs without it (as a user's would).
    """
    ipython_dir = tempfile.mkdtemp(prefix="nbtasks-bench-ipython-")
    env = dict(os.environ, IPYTHONDIR=ipython_dir, PYTHONUNBUFFERED="1",
               NBTASKS_STORE=os.path.join(ipython_dir, "runs.db"), NBTASKS_PRESTART="0")
    try:
        yield env, ipython_dir
    finally:
        shutil.rmtree(ipython_dir, ignore_errors=True)


def started_under(ipython_dir: str) -> list[Any]:
    """Processes (other than this one) whose environment has ``IPYTHONDIR=ipython_dir``."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get("IPYTHONDIR") == ipython_dir:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def describe(proc: Any) -> str:
    """pid and a short command line, for the report."""
    import psutil

    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        cmd = "?"
    return f"{proc.pid} ({cmd[:70]})"


def reap_orphans(ipython_dir: str, grace: float = 10.0) -> list[str]:
    """Wait up to ``grace`` s for the processes started under ``ipython_dir`` to exit; terminate
    (by pid, then kill) any still there. Returns those it had to end, described."""
    import psutil

    deadline = time.monotonic() + grace
    left = started_under(ipython_dir)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = started_under(ipython_dir)
    described = [describe(p) for p in left]
    for proc in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(left, timeout=5)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    return described


def ipp_processes() -> list[Any]:
    """Every ipyparallel controller, engine or nanny on this machine (other sessions' too)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if any(key in cmd for key in IPP_MARKERS):
            found.append(proc)
    return found
