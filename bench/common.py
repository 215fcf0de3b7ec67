"""What every measurement shares: the work units, memory and time readings, and the clusters
and pools of each peer, started outside the clock and always stopped.

Each measurement is a function ``(args) -> dict`` registered by name with :func:`registrar`;
``bench/run.py`` runs each in a fresh interpreter, so its client peak memory is its own.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator

ENGINES = 2  # workers of every peer: the machine has 2 cores

Result = dict[str, Any]
Worker = Callable[[argparse.Namespace], Result]
#: a target of the report: (what, the measurements it reads, what was measured, met? None: not measured)
Target = tuple[str, list[str], str, bool | None]


def registrar(workers: dict[str, Worker]) -> Callable[[str], Callable[[Worker], Worker]]:
    """A decorator factory that files a measurement in ``workers`` under its name."""
    def worker(name: str) -> Callable[[Worker], Worker]:
        def register(fn: Worker) -> Worker:
            workers[name] = fn
            return fn
        return register
    return worker


# -- the work (module level, so every peer can ship it to its workers) ----------------------
def noop(x: Any) -> Any:
    return x


def square(x: int) -> int:
    return x * x


def spin(seconds: float) -> float:
    """Keep a core busy for ``seconds`` of wall time (a busy loop, not a sleep)."""
    import time  # engines of raw ipyparallel do not see this module's globals

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return seconds


# -- readings ----------------------------------------------------------------------------------
def peak_mb() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def wall_times(repeats: int, fn: Callable[[], Any], between: Callable[[], None] | None = None) -> list[float]:
    """Wall times of ``repeats`` calls of ``fn``."""
    times = []
    for i in range(repeats):
        if i and between is not None:
            between()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def timing(times: list[float], **extra: Any) -> Result:
    return {"times": times, "best": min(times), "median": statistics.median(times), **extra}


# -- the peers' clusters, started before the clock ----------------------------------------------
@contextlib.contextmanager
def nbtasks_cluster(n: int = ENGINES) -> Iterator[Any]:
    import nbtasks as nt

    cluster = nt.Cluster(n=n).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def ipp_cluster(n: int = ENGINES) -> Iterator[Any]:
    """A raw ipyparallel cluster started with the same fast controller settings nbtasks uses,
    so neither side pays for a slow start-up (start-up is measured separately, in cold start)."""
    import logging

    import ipyparallel as ipp
    from traitlets.config import Config

    from nbtasks.cluster.launchers import LOCAL_CONTROLLER

    config = Config()
    config.LocalEngineSetLauncher.delay = 0
    # ipyparallel ships a module's function by reference (the engine imports its module): the
    # engines find this one, as they found run.py's functions when it was the engines' __main__
    path = os.pathsep.join(p for p in (str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")) if p)
    config.LocalEngineSetLauncher.environment = {"PYTHONPATH": path}
    cluster = ipp.Cluster(n=n, delay=0, controller_args=list(LOCAL_CONTROLLER), config=config,
                          log_level=logging.WARNING)
    client = None
    try:
        client = cluster.start_and_connect_sync()
        client.wait_for_engines(n, timeout=60)
        yield client
    finally:
        if client is not None:
            client.close()
        cluster.stop_cluster_sync()


@contextlib.contextmanager
def dask_client(n: int = ENGINES) -> Iterator[Any]:
    """dask ``distributed``: a LocalCluster of ``n`` worker processes, one thread each (what
    its defaults give on 2 cores), without the dashboard (no web server competing for CPU)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(n, timeout=60)
        yield client


def purge(client: Any) -> None:
    """Forget finished results between repeats, as a long-lived ipyparallel user must."""
    client.purge_local_results("all")
    client.history.clear()


def no_numbers(r: Result, label: str, empty_cells: int, lines: list[str]) -> bool:
    """True when a peer's result has no numbers for a table: not run (no row), or failed (a
    row with the first line of its error, then ``empty_cells`` empty cells)."""
    if r.get("error") == "not run":
        return True
    if "error" in r:
        lines.append(f"| {label} | {r['error'].splitlines()[0][:60]} |" + " |" * empty_cells)
        return True
    return False
