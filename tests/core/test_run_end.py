"""``Run.on_end``: observers see a run's end before anyone waiting on it does, and the units
interrupted at its end before the first waiter returns; without a cluster."""

import concurrent.futures as cf
import logging
import threading
import time

import pytest

import nbtasks as nt
from nbtasks.core.run import SETTLE_WAIT
from tests.core.test_run import Recorder, make_run


def test_observers_run_after_the_state_moves_and_before_the_result_is_set():
    run, _ = make_run()
    seen = []
    run.on_end(lambda r: seen.append((r.state, r.done())))
    run.report_running()
    assert seen == []
    run.report_result(1)
    assert seen == [(nt.RunState.DONE, False)]  # done() is still False: no waiter has woken yet
    assert run.result() == 1


def test_a_waiter_wakes_only_after_the_observers_returned():
    run, _ = make_run()
    observer_started, release = threading.Event(), threading.Event()
    order = []

    def slow_view(r):
        observer_started.set()
        release.wait(5)
        order.append("drawn")

    run.on_end(slow_view)
    ender = threading.Thread(target=run.report_result, args=(7,))
    ender.start()
    assert observer_started.wait(5)
    with pytest.raises(cf.TimeoutError):
        run.result(timeout=0.2)  # the run ended, but result() waits for the final draw
    release.set()
    assert run.result(5) == 7
    order.append("result")
    ender.join(5)
    assert order == ["drawn", "drawn", "result"]  # at the end, and settled before result() returned


def test_a_failed_run_shows_its_error_to_observers():
    run, _ = make_run()
    errors = []
    run.on_end(lambda r: errors.append((r.state, r.error)))
    boom = ValueError("boom")
    run.report_error(boom)
    assert errors == [(nt.RunState.FAILED, boom)]
    assert run.exception() is boom and run.error is boom


def test_cancel_tells_observers_before_result_raises():
    run, backend = make_run()
    seen = []
    run.on_end(lambda r: seen.append((r.state, r.cancel_reason)))
    run.cancel("enough")
    run.cancel("again")  # idempotent: observers hear of the end once
    assert seen == [(nt.RunState.CANCELLED, "enough")]
    assert run.error is None
    with pytest.raises(cf.CancelledError):
        run.result(0)


def test_observers_are_called_once_and_not_after_the_end():
    run, _ = make_run()
    calls = []
    run.on_end(calls.append)
    run.report_result(1)
    run.report_error(ValueError("late"))  # ignored: the run is over
    run.on_end(calls.append)  # too late: the caller reads the finished run itself
    assert calls == [run]


def test_a_broken_observer_is_logged_and_the_run_still_ends(caplog):
    run, _ = make_run()
    after = []

    def broken(r):
        raise RuntimeError("view broke")

    run.on_end(broken)
    run.on_end(after.append)
    with caplog.at_level(logging.ERROR, logger="nbtasks"):
        run.report_result(2)
    assert after == [run]  # the next observer still ran
    assert run.result(1) == 2
    assert "view broke" in caplog.text


def failing_with_units_running():
    """A run of 4 units, 2 done and 2 still running when it fails (their engines not yet
    interrupted), with an observer that records the counts it saw."""
    run = nt.ParallelTask(abs).submit([-1, -2, -3, -4], cluster=Recorder())
    run.release_prequeued()
    leaf = run.nodes[1].units
    leaf.queue(4)
    leaf.start(4)
    leaf.finish(2)
    seen = []
    run.on_end(lambda r: seen.append(dict(r.counts())))
    run.report_error(ValueError("boom"))
    return run, leaf, seen


def test_the_first_waiter_lets_observers_draw_the_units_interrupted_at_the_end():
    run, leaf, seen = failing_with_units_running()
    assert seen[0]["running"] == 2  # drawn at the end: the interrupts have not come back yet
    threading.Timer(0.2, leaf.cancel, args=(2, nt.UnitState.RUNNING)).start()  # the engines answer
    started = time.monotonic()
    assert isinstance(run.exception(5), ValueError)
    assert 0.15 < time.monotonic() - started < SETTLE_WAIT
    assert seen[1]["running"] == 0 and seen[1]["cancelled"] == 2  # drawn before exception() returned
    assert len(seen) == 2
    run.exception(0)
    run.wait(0)
    assert len(seen) == 2  # once, whoever waits after


def test_waiting_for_the_interrupted_units_is_bounded():
    run, leaf, seen = failing_with_units_running()  # and no engine ever answers
    started = time.monotonic()
    assert run.wait(5)
    assert SETTLE_WAIT - 0.05 < time.monotonic() - started < SETTLE_WAIT + 0.5
    assert seen[1]["running"] == 2  # drawn anyway, as it is


def test_without_observers_nothing_waits_for_the_interrupted_units():
    run = nt.ParallelTask(abs).submit([-1, -2], cluster=Recorder())
    run.release_prequeued()
    run.nodes[1].units.queue(2)
    run.nodes[1].units.start(2)
    run.report_error(ValueError("boom"))
    started = time.monotonic()
    with pytest.raises(ValueError):
        run.result(5)
    assert time.monotonic() - started < 0.1
