"""A notebook executed headless (nbclient, as ``jupyter nbconvert --execute`` and papermill do)
saves every finished run's widget in its final state.

The widget state nbclient records (``metadata.widgets``) holds only what the kernel sent
while a cell ran: an update sent a moment after the cell that waited for the run ended is
lost. So the final state must be sent before ``result()`` returns.
"""

from __future__ import annotations

import nbformat
import psutil
import pytest
from nbclient import NotebookClient

from tests.notebooks.test_tutorials import CELL_TIMEOUT, stdout_of, wait_until_gone

pytestmark = pytest.mark.timeout(300)

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

SETUP = ("import nbtasks as nt, time\n"
         "def slow(x):\n"
         "    time.sleep(0.05)\n"
         "    return x")

# Each scenario is a notebook of its own that ends with it, on the default cluster, as many
# notebooks do: a cell after it would still be running when the widget caught up.
SCENARIOS = {
    # the answer printed at once after submit, the widget shown above it
    "answer": [SETUP,
               "run = nt.ParallelTask(slow).submit(range(24))\n"
               "display(run)\n"
               "print('answer', sum(run.result()))"],
    # shown by one cell, waited for by the next
    "later": [SETUP,
              "later = nt.ParallelTask(slow).submit(range(100, 130))\nlater",
              "print('later', sum(later.result()))"],
    # a run that fails (two units) but lets the others finish
    "failed": [SETUP,
               "bad = nt.ParallelTask(lambda x: time.sleep(0.05) or 1 / x).submit([1, 0, 2, 0, 4, 5],\n"
               "                                                                   on_error='continue')\n"
               "display(bad)\n"
               "print('failed with', type(bad.exception()).__name__)"],
    # the first failure stops the run (the default): the units it interrupted are counted too
    "stopped": [SETUP,
                "bad = nt.ParallelTask(lambda x: time.sleep(0.3) or 1 / x).submit([1, 2, 3, 0, 5, 6, 7, 8, 9, 10])\n"
                "display(bad)\n"
                "print('failed with', type(bad.exception()).__name__)"],
    # the same run again: every unit from the store, ending almost at once
    "again": [SETUP,
              "nt.ParallelTask(slow).submit(range(24)).result()\n"
              "again = nt.ParallelTask(slow).submit(range(24))\n"
              "display(again)\n"
              "print('again', sum(again.result()), again.reused)"],
}


class SavedRun:
    """One run's widget as the saved notebook holds it."""

    def __init__(self, models: dict, model_id: str) -> None:
        def state(ref: str) -> dict:
            return models[ref.removeprefix("IPY_MODEL_")]["state"]

        root = models[model_id]["state"]
        assert "nbtasks-run" in root["_dom_classes"], root
        top, *rows = [state(ref) for ref in root["children"]]
        self.header = state(top["children"][0])["value"]
        rows = [row for row in rows if "nbtasks-row" in row.get("_dom_classes", ())]
        self.bars = [state(row["children"][0]) for row in rows]
        self.stats = [state(row["children"][1])["value"] for row in rows]
        self.cancel = state(top["children"][1])


def saved_runs(nb) -> dict[int, SavedRun]:
    """Cell index -> the run widget that cell displayed."""
    models = nb.metadata["widgets"][WIDGET_STATE]["state"]
    found = {}
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view and "nbtasks-run" in models[view["model_id"]]["state"].get("_dom_classes", ()):
                found[index] = SavedRun(models, view["model_id"])
    return found


def execute(nb, workdir) -> None:
    """Run ``nb`` as nbconvert does (the kernel shut down after its last cell), with cluster files
    and the run store in ``workdir``; the default cluster must end with its kernel."""
    ipythondir = workdir / "ipython"
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("IPYTHONDIR", str(ipythondir))
            mp.setenv("NBTASKS_STORE", str(workdir / "runs.db"))
            client.execute()
    finally:
        left = wait_until_gone(ipythondir)
        for pid in left:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
    assert not left, f"the default cluster outlived its kernel: {left}"


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    """``notebooks(name)``: the scenario's notebook executed headless, as saved to a file."""
    saved: dict = {}

    def get(name: str):
        if name not in saved:
            workdir = tmp_path_factory.mktemp(name)
            nb = nbformat.v4.new_notebook()
            nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
            nb.cells = [nbformat.v4.new_code_cell(source) for source in SCENARIOS[name]]
            execute(nb, workdir)
            errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(nb.cells)
                      for o in c.get("outputs", []) if o.get("output_type") == "error"]
            assert not errors
            nbformat.write(nb, workdir / "final.out.ipynb")  # as nbconvert or papermill would
            saved[name] = nbformat.read(workdir / "final.out.ipynb", as_version=4)
        return saved[name]

    return get


def assert_done(run: SavedRun, units: int) -> None:
    assert "nbtasks-state-done" in run.header and f"{units} done · 0 failed" in run.header, run.header
    assert [bar["value"] for bar in run.bars] == [1.0] * len(run.bars) and run.bars, run.bars
    assert {bar["bar_style"] for bar in run.bars} == {"success"}, run.bars
    assert all(f"<b>{units}</b>/{units}" in stats for stats in run.stats), run.stats
    assert run.cancel["disabled"], run.cancel


def test_a_result_printed_at_once_is_saved_under_a_finished_bar(notebooks):
    nb = notebooks("answer")
    assert stdout_of(nb.cells[1]) == f"answer {sum(range(24))}\n"
    assert_done(saved_runs(nb)[1], 24)


def test_a_run_shown_in_one_cell_and_awaited_in_the_next_is_saved_finished(notebooks):
    nb = notebooks("later")
    assert stdout_of(nb.cells[2]) == f"later {sum(range(100, 130))}\n"
    assert_done(saved_runs(nb)[1], 30)


def test_a_failed_run_is_saved_failed_with_its_final_counts(notebooks):
    nb = notebooks("failed")
    assert stdout_of(nb.cells[1]) == "failed with RunFailed\n"
    run = saved_runs(nb)[1]
    assert "nbtasks-state-failed" in run.header and "4 done · 2 failed" in run.header, run.header
    assert 'class="nbtasks-error"' in run.header, run.header
    assert [bar["value"] for bar in run.bars] == [1.0, 1.0] and run.bars[1]["bar_style"] == "danger", run.bars
    assert "<b>6</b>/6 · 2 failed" in run.stats[1], run.stats


def test_a_run_stopped_by_its_first_failure_is_saved_with_the_units_it_stopped(notebooks):
    nb = notebooks("stopped")
    assert stdout_of(nb.cells[1]) == "failed with UnitError\n"
    run = saved_runs(nb)[1]
    assert "nbtasks-state-failed" in run.header and "1 failed" in run.header, run.header
    stats = run.stats[1]
    assert "running" not in stats and "queued" not in stats and "cancelled" in stats, stats
    assert "ETA" not in stats, stats


def test_a_run_taken_from_the_store_is_saved_finished(notebooks):
    nb = notebooks("again")
    assert stdout_of(nb.cells[1]) == f"again {sum(range(24))} 24\n"
    run = saved_runs(nb)[1]
    assert_done(run, 24)
    assert "24 from the store" in run.header, run.header
