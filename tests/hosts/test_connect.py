"""``Cluster.connect`` to a cluster someone else started: a controller on one host, engines on
another, nbtasks attached by the controller's connection file. Stopping the connected
``Cluster`` leaves that cluster running: it is not nbtasks' to stop."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import nbtasks as nt
from tests.hosts import HostsError


def double(x):
    return 2 * x


@pytest.fixture
def elsewhere(network):
    """ipcontroller on node1 (listening on its address), two ipengines on node2."""
    node1, node2 = network["node1"], network["node2"]
    profile = node1.home / "profile_elsewhere"  # on the shared disk: the client reads the connection file
    log = open(node1.home / "elsewhere.log", "ab")
    processes = [node1.popen([sys.executable, "-m", "ipyparallel.controller", f"--profile-dir={profile}",
                              f"--ip={node1.address}", "--HeartMonitor.period=1000"],
                             stdout=log, stderr=subprocess.STDOUT)]
    try:
        engine_file = profile / "security" / "ipcontroller-engine.json"
        deadline = time.monotonic() + 30
        while not engine_file.exists():
            if processes[0].poll() is not None or time.monotonic() > deadline:
                raise HostsError(f"ipcontroller did not start on node1: see {log.name}")
            time.sleep(0.1)
        processes += [node2.popen([sys.executable, "-m", "ipyparallel.engine", f"--file={engine_file}"],
                                  stdout=log, stderr=subprocess.STDOUT) for _ in range(2)]
        yield profile / "security" / "ipcontroller-client.json", processes
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
        for host in (node1, node2):  # nannies of the engines, if they lingered
            for process in host.processes():
                process.kill()


def test_connect_runs_work_on_engines_of_a_cluster_started_elsewhere(elsewhere):
    connection_file, processes = elsewhere
    cluster = nt.Cluster.connect(connection_file=connection_file, n=2, timeout=30)
    try:
        assert repr(cluster).startswith("<nbtasks.Cluster connected running, 2/2 engines")
        assert {row["host"] for row in cluster.engines_status()} == {"node2"}
        run = nt.ParallelTask(double).submit(range(10), cluster=cluster, progress=False)
        assert run.result(60) == [2 * x for x in range(10)]
        assert {unit.host for unit in run.units()} == {"node2"}
    finally:
        cluster.stop()
    assert all(process.poll() is None for process in processes)  # still theirs, still running
