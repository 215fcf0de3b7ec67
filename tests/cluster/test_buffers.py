"""Big buffers (NumPy arrays) travel beside the pickle, as zmq frames: inputs, results
and shared values come back equal, writable where they were, recorded in the store,
and the memory of an array that arrived is the frame's (no copy was made)."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

import nbtasks as nt
from nbtasks.core.serialize import OUT_OF_BAND, Pickled, dump, loads
from nbtasks.store.recorder import Store

BIG = 1 << 20  # bytes: well above OUT_OF_BAND


def arrays() -> list[np.ndarray]:
    """Every kind of array a user sends: each must come back as it was."""
    rng = np.random.default_rng(7)
    big = rng.random(BIG // 8)
    return [
        big,                                                        # 1-D float64, out of band
        rng.integers(0, 1000, (512, 300), dtype=np.int32),          # 2-D
        np.asfortranarray(rng.random((300, 400))),                  # Fortran order
        big[::3],                                                   # not contiguous: copied in-band
        np.array(2.5),                                              # 0-d
        np.array([{"a": 1}, "text", None] * 30_000, dtype=object),  # objects: in-band
        np.zeros(60_000, dtype=[("id", "i4"), ("xy", "f8", (2,))]),  # structured
        np.arange(10, dtype=np.uint8),                              # small: in-band
    ]


def fortran(a: np.ndarray) -> bool:
    return a.flags.f_contiguous and not a.flags.c_contiguous


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.dtype == b.dtype and a.shape == b.shape and fortran(a) == fortran(b)
            and (np.array_equal(a, b) if a.dtype != object else a.tolist() == b.tolist()))


def memory_owner(a: np.ndarray) -> str:
    """The type of the object whose memory the array is built on."""
    base = a
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    while isinstance(base, memoryview):
        base = base.obj
    return type(base).__name__


def identity(a):
    return a


def inspect_input(a: np.ndarray) -> tuple[str, bool]:
    return memory_owner(a), a.flags.writeable


def test_arrays_in_inputs_and_results_come_back_equal(cluster):
    sent = arrays()
    back = nt.ParallelTask(identity).submit(sent, cluster=cluster, progress=False, cache=False).result(60)
    assert len(back) == len(sent)
    for i, (a, b) in enumerate(zip(sent, back)):
        assert same(a, b), f"array {i} ({a.dtype}, {a.shape}) changed on the way"
        assert b.flags.writeable


def test_big_arrays_arrive_in_the_frames_they_came_in_and_the_pickle_stays_small(cluster):
    big, small = np.ones(BIG // 8), np.ones(10)
    pickled = dump([big, small], "inputs")
    assert len(pickled.head) < 1000 and [b.nbytes for b in pickled.buffers] == [BIG]  # the pickle holds no data
    seen = nt.ParallelTask(inspect_input).submit([big, small], cluster=cluster, progress=False,
                                                 cache=False).result(60)
    # built on the memory of the zmq frame it came in (a copy would own bytes of its own),
    # writable all the same; a small one was inside the pickle
    assert seen == [("Frame", True), ("bytearray", True)]
    result = nt.task(lambda n: np.full(n, 3.0)).submit(BIG // 8, cluster=cluster, progress=False,
                                                       cache=False).result(60)
    assert memory_owner(result) == "Frame" and result.flags.writeable


def bump(a: np.ndarray) -> np.ndarray:
    a += 1  # in place, as users do with "their" copy
    return a


def test_a_unit_may_change_its_input_in_place_and_the_client_copy_stays(cluster):
    original = np.arange(BIG // 8, dtype=np.float64)
    keep = original.copy()
    out = nt.ParallelTask(bump).submit([original, original[:10]], cluster=cluster, progress=False,
                                       cache=False).result(60)
    assert np.array_equal(out[0], keep + 1) and np.array_equal(out[1], keep[:10] + 1)
    assert np.array_equal(original, keep)  # the client's array is not the engine's
    frozen = np.ones(BIG // 8)
    frozen.flags.writeable = False  # read-only arrays arrive read-only, as pickle always made them
    with pytest.raises(nt.UnitError, match="read-only"):
        nt.ParallelTask(bump).submit([frozen], cluster=cluster, progress=False, cache=False).result(60)


def test_results_with_buffers_are_stored_and_read_back_as_they_came(cluster, tmp_path):
    store = str(tmp_path / "runs.db")
    inputs = [np.full(BIG // 8, float(i)) for i in range(3)] + [np.arange(5.0)]
    task = nt.ParallelTask(lambda a: (a * 2, a.dtype.name))
    first = task.submit(inputs, cluster=cluster, store=store, progress=False)
    got = first.result(60)
    got[0][0][:] = -1.0  # the user changes a result in place before the store writes it
    Store.at(store).flush()
    again = task.submit(inputs, cluster=cluster, store=store, progress=False)
    reused = again.result(60)
    assert again.reused == len(inputs)
    for a, (b, name) in zip(inputs, reused):
        assert np.array_equal(b, a * 2) and name == "float64" and b.flags.writeable  # as computed
    assert os.listdir(store + "-results")  # the big ones went to files, their buffers after the pickle


def test_runs_with_array_results_are_listed_by_a_reader_without_numpy(cluster, tmp_path, python_script):
    store = str(tmp_path / "runs.db")
    run = nt.ParallelTask(lambda n: np.ones(n)).submit([BIG // 8, 3], cluster=cluster, store=store, progress=False)
    run.result(60)
    Store.at(store).flush()
    command = python_script(f"""
