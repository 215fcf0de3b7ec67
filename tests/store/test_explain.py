"""``run.explain()``: per task, the units taken from the store and why the others ran."""

from __future__ import annotations

import os
import time

import pytest

import nbtasks as nt
from nbtasks.store import StoreReader
from nbtasks.store.recorder import Store
from tests.store.test_reuse import counting


def submit(task, inputs, cluster, store, **kw):
    run = task.submit(inputs, cluster=cluster, store=store, progress=False, **kw)
    run.result(60)
    return run


def test_first_run_rerun_new_input_and_changed_parameter(cluster, marks, store):
    task = nt.ParallelTask(counting(marks))
    first = submit(task, [1, 2, 3], cluster, store)
    assert first.explain()["work"].ran == {"no earlier run": 3}
    again = submit(task, [1, 2, 3], cluster, store)
    assert again.explain()["work"].reused == 3 and again.explain()["work"].ran == {}
    grown = submit(task, [1, 2, 3, 4], cluster, store)
    assert grown.explain()["work"].ran == {"input new": 1}
    scaled = submit(task, [1, 2], cluster, store, scale=2)
    assert scaled.explain()["work"].ran == {"parameter scale changed": 2}
    text = str(scaled.explain())
    assert text == "work: 0 of 2 units from the store; 2 ran: parameter scale changed (2)"


def make(helper: str, marks: str):
    """``work`` calls ``helper``: both defined as a notebook cell would."""
    scope = {"os": os, "time": time, "marks": marks}
    exec(f"def helper(x):\n    return {helper}\n\n"
         "def work(x):\n    open(os.path.join(marks, f'{x}.{time.monotonic_ns()}'), 'w').close()\n"
         "    return helper(x)\n", scope)
    return scope["work"]


def test_a_changed_helper_is_named_with_the_function_that_calls_it(cluster, marks, store):
    submit(nt.ParallelTask(make("x + 1", marks)), [1, 2], cluster, store)
    run = submit(nt.ParallelTask(make("x + 2", marks)), [1, 2], cluster, store)
    assert run.result() == [3, 4]
    assert run.explain()["work"].ran == {"function helper changed (called by work)": 2}


def test_failed_before_cache_off_and_no_store(cluster, marks, store, tmp_path):
    flag = tmp_path / "broken"
    flag.write_text("")

    def fragile(x: int) -> int:
        if x == 3 and os.path.exists(flag):
            raise ValueError("not yet")
        return -x

    task = nt.ParallelTask(fragile)
    with pytest.raises(nt.RunFailed):
        submit(task, list(range(5)), cluster, store, on_error="continue")
    flag.unlink()
    run = submit(task, list(range(5)), cluster, store)
    assert run.explain()["fragile"].ran == {"failed before": 1} and run.reused == 4

    off = submit(task, list(range(5)), cluster, store, cache=False)
    assert off.explain()["fragile"].ran == {"cache turned off: submit(cache=False)": 5}
    always = nt.task(cache=False)(fragile)
    assert submit(always, 1, cluster, store).explain()["fragile"].ran == \
        {"cache turned off: the task has cache=False": 1}
    assert submit(task, [1], cluster, False).explain()["fragile"].ran == {"no run store: store=False": 1}


def test_a_pipeline_explains_each_task_and_the_store_keeps_it(cluster, marks, store):
    def double(x: int) -> int:
        return 2 * x

    pipeline = nt.ContainerTask(nt.ParallelTask(double), sum)
    submit(pipeline, [1, 2, 3], cluster, store)
    run = submit(pipeline, [1, 2, 3, 4], cluster, store)
    assert run.result() == 20
    explained = {t.task: (t.reused, t.ran) for t in run.explain()}
    assert explained == {"double": (3, {"input new": 1}), "sum": (0, {"input new": 1})}
    Store.at(store).flush()
    kept = StoreReader(store).run(run.id)["explain"]
    assert {t["task"]: t["ran"] for t in kept["tasks"]} == {"double": {"input new": 1}, "sum": {"input new": 1}}


def test_units_of_a_cancelled_run_did_not_finish_before(cluster, store):
    def slow(x: int) -> int:
        time.sleep(0.2)
        return x

    task = nt.ParallelTask(slow)
    run = task.submit(list(range(12)), cluster=cluster, store=store, progress=False)
    deadline = time.monotonic() + 30
    while run.counts()["done"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    run.cancel()
    while not run.settled:
        time.sleep(0.02)
    again = submit(task, list(range(12)), cluster, store)
    assert again.result() == list(range(12))
    assert again.reused >= 2 and again.explain()["slow"].ran == {"did not finish before": 12 - again.reused}
