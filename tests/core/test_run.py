"""The Run's state machine and Future contract, without a cluster."""

import concurrent.futures as cf

import pytest

import nbtasks as nt
from nbtasks.core.errors import InvalidTransition
from nbtasks.core.run import Run


class Recorder:
    """A backend that only records what the run asks of it."""

    def __init__(self):
        self.started, self.cancelled = [], []

    def start_run(self, run):
        self.started.append(run)

    def cancel_run(self, run, reason):
        self.cancelled.append((run, reason))


def make_run():
    backend = Recorder()
    run = nt.task(abs).submit(-1, cluster=backend)
    return run, backend


def test_submit_hands_the_run_to_its_backend_pending():
    run, backend = make_run()
    assert backend.started == [run]
    assert run.state is nt.RunState.PENDING and not run.done() and not run.running()


def test_finish_sets_the_result_once():
    run, _ = make_run()
    run.report_running()
    assert run.running()
    run.report_result(1)
    assert run.result() == 1 and run.state is nt.RunState.DONE
    run.report_error(ValueError("late"))  # a finished run ignores later outcomes
    assert run.exception() is None


def test_illegal_transition_raises():
    run, _ = make_run()
    run.report_running()
    with pytest.raises(InvalidTransition):
        run._move(nt.RunState.PENDING)


def test_cancel_is_idempotent_remembers_why_and_tells_the_backend_once():
    run, backend = make_run()
    assert run.cancel("changed my mind")
    assert run.cancel("again")
    assert run.cancel_reason == "changed my mind"
    assert [r for r, _ in backend.cancelled] == [run]
    with pytest.raises(cf.CancelledError):
        run.result(0)
    run.report_result(3)  # a unit coming back after cancel changes nothing
    assert run.cancelled() and run.state is nt.RunState.CANCELLED


def test_result_timeout():
    run, _ = make_run()
    with pytest.raises(cf.TimeoutError):
        run.result(timeout=0.05)
    with pytest.raises(cf.TimeoutError):
        list(run.as_completed(timeout=0.05))


def test_counts_cover_every_state_and_start_at_zero():
    run, _ = make_run()
    assert run.counts() == {"queued": 0, "running": 0, "done": 0, "failed": 0, "retried": 0, "cancelled": 0}
    assert run.snapshot()["state"] == "pending"


def test_a_run_is_a_future():
    run, _ = make_run()
    assert isinstance(run, cf.Future) and isinstance(run, Run)
