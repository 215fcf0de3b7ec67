"""A host whose link is cut mid-run: its units run elsewhere, none is lost or counted twice,
and when the link returns the engine left there (an orphan: alive, cut off, still holding
units) is stopped and a new engine starts on that host."""

from __future__ import annotations

import time

import psutil

import nbtasks as nt
from tests.waiting import wait_until


def where(x):
    import os

    time.sleep(0.05)
    return x, os.uname().nodename


def test_a_cut_host_loses_no_unit_and_its_engine_is_replaced_when_the_link_returns(ssh_hosts, network):
    node2 = network["node2"]
    config = ssh_hosts.launcher_config(per_host=1, hosts=["node1", "node2"])
    with nt.Cluster(engines="ssh", config=config) as cluster:
        before = {row["host"]: row for row in cluster.engines_status()}
        assert set(before) == {"node1", "node2"}
        orphan = before["node2"]
        units = 300
        run = nt.ParallelTask(where).submit(range(units), cluster=cluster, progress=False, store=False)
        wait_until(lambda: run.counts()["done"] >= units // 5, 60, "a fifth of the units done")
        node2.cut()
        try:
            results = run.result(180)
            # every unit's result, once, in order; those after the cut came from node1
            assert [x for x, _ in results] == list(range(units))
            records = run.units()
            assert sorted(r.index for r in records) == list(range(units))
            assert {r.host for r in records} == {"node1", "node2"}
            assert orphan["id"] not in cluster.engines  # the controller let it go
        finally:
            node2.restore()
        # back on the network: the orphan is killed on its host, a new engine starts there
        wait_until(lambda: not psutil.pid_exists(orphan["pid"])
                    or psutil.Process(orphan["pid"]).status() == psutil.STATUS_ZOMBIE, 90,
                    "the cut-off engine stopped")
        wait_until(lambda: sorted(r["host"] for r in cluster.engines_status() if r["pid"]) == ["node1", "node2"],
                    90, "a new engine on node2")
        assert nt.ParallelTask(where).run([1, 2], cluster=cluster, progress=False, timeout=60)[0][0] == 1
    wait_until(lambda: not node2.processes(), 20, "nothing of the cluster left on node2")
