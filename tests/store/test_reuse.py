"""Finished units are kept in the store and reused: same code, parameters and input."""

from __future__ import annotations

import os
import random
import time

import pytest

import nbtasks as nt
from nbtasks.store import StoreReader
from nbtasks.store import recorder
from nbtasks.store.recorder import Store


def executions(marks, x=None) -> int:
    names = os.listdir(marks)
    return len(names) if x is None else sum(1 for n in names if n.split(".")[0] == str(x))


def counting(marks):
    """A task that leaves one file per execution, so tests count runs, not trust them."""

    def work(x: int, scale: int = 1) -> int:
        open(os.path.join(marks, f"{x}.{os.getpid()}.{time.monotonic_ns()}"), "w").close()
        print("unit", x)
        return x * x * scale

    return work


def test_second_run_of_same_task_and_input_runs_nothing(cluster, marks, store):
    task = nt.ParallelTask(counting(marks))
    first = task.submit(list(range(40)), cluster=cluster, store=store, progress=False)
    assert first.result() == [x * x for x in range(40)]
    assert executions(marks) == 40 and first.reused == 0

    again = task.submit(list(range(40)), cluster=cluster, store=store, progress=False)
    assert again.result() == [x * x for x in range(40)]
    assert executions(marks) == 40
    assert again.reused == 40 and again.counts()["done"] == 40
    units = again.units()  # reused units keep their records: output, engine, times
    assert [u.index for u in units] == list(range(40))
    assert units[7].stdout == "unit 7\n" and units[7].result == 49 and units[7].engine is not None


def test_a_task_that_must_always_run_runs_again_while_its_cached_neighbours_are_reused(cluster, marks, store,
                                                                                      tmp_path):
    """``@nt.task(cache=False)`` (a random draw): its units run on every submit and are still
    recorded; the cacheable steps of the same composition come from the store."""
    draws = tmp_path / "draws"
    draws.mkdir()

    @nt.task(cache=False)
    def draw(x: int, directory: str = str(draws)) -> float:
        open(os.path.join(directory, f"{x}.{time.monotonic_ns()}"), "w").close()
        return x + random.random()

    square = nt.task(counting(marks), name="square")
    pipeline = nt.ParallelTask(nt.ContainerTask(square, draw))  # each unit: square, then a draw
    first = pipeline.submit(list(range(6)), cluster=cluster, store=store, progress=False).result(60)
    again = pipeline.submit(list(range(6)), cluster=cluster, store=store, progress=False)
    second = again.result(60)
    assert executions(marks) == 6  # the squares ran once
    assert len(os.listdir(draws)) == 12  # the draws ran both times
    assert first != second and [int(v) for v in second] == [x * x for x in range(6)]
    assert again.reused == 6
    recorded = {u.task: u for u in again.units()}
    assert recorded["draw"].result == second[recorded["draw"].index]  # recorded though never reused
    with pytest.raises(nt.TaskDefinitionError, match="cache must be True or False"):
        nt.task(cache="no")(abs)


def test_cache_false_or_changed_parameters_run_again_and_a_new_input_runs_alone(cluster, marks, store):
    task = nt.ParallelTask(counting(marks))
    task.submit(list(range(10)), cluster=cluster, store=store, progress=False).result()
    assert executions(marks) == 10
    run = task.submit(list(range(10)), cluster=cluster, store=store, cache=False, progress=False)
    assert run.result() == [x * x for x in range(10)] and run.reused == 0
    assert executions(marks) == 20
    run = task.submit(list(range(10)), cluster=cluster, store=store, scale=3, progress=False)
    assert run.result() == [3 * x * x for x in range(10)] and run.reused == 0
    assert executions(marks) == 30
    run = task.submit(list(range(11)), cluster=cluster, store=store, progress=False)
    assert run.result() == [x * x for x in range(11)]
    assert executions(marks) == 31 and run.reused == 10  # per unit: only the new input runs


