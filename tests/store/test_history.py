"""Results outlive the kernel: a later process lists an earlier one's runs with ``nt.runs``
and loads them as ``Run``s (result, unit records, failures, counts, widget), lost ones too."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import pathlib
import sqlite3
import subprocess
import sys
import time

import pytest

import nbtasks as nt
from nbtasks.store import history
from nbtasks.store.history import LOST, RunLost, StoredRun
from nbtasks.store.housekeeping import drop_oldest
from nbtasks.store.results import ResultNotKept
from nbtasks.ui.run_view import RunView
from tests.store.test_resume import kill_tree

EARLIER = r'''
import sys, threading, time
from dataclasses import dataclass
import nbtasks as nt

@dataclass
class Summary:          # defined in the script: the later process has no such module
    total: int
    squares: list

@nt.task(tag="math")
def square(x):
    print("unit", x)
    return x * x

def flaky(x):
    if x == 3:
        raise ValueError("three")
    return x

with nt.Cluster(2, store=sys.argv[1]) as cluster:
    summing = nt.ParallelTask(square, collect=lambda rs: Summary(sum(rs), list(rs)), name="summing")
    a = summing.submit(range(10), cluster=cluster, progress=False)
    a.result()
    b = nt.ParallelTask(flaky).submit(range(6), cluster=cluster, progress=False, on_error="continue")
    b.wait()
    c = nt.ParallelTask(abs, collect=lambda rs: threading.Lock()).submit([-1, 2], cluster=cluster,
                                                                       progress=False)
    c.result()
    d = nt.ParallelTask(time.sleep).submit([30] * 2, cluster=cluster, progress=False)
    time.sleep(0.5)
    d.cancel()
    d.wait()
    print("IDS", a.id, b.id, c.id, d.id, flush=True)
'''

KILLED = r'''
import os, sys, time
import nbtasks as nt

marks = sys.argv[2]

def work(x):
    time.sleep(0.02)
    open(os.path.join(marks, f"{x}"), "w").close()
    return 3 * x

with nt.Cluster(2, store=sys.argv[1]) as cluster:
    run = nt.ParallelTask(work, name="slow").submit(list(range(300)), cluster=cluster, progress=False)
    print("ID", run.id, flush=True)
    run.result()
'''


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """An earlier process's store: runs done (a result from a class of its own), failed
    (on_error="continue"), done with an unpicklable result, and cancelled."""
    where = tmp_path_factory.mktemp("history")
    script = where / "earlier.py"
    script.write_text(EARLIER)
    store = str(where / "runs.db")
    out = subprocess.run([sys.executable, str(script), store], capture_output=True, text=True, timeout=180,
                         env=dict(os.environ, IPYTHONDIR=str(where / "ipython")))
    assert out.returncode == 0, out.stderr[-3000:]
    ids = next(line for line in out.stdout.splitlines() if line.startswith("IDS")).split()[1:]
    return store, dict(zip("abcd", ids)), str(script)


def by_id(runs):
    return {r.id: r for r in runs}


def test_a_later_process_loads_the_result_and_unit_records_of_a_finished_run(earlier):
    store, ids, script = earlier
    runs = nt.runs(store=store)
    assert [r.id for r in runs] == [ids["d"], ids["c"], ids["b"], ids["a"]]  # newest first
    run = by_id(runs)[ids["a"]]
    assert isinstance(run, nt.Run) and isinstance(run, StoredRun)
    assert run.done() and run.state is nt.RunState.DONE and run.exception() is None
    summary = run.result()
    assert type(summary).__name__ == "Summary" and summary.total == 285
    assert summary.squares == [x * x for x in range(10)]
    assert run.task.name == "summing" and run.notebook == script
    assert run.counts()["done"] == 10 and run.counts(by="tag")["math"]["done"] == 10
    assert run.elapsed > 0
    units = run.units()
    assert [u.index for u in units] == list(range(10))
    assert all(u.state is nt.UnitState.DONE and u.tag == "math" and u.engine in (0, 1) for u in units)
    assert all(u.host and u.pid and u.start <= u.end for u in units)
    assert [u.stdout for u in units] == [f"unit {x}\n" for x in range(10)]
    assert [u.result for u in units] == [None] * 10  # results are read when asked
    assert [u.result for u in run.units(results=True)] == [x * x for x in range(10)]
    assert sorted(u.result for u in run.as_completed()) == sorted(x * x for x in range(10))
    explained = run.explain()["square"]  # as its kernel explained it
    assert explained.units == 10 and explained.reused == 0 and sum(explained.ran.values()) == 10
    assert run.cancel() is False  # it ended
    assert run.failures == []


def test_a_failed_run_gives_its_failures_with_tracebacks(earlier):
    store, ids, _ = earlier
    [run] = nt.runs(store=store, state="failed")
    assert run.id == ids["b"] and run.state is nt.RunState.FAILED
    error = run.exception()
    assert isinstance(error, nt.RunFailed) and "unit 3" in str(error)
    with pytest.raises(nt.RunFailed):
        run.result()
    [failure] = run.failures
    assert isinstance(failure, nt.UnitError) and failure.index == 3 and "ValueError: three" in failure.error
    assert "raise ValueError" in failure.traceback and failure.engine in (0, 1)
    assert "(input 3)" in str(failure)
    [failed] = run.units(state="failed")
    assert failed.error is failure and failed.index == 3
    assert [u.index for u in run.units()] == list(range(6))
    assert [u.result for u in run.units(state="done", results=True)] == [0, 1, 2, 4, 5]
    assert run.counts() | {"retried": 0} == {"queued": 0, "running": 0, "done": 5, "failed": 1, "retried": 0,
                                             "cancelled": 0}


def test_an_unpicklable_result_and_a_cancelled_run(earlier):
    store, ids, _ = earlier
    loaded = by_id(nt.runs(store=store))
    unpicklable = loaded[ids["c"]]
    assert unpicklable.state is nt.RunState.DONE
    with pytest.raises(ResultNotKept, match="could not be pickled.*lock"):
        unpicklable.result()
    assert [u.result for u in unpicklable.units(results=True)] == [1, 2]  # its units' results are kept
    cancelled = loaded[ids["d"]]
    assert cancelled.cancelled() and cancelled.done() and cancelled.cancel() is True
    assert cancelled.cancel_reason == "cancelled by the user"
    with pytest.raises(cf.CancelledError):
        cancelled.result()
    counts = cancelled.counts()
    assert counts["running"] == counts["queued"] == 0 and counts["cancelled"] == 2  # never coming back


def test_filters(earlier):
    store, ids, script = earlier
    assert [r.id for r in nt.runs(store=store, name="summing")] == [ids["a"]]
    assert [r.id for r in nt.runs(store=store, tag="math")] == [ids["a"]]  # a tag of a task inside the run
    assert [r.id for r in nt.runs(store=store, tag="flaky")] == [ids["b"]]  # the name is the default tag
    assert [r.id for r in nt.runs(store=store, state=nt.RunState.CANCELLED)] == [ids["d"]]
    assert [r.id for r in nt.runs(store=store, state="done")] == [ids["c"], ids["a"]]
    assert nt.runs(store=store, state="lost") == []
    assert len(nt.runs(store=store, notebook=script)) == 4
    assert len(nt.runs(store=store, notebook=os.path.basename(script))) == 4  # by its name alone
    assert nt.runs(store=store, notebook="other.ipynb") == []
    assert nt.runs(store=store, notebook="rlier.py") == []  # a name, not any suffix
    assert [r.id for r in nt.runs(store=store, limit=2)] == [ids["d"], ids["c"]]
    assert [r.id for r in nt.runs(store=store, name="summing", state="failed")] == []
    assert nt.runs(store=os.path.join(os.path.dirname(store), "none.db")) == []


@pytest.mark.parametrize("kwargs, error, words", [
    ({"state": "finished"}, ValueError, "state=.*'lost'"),
    ({"name": 3}, TypeError, "name=.*not 3"),
    ({"tag": ""}, TypeError, "tag="),
    ({"notebook": 1.5}, TypeError, "notebook="),
    ({"limit": 0}, ValueError, "limit="),
    ({"limit": True}, ValueError, "limit="),
    ({"store": ":memory:"}, ValueError, "in-memory"),
    ({"store": 7}, TypeError, "store="),
])
def test_bad_filters_are_clear_errors(kwargs, error, words):
    with pytest.raises(error, match=words):
        nt.runs(**kwargs)


def test_a_loaded_run_shows_as_it_ended_in_its_widget(earlier):
    store, ids, _ = earlier
    loaded = by_id(nt.runs(store=store))
    view = RunView(loaded[ids["b"]])
    assert view.final  # drawn once, nothing to follow
    assert "nbtasks-state-failed" in view.header.value and "5 done · 1 failed" in view.header.value
    leaf = view.rows[1]
    assert "<b>6</b>/6" in leaf.stats.value and leaf.bar.bar_style == "danger"
    assert "unit 3 (input 3)" in leaf.failures.value and "raise ValueError" in leaf.failures.value
    assert view.cancel_button.disabled
    done = RunView(loaded[ids["a"]])
    assert "nbtasks-state-done" in done.header.value
    assert all(row.bar.value == 1.0 and row.bar.bar_style == "success" for row in done.rows.values())
    assert "unit 7" in done.output.value  # what the units printed


def test_a_killed_kernels_run_shows_lost_with_what_it_finished(tmp_path, python_script, monkeypatch):
    marks = tmp_path / "marks"
    marks.mkdir()
    store = str(tmp_path / "runs.db")
    command = python_script(KILLED) + [store, str(marks)]
    kernel = subprocess.Popen(command, env=dict(os.environ, IPYTHONDIR=str(tmp_path / "ipython")),
                              stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(os.listdir(marks)) < 120 and time.monotonic() < deadline and kernel.poll() is None:
        time.sleep(0.02)
    assert kernel.poll() is None, "the run ended before its kernel could be killed"
    kill_tree(kernel)
    run_id = kernel.stdout.readline().split()[1]

    monkeypatch.setattr(history, "STALE_AFTER", 0.5)  # lost after 0.5 s without a write, not 15
    time.sleep(0.6)
    [run] = nt.runs(store=store, state="lost")
    assert run.id == run_id and run.state is LOST and run.state == "lost"
    assert run.done() and not run.cancelled() and run.cancel() is False
    units = run.units(results=True)
    assert 0 < len(units) < 300
    assert all(u.result == 3 * u.index for u in units)  # what it finished, results too
    assert len({u.index for u in units}) == len(units)
    with pytest.raises(RunLost, match=rf"was lost.*{len(units)} of 300 units had finished.*reuses them"):
        run.result()
    assert isinstance(run.exception(), RunLost) and run.error is run.exception()
    assert run.counts()["done"] >= 1
    view = RunView(run)
    assert "nbtasks-state-lost" in view.header.value and "was lost" in view.header.value
    assert nt.runs(store=store, state="running") == []


def test_a_run_of_a_schema_1_store_loads_without_its_result(tmp_path):
    """A store an older nbtasks wrote, read as it is: its runs list; their results were not kept."""
    path = tmp_path / "runs.db"
    with sqlite3.connect(path) as old:
        old.executescript((pathlib.Path(__file__).parent / "schema1.sql").read_text())
        old.execute("INSERT INTO meta VALUES ('app', 'nbtasks'), ('schema', '1')")
        tree = {"id": 0, "name": "before", "kind": "leaf", "depth": 0, "children": [],
                "counts": {"queued": 0, "running": 0, "done": 1, "failed": 0, "retried": 0, "cancelled": 0}}
        old.execute("INSERT INTO runs (id, name, params, tree, counts, total, state, submitted, ended, updated) "
                    "VALUES ('0123456789ab', 'before', '{}', ?, ?, 1, 'done', 1.0, 2.0, 2.0)",
                    (json.dumps(tree), json.dumps(tree["counts"])))
    [run] = nt.runs(store=path)
    assert run.task.name == "before" and run.done() and run.counts()["done"] == 1 and run.elapsed == 1.0
    with pytest.raises(ResultNotKept, match="before nbtasks kept runs' results"):
        run.result()
    assert list(run.explain()) == []  # no explanation was recorded then


def test_a_result_the_size_limit_dropped_is_a_clear_error_and_its_records_stay(cluster, tmp_path):
    path = str(tmp_path / "runs.db")
    run = nt.ParallelTask(abs, collect=sum).submit([-1, -2, 3], cluster=cluster, store=path, progress=False)
    assert run.result(30) == 6
    [loaded] = nt.runs(store=path)  # this process's own run: written before it is read
    assert loaded.id == run.id and loaded.result() == 6
    conn = sqlite3.connect(path)
    try:
        assert drop_oldest(conn, path + "-results", limit=1).runs == 1
    finally:
        conn.close()
    [dropped] = nt.runs(store=path)
    with pytest.raises(ResultNotKept, match="dropped to keep the run store .* within its size limit"):
        dropped.result()
    with pytest.raises(ResultNotKept, match="result of unit 0 of task 'abs'.*size limit"):
        dropped.units(results=True)
    assert [u.index for u in dropped.units()] == [0, 1, 2] and dropped.counts()["done"] == 3


GOING_ON = r'''
import sys, time
import nbtasks as nt

with nt.Cluster(2, store=sys.argv[1]) as cluster:
    run = nt.ParallelTask(time.sleep, name="long").submit([0.2] * 400, cluster=cluster, progress=False)
    print("ID", run.id, flush=True)
    run.wait(120)
    print("ENDED", run.state.value, run.cancel_reason, flush=True)
'''


def test_a_run_going_on_in_another_kernel_is_followed_and_cancelled_through_the_store(tmp_path, python_script):
    store = str(tmp_path / "runs.db")
    kernel = subprocess.Popen(python_script(GOING_ON) + [store], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, IPYTHONDIR=str(tmp_path / "ipython")))
    try:
        run_id = kernel.stdout.readline().split()[1]
        deadline = time.monotonic() + 30
        while not nt.runs(store=store, state="running"):
            assert time.monotonic() < deadline, "the other kernel's run never showed as running"
            time.sleep(0.1)
        [run] = nt.runs(store=store, state="running")
        assert run.id == run_id and not run.done() and run.state is nt.RunState.RUNNING
        with pytest.raises(cf.TimeoutError, match="another kernel"):
            run.result(timeout=0.3)
        view = RunView(run)
        assert "nbtasks-state-running" in view.header.value and not view.final
        assert run.cancel("enough from the next kernel") is True  # asked through the store
        with pytest.raises(cf.CancelledError):
            run.result(timeout=30)  # followed until its kernel cancelled it
        assert run.cancelled() and run.state is nt.RunState.CANCELLED
        assert run.cancel_reason == "enough from the next kernel"
        assert view.refresh() and "nbtasks-state-cancelled" in view.header.value
        out, _ = kernel.communicate(timeout=60)
        assert "ENDED cancelled enough from the next kernel" in out
    finally:
        if kernel.poll() is None:
            kill_tree(kernel)
