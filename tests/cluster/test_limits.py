"""Per-task limits: units on engines at once, unit starts per time window."""

import time

import pytest

import nbtasks as nt


def hold(seconds):
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


def test_max_concurrent_bounds_units_running_at_once(cluster):
    one_at_a_time = nt.task(max_concurrent=1)(hold)
    spans = nt.ParallelTask(one_at_a_time).run([0.1] * 6, cluster=cluster, progress=False, timeout=60)
    spans.sort()
    assert all(a_end <= b_start + 0.01 for (_, a_end), (b_start, _) in zip(spans, spans[1:])), spans


def test_max_concurrent_applies_across_runs_and_the_run_says_why_it_waits(cluster):
    limited = nt.task(max_concurrent=1)(hold)
    first = nt.ParallelTask(limited).submit([0.5] * 2, cluster=cluster, progress=False)
    second = nt.ParallelTask(limited).submit([0.5] * 2, cluster=cluster, progress=False)
    deadline = time.monotonic() + 10
    while "max_concurrent=1" not in (first.status_note + second.status_note):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    spans = sorted(first.result(60) + second.result(60))
    assert all(a_end <= b_start + 0.01 for (_, a_end), (b_start, _) in zip(spans, spans[1:])), spans


def test_rate_limits_unit_starts_per_window(cluster):
    paced = nt.task(rate=(2, 0.5))(lambda x: time.time())
    starts = sorted(nt.ParallelTask(paced).run(range(6), cluster=cluster, progress=False, timeout=60))
    for i in range(len(starts) - 2):  # no 3 starts within one 0.5 s window
        assert starts[i + 2] - starts[i] >= 0.5 - 0.02, starts
    assert starts[-1] - starts[0] >= 1.0 - 0.05


def test_a_limited_task_leaves_room_for_another_run(cluster):
    slow = nt.task(max_concurrent=1)(hold)
    big = nt.ParallelTask(slow).submit([0.2] * 20, cluster=cluster, progress=False)
    quick = nt.ParallelTask(abs).run([-1, -2], cluster=cluster, progress=False, timeout=30)
    assert quick == [1, 2] and not big.done()
    big.cancel()


@pytest.mark.parametrize("bad", [{"max_concurrent": 0}, {"max_concurrent": 1.5}, {"rate": 3},
                                 {"rate": (0, 1)}, {"rate": (2, 0)}, {"rate": (2, "1")}])
def test_bad_limits_are_refused(bad):
    with pytest.raises(nt.TaskDefinitionError):
        nt.task(**bad)(abs)