def test_changed_code_runs_again(cluster, marks, store):
    def make(body: str):
        scope = {"os": os, "time": time, "marks": marks}
        exec(f"def work(x):\n    open(os.path.join(marks, f'{{x}}.{{time.monotonic_ns()}}'), 'w').close()\n"
             f"    return {body}\n", scope)
        return scope["work"]

    nt.ParallelTask(make("x + 1")).submit([1, 2], cluster=cluster, store=store, progress=False).result()
    assert nt.ParallelTask(make("x + 1")).submit([1, 2], cluster=cluster, store=store,
                                                   progress=False).result() == [2, 3]
    assert executions(marks) == 2
    assert nt.ParallelTask(make("x + 2")).submit([1, 2], cluster=cluster, store=store,
                                                   progress=False).result() == [3, 4]
    assert executions(marks) == 4


def test_only_failed_units_run_again(cluster, marks, store, tmp_path):
    flag = tmp_path / "broken"
    flag.write_text("")

    def fragile(x: int) -> int:
        open(os.path.join(marks, f"{x}.{time.monotonic_ns()}"), "w").close()
        if x == 3 and os.path.exists(flag):
            raise ValueError("not yet")
        return -x

    task = nt.ParallelTask(fragile)
    run = task.submit(list(range(8)), cluster=cluster, store=store, on_error="continue", progress=False)
    with pytest.raises(nt.RunFailed):
        run.result()
    assert executions(marks) == 8
    flag.unlink()
    run = task.submit(list(range(8)), cluster=cluster, store=store, progress=False)
    assert run.result() == [-x for x in range(8)]
    assert run.reused == 7
    assert executions(marks) == 9 and executions(marks, 3) == 2


def test_map_reduce_and_sequence_reuse_every_stage(cluster, marks, store):
    mark = counting(marks)

    def words(line: str) -> list:
        mark(len(line))
        return [(w, 1) for w in line.split()]

    def add(word: str, counts: list) -> int:
        return sum(counts)

    lines = ["a b a", "b c", "a"]
    count = nt.MapReduceTask(words, add, partitions=2)
    first = count.submit(lines, cluster=cluster, store=store, progress=False).result()
    n = executions(marks)
    again = count.submit(lines, cluster=cluster, store=store, progress=False)
    assert again.result() == first == {"a": 3, "b": 2, "c": 1}
    assert executions(marks) == n
    assert again.reused == again.counts()["done"] > len(lines)  # the map and the reduce units


def test_large_results_go_to_files_beside_the_store(cluster, store):
    def big(x: int) -> bytes:
        return bytes([x]) * (3 << 20)

    task = nt.ParallelTask(big)
    assert [r[:1] for r in task.submit([1, 2], cluster=cluster, store=store, progress=False).result()] \
        == [b"\x01", b"\x02"]
    Store.at(store).flush()
    files = os.listdir(store + "-results")
    assert files and all(os.path.getsize(os.path.join(store + "-results", f)) > 3 << 20 for f in files)
    assert os.path.getsize(store) < 1 << 20  # the database holds only their names
    again = task.submit([1, 2], cluster=cluster, store=store, progress=False)
    assert [len(r) for r in again.result()] == [3 << 20] * 2 and again.reused == 2


def test_store_false_records_nothing(cluster, store):
    run = nt.ParallelTask(abs).submit([-1, -2], cluster=cluster, store=False, progress=False)
    assert run.result() == [1, 2]
    assert run.store is None


def test_reader_shows_runs_units_and_failures(cluster, store):
    def maybe(x: int) -> int:
        print("working on", x)
        if x == 5:
            raise KeyError(x)
        return x

    run = nt.ParallelTask(maybe).submit(list(range(12)), cluster=cluster, store=store, on_error="continue",
                                        progress=False)
    run.wait(30)
    Store.at(store).flush()
    reader = StoreReader(store)
    listed = reader.runs()
    assert [r["id"] for r in listed["runs"]] == [run.id]
    assert reader.runs(state="failed")["total"] == 1 and reader.runs(state="done")["total"] == 0
    summary = reader.run(run.id)
    assert summary["name"] == "parallel(maybe)" and summary["state"] == "failed"
    assert summary["counts"]["done"] == 11 and summary["counts"]["failed"] == 1
    assert summary["tree"]["children"][0]["counts"]["failed"] == 1
    failed = reader.units(run.id, state="failed")
    assert failed["total"] == 1
    unit = failed["units"][0]
    assert unit["unit"] == 5 and "KeyError" in unit["error"] and "raise KeyError" in unit["traceback"]
    done = reader.units(run.id, state="done", offset=4, limit=3)
    assert done["total"] == 11 and [u["unit"] for u in done["units"]] == [4, 6, 7]
    assert done["units"][0]["stdout"] == "working on 4\n"
    assert reader.units("nope") is None and reader.run("nope") is None


