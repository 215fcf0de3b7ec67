"""Engines on two other hosts, started over SSH by ipyparallel's launcher: the notebook's work
gives the serial result there, with code from a local module the hosts cannot read; progress,
cancel, the run store and what the Tasks sidebar reads all work with those engines.

One SSH cluster serves the module (its start-up takes ~15 s: ipyparallel makes about eight
ssh/scp calls per engine).
"""

from __future__ import annotations

import importlib
import os
import sys
import time

import pytest

import nbtasks as nt
from nbtasks.core.states import total
from nbtasks.store import StoreReader
from tests.waiting import wait_until

HELPERS = '''
"""A module beside the notebook: not installed, and the engines' hosts cannot read it."""
import dataclasses
import time

import nbtasks as nt


@dataclasses.dataclass(frozen=True)
class Tally:
    n: int


def clean(line):
    stop = nt.shared("stopwords")
    return " ".join(w for w in line.lower().split() if w not in stop)


def pairs(line):
    for word in line.split():
        yield word, 1


def tally(word, ones):
    return Tally(sum(ones))


def nap(seconds):
    time.sleep(seconds)
    return seconds
'''

LINES = [f"The {w} and the {v} of line {i}" for i, (w, v) in
         enumerate(zip(["cat", "dog", "cat", "owl"] * 6, ["sun", "moon", "rain"] * 8))]


@pytest.fixture(scope="module")
def ssh_cluster(ssh_hosts):
    """Two engines, one on node1 and one on node2; stopping it must stop them there."""
    cluster = nt.Cluster(engines="ssh", config=ssh_hosts.launcher_config(per_host=1, hosts=["node1", "node2"]))
    with cluster:
        yield cluster
    hosts = [ssh_hosts.network["node1"], ssh_hosts.network["node2"]]
    wait_until(lambda: not any(h.processes() for h in hosts), 10, "cluster.stop() ended the engines on the hosts")


@pytest.fixture(scope="module")
def helpers(tmp_path_factory):
    """``helpers.py`` in a directory of the client's, hidden from the hosts, imported here."""
    where = tmp_path_factory.mktemp("notebook")
    (where / "helpers.py").write_text(HELPERS)
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module("helpers")
    finally:
        sys.path.remove(str(where))
        sys.modules.pop("helpers", None)


def test_engines_run_on_the_hosts_and_the_cluster_shows_their_names(ssh_cluster, network):
    rows = ssh_cluster.engines_status()
    assert sorted(row["host"] for row in rows) == ["node1", "node2"]
    assert all(isinstance(row["pid"], int) for row in rows)
    assert repr(ssh_cluster).startswith("<nbtasks.Cluster ssh running, 2/2 engines")
    where = nt.ParallelTask(lambda _: os.uname().nodename).run([0, 1, 2, 3], cluster=ssh_cluster,
                                                               progress=False, timeout=60)
    assert set(where) <= {"node1", "node2"}


def test_a_composed_pipeline_with_local_code_and_shared_data_gives_the_serial_result(ssh_cluster, helpers):
    ssh_cluster.share(stopwords={"the", "and", "of"})
    pipeline = nt.ContainerTask(
        nt.ParallelTask(helpers.clean),
        nt.MapReduceTask(mapper=helpers.pairs, reducer=helpers.tally, partitions=3))
    run = pipeline.submit(LINES, cluster=ssh_cluster, progress=False)
    result = run.result(120)
    assert result == pipeline(LINES)  # the serial result, computed here
    assert result["cat"] == helpers.Tally(12) and "the" not in result
    counts = run.counts()
    assert counts["done"] == total(counts) and counts["failed"] == 0
    assert counts["done"] >= len(LINES)  # the progress counts reached every unit
    hosts = {unit.host for unit in run.units()}
    assert hosts == {"node1", "node2"}, hosts

    reader = StoreReader(os.environ["NBTASKS_STORE"])  # written on the store's own thread, soon after
    wait_until(lambda: (reader.run(run.id) or {}).get("state") == "done", 10, "the store records the run")
    assert reader.run(run.id)["counts"]["done"] == counts["done"]
    units = reader.units(run.id, state="done", limit=1000)["units"]
    assert {u["host"] for u in units} == {"node1", "node2"}


def test_cancel_interrupts_units_running_on_remote_engines(ssh_cluster, helpers):
    run = nt.ParallelTask(helpers.nap).submit([30] * 6, cluster=ssh_cluster, progress=False)
    wait_until(lambda: run.counts()["running"] == 2, 30, "two units running")
    assert run.cancel()
    started = time.monotonic()
    # units that would sleep 30 s more were interrupted: the engines take new work at once
    assert nt.ParallelTask(helpers.nap).run([0, 0], cluster=ssh_cluster, progress=False, timeout=20) == [0, 0]
    assert time.monotonic() - started < 10
    wait_until(lambda: run.settled, 10, "the cancelled run settled")
    assert run.cancelled() and run.counts()["done"] == 0


def test_the_sidebar_lists_the_remote_engines_and_cancels_a_run_on_them(ssh_cluster, helpers):
    reader = StoreReader(os.environ["NBTASKS_STORE"])
    wait_until(lambda: any(c["live"] and {e.get("host") for e in c["engines"]} == {"node1", "node2"}
                            for c in reader.clusters()), 10, "the store shows the cluster's engines")
    run = nt.ParallelTask(helpers.nap).submit([30] * 4, cluster=ssh_cluster, progress=False)
    wait_until(lambda: run.counts()["running"] == 2, 30, "two units running")
    wait_until(lambda: (reader.run(run.id) or {}).get("state") == "running", 10, "the store shows it running")
    reader.request_cancel(run.id, "cancelled from the sidebar")  # what the Cancel button does, via the server
    wait_until(lambda: run.cancelled() and run.settled, 10, "the kernel cancelled the run")
    assert run.cancel_reason == "cancelled from the sidebar"
    assert nt.ParallelTask(helpers.nap).run([0, 0], cluster=ssh_cluster, progress=False, timeout=20) == [0, 0]
    wait_until(lambda: reader.run(run.id)["state"] == "cancelled", 10, "the store records the cancel")


