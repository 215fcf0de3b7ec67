"""A run's widget shows its final state when the run ends, before ``result()`` returns.

No test here refreshes the view or sleeps: what is asserted is what a person sees at
the moment their code gets the answer (the ticker alone trailed it by up to half a
second).
"""

import threading
import time

import nbtasks as nt
from nbtasks.ui.run_view import RunView


def slow(x):
    time.sleep(0.05)
    return x


def inverse(x):
    time.sleep(0.02)
    return 1 / x


def picture(view: RunView) -> dict:
    """What the widgets hold right now."""
    return {"header": view.header.value,
            "bars": [row.bar.value for row in view.rows.values()],
            "styles": [row.bar.bar_style for row in view.rows.values()],
            "stats": [row.stats.value for row in view.rows.values()],
            "cancel": (view.cancel_button.disabled, view.cancel_button.layout.display)}


def test_result_returns_once_the_widget_shows_done(cluster):
    run = nt.ParallelTask(slow).submit(range(24), cluster=cluster, progress=False)
    view = RunView(run)
    at_done = []
    run.add_done_callback(lambda _: at_done.append(picture(view)))  # the instant the future is set
    assert run.result(60) == list(range(24))
    for seen in (at_done[0], picture(view)):
        assert "nbtasks-state-done" in seen["header"] and "24 done · 0 failed" in seen["header"], seen
        assert seen["bars"] == [1.0, 1.0] and seen["styles"] == ["success", "success"], seen
        assert all("<b>24</b>/24" in stats for stats in seen["stats"]), seen
        assert seen["cancel"] == (True, "none"), seen


def test_exception_returns_once_the_widget_shows_the_failure(cluster):
    run = nt.ParallelTask(inverse).submit([1, 2, 0, 4, 5, 0, 7, 8], cluster=cluster, progress=False,
                                          on_error="continue")
    view = RunView(run)
    assert isinstance(run.exception(60), nt.RunFailed)
    seen = picture(view)
    assert "nbtasks-state-failed" in seen["header"] and "6 done · 2 failed" in seen["header"], seen
    assert 'class="nbtasks-error"' in seen["header"] and "2 unit(s) of" in seen["header"], seen
    assert seen["styles"] == ["danger", "danger"] and seen["bars"] == [1.0, 1.0], seen
    assert "<b>8</b>/8 · 2 failed" in seen["stats"][1], seen
    failures = view.rows[run.nodes[1].id].failures.value
    assert "unit 2 (input 0)" in failures and "unit 5 (input 0)" in failures


def test_cancel_shows_at_once_in_the_widget(cluster):
    run = nt.ParallelTask(time.sleep).submit([30] * 4, cluster=cluster, progress=False)
    view = RunView(run)
    run.cancel("stop now")
    seen = picture(view)  # before run.result() even raises CancelledError
    assert "nbtasks-state-cancelled" in seen["header"], seen
    assert seen["cancel"] == (True, "none") and seen["styles"] == ["warning", "warning"], seen
    assert run.wait(30)
    assert nt.ParallelTask(abs).run([-1], cluster=cluster, progress=False, timeout=15) == [1]


def test_views_drawn_by_the_ender_the_ticker_and_another_thread_at_once_end_final(cluster):
    """Runs ending while the ticker and a third thread draw them: no draw fails, every view
    shows the end when result() returns."""
    runs = [nt.ParallelTask(slow).submit(range(8 + k), cluster=cluster, progress=False) for k in range(6)]
    views = [RunView(run) for run in runs]
    stop = threading.Event()
    errors = []

    def hammer():  # a second drawer besides the ticker, as fast as it can
        while not stop.is_set():
            for view in views:
                try:
                    view.refresh()
                except Exception as exc:  # noqa: BLE001 - any error is the finding
                    errors.append(exc)

    drawer = threading.Thread(target=hammer)
    drawer.start()
    try:
        for k, run in enumerate(runs):
            assert run.result(60) == list(range(8 + k))
            seen = picture(views[k])
            assert "nbtasks-state-done" in seen["header"] and seen["bars"] == [1.0, 1.0], seen
    finally:
        stop.set()
        drawer.join(10)
    assert errors == []


def slow_inverse(x):
    time.sleep(0.3)
    return 1 / x


def test_a_failure_shows_the_units_it_stopped_when_exception_returns(cluster):
    """The first failure stops the run: the units running then are interrupted and counted a
    moment later; exception() returns once the widget shows them (no 'running' left)."""
    run = nt.ParallelTask(slow_inverse).submit([1, 2, 3, 0, 5, 6, 7, 8, 9, 10], cluster=cluster, progress=False)
    view = RunView(run)
    assert isinstance(run.exception(60), nt.UnitError)
    seen = picture(view)
    assert "nbtasks-state-failed" in seen["header"] and "1 failed" in seen["header"], seen
    stats = seen["stats"][1]
    assert "running" not in stats and "queued" not in stats and "cancelled" in stats, seen
    assert "ETA" not in stats, seen  # an ended run waits for nothing
    assert run.counts()["running"] == run.counts()["queued"] == 0
