"""bench/scale.py counts what it says it counts: the requests the hub routes, the IOPub
messages by type, the run store's rows, and it leaves no process of its cluster behind."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import scale  # noqa: E402  (bench/ is not a package)
import watch  # noqa: E402


def test_a_point_counts_requests_messages_and_rows_and_stops_its_cluster():
    point = scale.run_point(2, units_per_engine=10, repeats=1, peers=True, idle_s=0.5)

    run = point["runs"][0]
    assert run["stored"]["units"] == 20
    # every chunk nbtasks sent is one row in the run store; chunks go down the engines' lanes
    # (nbtasks/cluster/lanes.py), not through the hub: it routes one apply per engine at most
    # (a lane's, counted once it ends), each with busy and idle on IOPub, and no streamed units
    assert run["chunks"] == run["stored"]["rows"] > 0
    assert run["requests"] <= 2 and run["iopub"].get("status", 0) <= 4
    assert run["iopub"].get("data_message", 0) == 0
    one, ten = point["peers"]["ipp-map-1"], point["peers"]["ipp-map-10"]
    assert (one["requests"], one["iopub"]["status"]) == (20, 40)
    assert (ten["requests"], ten["iopub"]["status"]) == (2, 4)
    # CPU is counted (psutil: in 10 ms ticks, so one short sample may read 0; all of them may not)
    samples = [run, *point["peers"].values()]
    assert sum(s["cpu"]["hub"] for s in samples) > 0 and sum(s["cpu"]["engines"] for s in samples) > 0
    assert run["log_bytes"] > 0

    deadline = time.monotonic() + 10
    while watch.cluster_processes(point["cluster_id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert watch.cluster_processes(point["cluster_id"]) == []

    text = "\n".join(scale.report({"2 engines": point}))
    assert "| ipyparallel `LoadBalancedView.map`, chunksize=10 | 2 | 20 |" in text
    assert "error" not in text
