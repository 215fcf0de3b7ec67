"""The progress tree widget's state, driven by real runs on the cluster."""

import time

import nbtasks as nt
from nbtasks.ui import ticker
from nbtasks.ui.run_view import RunView


def wait_final(view, timeout=30):
    deadline = time.monotonic() + timeout
    while not view.refresh():
        assert time.monotonic() < deadline, "the view never became final"
        time.sleep(0.05)


def stepper(x):
    for i in range(4):
        nt.progress(i / 4, f"step {i}")
        time.sleep(0.1)
    print("finished", x)
    if x == 3:
        raise ValueError("three")
    return x


def test_one_row_per_task_of_the_composition(cluster):
    task = nt.ParallelTask(nt.ContainerTask(abs, nt.ContainerTask(str, float, concurrent=True)))
    run = task.submit(range(-3, 3), cluster=cluster, progress=False)
    view = RunView(run)
    names = [view.rows[n.id].label for n in run.nodes]
    assert len(view.rows) == len(run.nodes) == 6
    assert "abs" in names[2] and "str" in names[4] and "float" in names[5]
    assert 'padding-left:3.6em' in view.rows[4].label  # nested rows are indented
    run.result(30)
    wait_final(view)
    for row in view.rows.values():
        assert row.bar.value == 1.0 and row.bar.bar_style == "success"
    assert "nbtasks-state-done" in view.header.value
    assert view.cancel_button.disabled


def test_counts_unit_progress_failures_and_output(cluster):
    run = nt.ParallelTask(stepper).submit(range(6), cluster=cluster, progress=False, on_error="continue")
    view = RunView(run)
    leaf = run.nodes[1]
    deadline = time.monotonic() + 20
    while "step" not in view.rows[leaf.id].stats.value:  # nt.progress shows on the row
        assert time.monotonic() < deadline, view.rows[leaf.id].stats.value
        view.refresh()
        time.sleep(0.05)
    assert "running" in view.rows[leaf.id].stats.value
    run.wait(30)
    wait_final(view)
    stats = view.rows[leaf.id].stats.value
    assert "<b>6</b>/6" in stats and "1 failed" in stats
    failures = view.rows[leaf.id].failures.value
    assert "unit 3 (input 3)" in failures and "ValueError: three" in failures
    assert "raise ValueError" in failures  # the traceback, inside an expandable <details>
    assert "<details>" in failures
    assert view.rows[leaf.id].bar.bar_style == "danger"
    children = list(view.widget.children)  # the failures sit right under their task's row
    assert children.index(view.rows[leaf.id].failures) == children.index(view.rows[leaf.id].box) + 1
    assert "nbtasks-state-failed" in view.header.value
    for x in range(6):
        assert f"finished {x}" in view.output.value  # what units printed, under this run


def test_cancel_button_cancels_the_run(cluster):
    run = nt.ParallelTask(time.sleep).submit([30] * 4, cluster=cluster, progress=False)
    view = RunView(run)
    view.cancel_button.click()
    assert run.cancelled()
    wait_final(view)
    assert "nbtasks-state-cancelled" in view.header.value
    assert "<b>0</b>/4 · 4 cancelled" in view.rows[1].stats.value  # final counts, not those at the click
    assert "4 cancelled" in view.header.value
    assert view.cancel_button.layout.display == "none"
    assert view.cancel_button.disabled
    assert nt.ParallelTask(abs).run([-1], cluster=cluster, progress=False, timeout=15) == [1]


def test_a_run_finished_before_display_shows_its_final_state(cluster):
    run = nt.ParallelTask(abs).submit(range(-5, 0), cluster=cluster, progress=False)
    run.result(30)
    view = RunView(run)
    assert view.final  # nothing left to watch
    assert all(row.bar.value == 1.0 for row in view.rows.values())
    assert "5 done" in view.header.value


def test_displaying_twice_shares_one_live_widget(cluster):
    from nbtasks.ui.display import view_of

    run = nt.task(abs).submit(-1, cluster=cluster, progress=False)
    assert view_of(run) is view_of(run)
    run.result(30)


def test_widget_messages_are_bounded_for_a_large_run(cluster):
    """A 100,000-unit run sends a few messages per refresh, not one per unit."""
    sent = []
    run = nt.ParallelTask(lambda x: x).submit(range(100_000), cluster=cluster, progress=False)
    view = RunView(run)
    widgets = [view.header, view.cancel_button] + [w for r in view.rows.values() for w in (r.bar, r.stats)]
    for w in widgets:
        original = w.send_state
        w.send_state = lambda key=None, _o=original: (sent.append(key), _o(key))[1]
    run.result(120)
    started = time.monotonic()
    wait_final(view)
    refreshes = max(1, round((time.monotonic() - started) / ticker.PERIOD))
    assert len(sent) <= 4 * len(widgets) * (refreshes + 2)
    assert view.rows[1].bar.value == 1.0


def test_units_taken_from_the_store_are_said_so(cluster, tmp_path):
    store = str(tmp_path / "runs.db")
    task = nt.ParallelTask(abs)
    task.submit(range(-5, 0), cluster=cluster, store=store, progress=False).result(30)
    run = task.submit(range(-5, 0), cluster=cluster, store=store, progress=False)
    view = RunView(run)
    assert run.result(30) == [5, 4, 3, 2, 1]
    wait_final(view)
    assert '<span class="nbtasks-reused">5 from the store</span>' in view.header.value
    assert view.rows[run.nodes[1].id].bar.value == 1.0


def test_a_finished_run_says_why_its_units_ran(cluster, tmp_path):
    store = str(tmp_path / "runs.db")
    task = nt.ParallelTask(abs)
    task.submit([-1, -2], cluster=cluster, store=store, progress=False).result(30)
    run = task.submit([-1, -2, -3], cluster=cluster, store=store, progress=False)
    view = RunView(run)
    run.result(30)
    wait_final(view)
    assert "abs: 2 of 3 units from the store; 1 ran: input new (1)" in view.explanation.value
    assert view.explanation in view.widget.children