import sys
sys.modules["numpy"] = None  # importing numpy now fails
from nbtasks.store import StoreReader
reader = StoreReader({store!r})
[listed] = reader.runs()["runs"]
units = reader.units(listed["id"], state="done")
print(listed["name"], listed["state"], units["total"])
""")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["parallel(<lambda>)", "done", "2"]


def test_many_buffers_in_one_reply(cluster):
    """More buffers than a reply may carry as frames (ipyparallel pickles a result of 64 items
    or more whole): the smallest are joined into one frame."""
    parts = nt.task(lambda n: [np.full(OUT_OF_BAND // 8 + i, i, dtype=np.float64) for i in range(n)])
    out = parts.submit(150, cluster=cluster, progress=False, cache=False).result(60)
    assert [len(a) for a in out] == [OUT_OF_BAND // 8 + i for i in range(150)]
    assert all((a == i).all() and a.flags.writeable for i, a in enumerate(out))


def shared_sum(scale: float) -> tuple[float, str]:
    table = nt.shared("table")
    return float(table.sum()) * scale, memory_owner(table)


def test_shared_arrays_go_as_frames_and_as_they_were_when_shared(cluster):
    table = np.ones(BIG // 8)
    cluster.share(table=table)
    try:
        table[:] = 5.0  # changing the client's array later reaches no engine
        out = nt.ParallelTask(shared_sum).submit([1.0, 2.0], cluster=cluster, progress=False, cache=False)
        assert out.result(60) == [(BIG / 8, "Frame"), (BIG / 4, "Frame")]
    finally:
        cluster.unshare("table")


def test_a_result_that_cannot_travel_fails_its_unit_and_names_it(cluster):
    def unit(i: int):
        return (np.ones(BIG // 8), threading.Lock()) if i == 1 else np.ones(BIG // 8)

    run = nt.ParallelTask(unit).submit([0, 1, 2], cluster=cluster, progress=False, cache=False,
                                       on_error="continue")
    with pytest.raises(nt.RunFailed) as failed:
        run.result(60)
    assert "the result of task" in str(failed.value) and "cannot be pickled" in str(failed.value)
    assert run.counts()["done"] == 2


def test_unpicklable_input_next_to_arrays_is_named_before_dispatch(cluster):
    with pytest.raises(TypeError, match=r"unit 1 \(input of task 'identity'\) .*lock"):
        nt.ParallelTask(identity).submit([np.ones(BIG // 8), {"lock": threading.Lock()}], cluster=cluster,
                                         progress=False, cache=False).result(60)


def test_arrays_an_engine_sent_before_it_died_are_kept_and_recorded(tmp_path):
    """Units that took longer than sending their arrays again would go back as they finish
    (ipyparallel's data channel): kill -9 their engine mid-chunk, and none of them runs
    twice; their results come back equal and are read back from the store."""
    marks = tmp_path / "marks"
    marks.mkdir()
    store = str(tmp_path / "runs.db")

    def unit(x, directory=str(marks)):
        open(os.path.join(directory, f"start-{x}-{os.getpid()}"), "w").close()
        time.sleep(0.2)
        open(os.path.join(directory, f"done-{x}-{os.getpid()}-{time.monotonic_ns()}"), "w").close()
        return np.full(BIG // 32, float(x))  # 256 KiB: ~3 ms to send again at 100 MB/s

    def marked(kind, pid=None):
        return [n.split("-")[1] for n in os.listdir(marks)
                if n.startswith(kind) and (pid is None or n.split("-")[2] == str(pid))]

    with nt.Cluster(n=2) as own:
        pids = dict(zip(own.client.ids, own.client[:].apply_sync(os.getpid)))
        victim = own.engines[0]
        task = nt.ParallelTask(unit)
        run = task.submit(range(40), cluster=own, progress=False, store=store)
        deadline = time.monotonic() + 60
        def just_started():
            """A unit the victim started 20-70 ms ago: the kill lands well before it ends, and
            after what the engine sent before it started has left (a unit that ended, but
            whose result had not left, would rightly run again)."""
            for x in set(marked("start", pids[victim])) - set(marked("done", pids[victim])):
                path = marks / f"start-{x}-{pids[victim]}"
                if path.exists() and 0.02 < time.time() - path.stat().st_mtime < 0.07:
                    return True
            return False

        # past its first chunks (the first probes alone), at the start of a unit
        while len(marked("done", pids[victim])) < 3 or not just_started():
            assert time.monotonic() < deadline
            time.sleep(0.001)
        os.kill(pids[victim], signal.SIGKILL)
        out = run.result(120)
        assert all(np.array_equal(a, np.full(BIG // 32, float(x))) for x, a in enumerate(out))
        ran = [marked("done").count(str(x)) for x in range(40)]
        assert ran == [1] * 40, [x for x in range(40) if ran[x] != 1]
        Store.at(store).flush()
        again = task.submit(range(40), cluster=own, progress=False, store=store)
        assert all(np.array_equal(a, np.full(BIG // 32, float(x))) for x, a in enumerate(again.result(60)))
        assert again.reused == 40


def test_framed_bytes_read_back_and_plain_pickles_still_do():
    value = {"a": np.arange(BIG // 8), "b": [1, 2], "c": np.ones(BIG // 8), "d": np.zeros(BIG // 16)}
    pickled = dump(value, "a value")
    framed = pickled.to_bytes()  # as the store writes it
    assert len(pickled.head) < 1000 and len(framed) - pickled.nbytes < 100
    back = loads(framed)  # from bytes (read-only): copied where the original was writable
    assert np.array_equal(back["a"], value["a"]) and back["a"].flags.writeable and back["b"] == [1, 2]
    assert loads(pickle.dumps(value, protocol=5))["b"] == [1, 2]  # what older stores hold
    wire = pickled.wire(limit=2)  # the two smallest buffers are joined into one frame
    assert [memoryview(f).nbytes for f in wire[2:]] == [BIG, BIG + BIG // 2]
    back = Pickled.from_wire(wire).loads()
    assert all(np.array_equal(back[k], value[k]) for k in "acd")