def test_cancel_requested_through_the_store_stops_the_run(cluster, store):
    run = nt.ParallelTask(time.sleep).submit([0.2] * 200, cluster=cluster, store=store, progress=False)
    deadline = time.monotonic() + 10
    while StoreReader(store).run(run.id) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    asked = time.monotonic()
    assert StoreReader(store).request_cancel(run.id, "stop from the sidebar")["cancel_requested"]
    assert run.wait(5) and run.cancelled()
    assert time.monotonic() - asked < 2.0
    assert run.cancel_reason == "stop from the sidebar"
    deadline = time.monotonic() + 5
    while StoreReader(store).run(run.id)["state"] != "cancelled" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert StoreReader(store).run(run.id)["state"] == "cancelled"


def test_a_started_cluster_reports_its_engines_until_it_stops(store):
    own = nt.Cluster(n=1, store=store).start()
    try:
        deadline = time.monotonic() + 10
        while not StoreReader(store).clusters() and time.monotonic() < deadline:
            time.sleep(0.1)
        [reported] = StoreReader(store).clusters()  # before any run
        assert reported["live"] and [e["id"] for e in reported["engines"]] == own.engines
        assert reported["engines"][0]["busy"] is False and reported["engines"][0]["pid"]
    finally:
        own.stop()
    deadline = time.monotonic() + 5
    while StoreReader(store).clusters() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert StoreReader(store).clusters() == []


def test_a_run_that_ends_while_another_goes_on_is_never_seen_done_without_its_units(cluster, store):
    """Finished units wait for a pause in the work before they are written, but a run's end
    writes them with its final state: a reader (the Tasks sidebar) that sees it done sees them."""
    long = nt.ParallelTask(time.sleep).submit([0.2] * 100, cluster=cluster, progress=False, store=store)
    try:
        short = nt.ParallelTask(abs).submit(range(-50, 0), cluster=cluster, progress=False, store=store)
        short.result(60)
        reader = StoreReader(store)
        deadline = time.monotonic() + 10
        while (reader.run(short.id) or {}).get("state") != "done":
            assert time.monotonic() < deadline, "the store never recorded the run's end"
            time.sleep(0.01)
        assert not long.done()  # the other run still goes on
        assert len(reader.units(short.id, state="done", limit=100)["units"]) == 50
    finally:
        long.cancel()


def test_a_run_that_ends_is_written_soon_however_many_runs_start_after_it(cluster, store, monkeypatch):
    """A run's end is written a moment later (``START_QUIET``: the next run of a loop sends
    its first chunks meanwhile), and runs that keep starting do not put it off: a reader (the
    Tasks sidebar) sees it. The moment is made longer here so that a run starts every 10 ms
    within it."""
    monkeypatch.setattr(recorder, "START_QUIET", 0.5)
    first = nt.ParallelTask(abs).submit(range(-4, 0), cluster=cluster, progress=False, store=store)
    first.result(60)
    ended = time.monotonic()
    reader = StoreReader(store)
    starting = []
    try:
        while (reader.run(first.id) or {}).get("state") != "done":
            assert time.monotonic() - ended < 0.5 + 1.0, "the ended run waited for the runs that started"
            # cache=False: a lookup would write what waits
            starting.append(nt.ParallelTask(time.sleep).submit([1.0], cluster=cluster, progress=False,
                                                                store=store, cache=False))
            time.sleep(0.01)
        assert len(reader.units(first.id, state="done", limit=10)["units"]) == 4
        assert len(starting) >= 10
    finally:
        for run in starting:
            run.cancel()
