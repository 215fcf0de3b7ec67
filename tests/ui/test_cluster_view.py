"""The cluster widget lists engines with host, pid, busy/idle and units done."""

import os
import time

import nbtasks as nt
from nbtasks.ui.cluster_view import ClusterView


def test_engines_table_updates_while_runs_go_on(cluster):
    view = ClusterView(cluster)
    pids = set(cluster.client[:].apply_sync(os.getpid))
    deadline = time.monotonic() + 5  # an engine that just joined (a replacement) is checked first
    while not all(f"<td>{pid}</td>" in view.widget.value for pid in pids):
        assert time.monotonic() < deadline, (pids, view.widget.value)
        view.refresh()
        time.sleep(0.05)
    run = nt.ParallelTask(time.sleep).submit([1.0] * 2, cluster=cluster, progress=False)
    deadline = time.monotonic() + 10
    while "nbtasks-engine-busy" not in view.widget.value:
        assert time.monotonic() < deadline
        view.refresh()
        time.sleep(0.05)
    before = sum(r["units_done"] for r in cluster.engines_status())
    run.result(30)
    view.refresh()
    assert sum(r["units_done"] for r in cluster.engines_status()) == before + 2
    assert "nbtasks-engine-busy" not in view.widget.value


def test_a_stopped_cluster_says_so_and_stops_refreshing():
    c = nt.Cluster(n=1).start()
    view = ClusterView(c)
    assert "1 engine(s)" in view.widget.value
    c.stop()
    assert view.refresh() is True
    assert "stopped" in view.widget.value
