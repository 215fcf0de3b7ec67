"""Lanes (nbtasks/cluster/lanes.py): chunks go to each engine over a socket of the
client's own, beside ipyparallel, and everything else still reaches the engines."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import psutil
import pytest
import zmq

import nbtasks as nt
from nbtasks.cluster.engine_lane import run_lane
from nbtasks.cluster.lanewire import Wire


def slow(x):
    time.sleep(0.1)
    return x


def test_sharing_during_a_long_run_waits_for_the_chunks_on_the_engines_not_the_run(cluster):
    """Sharing a value closes the lanes first: it waits for the chunks already on an
    engine, not for the whole run (a lane would hold the engine to its end)."""
    run = nt.ParallelTask(slow).submit(range(80), cluster=cluster, progress=False, store=False)  # ~4 s
    while run.counts()["done"] < 4:
        time.sleep(0.01)
    cluster.share(lanes_test_factor=3)
    assert not run.done()
    assert run.result(60) == list(range(80))
    assert cluster.client[:].apply_sync(os.getpid)  # an apply of the user's own, once the run is over
    assert nt.ParallelTask(lambda x: x * nt.shared("lanes_test_factor")).run([1, 2], cluster=cluster,
                                                                             progress=False) == [3, 6]
    cluster.unshare("lanes_test_factor")


class Touch:
    """Unpickling this creates ``path``: what a stranger's pickle could do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


def test_a_message_not_signed_with_the_lane_key_is_dropped_unread(cluster, tmp_path):
    assert nt.ParallelTask(lambda x: x + 1).run([1, 2, 3], cluster=cluster, progress=False, store=False) == [2, 3, 4]
    lanes = cluster._dispatcher.lanes
    assert lanes is not None, "a local cluster's chunks go down lanes"
    marker = tmp_path / "unpickled"
    evil = pickle.dumps(("hello", (Touch(marker),)))
    stranger = zmq.Context.instance().socket(zmq.DEALER)
    try:
        stranger.connect(lanes.address)
        stranger.send_multipart([b"x" * 32, evil])  # a made-up signature
        stranger.send_multipart(Wire(os.urandom(32)).pack("outcome", 0, head=evil))  # another key's
        stranger.send_multipart([evil])
        time.sleep(0.5)
    finally:
        stranger.close(linger=0)
    assert not marker.exists()
    assert nt.ParallelTask(lambda x: x * 2).run([1, 2, 3], cluster=cluster, progress=False, store=False) == [2, 4, 6]


def test_an_engine_ends_its_lane_when_the_client_goes_quiet(cluster):
    """A client that vanished does not hold an engine: after ``quiet`` seconds without a
    word, its lane returns and the engine takes applies again."""
    wire = Wire(os.urandom(32))
    router = zmq.Context.instance().socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    try:
        engine = cluster.client.ids[0]
        ar = cluster.client[engine].apply_async(run_lane, f"tcp://127.0.0.1:{port}", b"quiet-lane", wire.key, 0.3)
        assert router.poll(30_000), "the lane said hello"
        identity, *frames = router.recv_multipart()
        assert identity == b"quiet-lane" and wire.unpack(frames).kind == "hello"
        router.send_multipart([identity, *wire.pack("welcome")])
        assert ar.get(30) == 0  # no chunk ran; it ended by itself
        assert router.poll(5_000)
        assert wire.unpack(router.recv_multipart()[1:]).kind == "bye"
    finally:
        router.close(linger=0)


def test_engines_that_cannot_reach_the_lanes_get_their_chunks_by_apply(monkeypatch):
    # 192.0.2.1 is TEST-NET-1: nothing answers there, as a client behind a NAT would not
    monkeypatch.setattr(nt.Cluster, "lane_hosts", lambda self: ("127.0.0.1", "192.0.2.1"))
    with nt.Cluster(n=2) as own:
        run = nt.ParallelTask(lambda x: x * x).submit(range(50), cluster=own, progress=False, store=False)
        assert run.result(60) == [x * x for x in range(50)]
        assert nt.ParallelTask(lambda x: -x).run([1, 2], cluster=own, progress=False, store=False) == [-1, -2]
        deadline = time.monotonic() + 30  # each engine gives its lane up once no hello came back
        while own._dispatcher.lanes.apply_only != set(own.engines):
            assert time.monotonic() < deadline, own._dispatcher.lanes.apply_only
            time.sleep(0.1)
        assert nt.ParallelTask(lambda x: x + 1).run(range(20), cluster=own, progress=False,
                                                    store=False) == list(range(1, 21))


@pytest.mark.parametrize("lanes", ["1", "0"])
def test_results_records_and_progress_are_the_same_with_and_without_lanes(lanes, monkeypatch):
    monkeypatch.setenv("NBTASKS_LANES", lanes)

    def report(x):
        nt.progress(0.5, f"half of {x}")
        print("unit", x)
        return x * 10

    with nt.Cluster(n=2) as own:
        run = nt.ParallelTask(report).submit(range(30), cluster=own, progress=False, store=False)
        assert run.result(60) == [x * 10 for x in range(30)]
        records = sorted(run.units(), key=lambda r: r.index)
        assert [r.state for r in records] == ["done"] * 30
        assert {r.engine for r in records} <= set(own.engines)
        assert [r.stdout for r in records] == [f"unit {x}\n" for x in range(30)]
        assert (own._dispatcher.lanes is not None) == (lanes == "1")


def test_a_lane_outcome_that_overtakes_an_earlier_apply_reply_runs_nothing_twice(tmp_path):
    """An engine's first chunk goes by apply and its lane opens behind it. The apply's reply
    comes through the controller, the lane's outcomes straight from the engine: with the
    controller frozen a moment, the later outcomes come first. That is no lost reply (the
    engine answers in order on each way, not across them): no unit runs twice."""

    def once(x, directory=str(tmp_path)):
        with open(os.path.join(directory, f"{x}-{time.time_ns()}"), "w"):
            pass
        time.sleep(0.05)
        return x

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with nt.Cluster(n=2) as own:
        started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        [controller] = [p for p in started if "ipyparallel.controller" in p.cmdline()
                        and "ipyparallel.controller" not in p.parent().cmdline()]  # not its schedulers
        parts = [controller, *controller.children(recursive=True)]
        run = nt.ParallelTask(once).submit(range(40), cluster=own, progress=False, store=False)
        time.sleep(0.03)  # the first chunks and the lanes' applies are on the engines
        for part in parts:
            part.suspend()
        try:
            time.sleep(0.6)  # the first chunks answer into the frozen controller; lanes go on
        finally:
            for part in parts:
                part.resume()
        assert run.result(60) == list(range(40))
        ran = sorted(int(name.split("-")[0]) for name in os.listdir(tmp_path))
        assert ran == list(range(40))
