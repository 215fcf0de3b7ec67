"""Every tutorial in notebooks/ runs top to bottom in a real kernel and says what it should.

Each notebook is executed headless with nbclient, with ``IPYTHONDIR`` pointing at a
temporary directory (the kernel, and the ipyparallel processes it starts, inherit it),
so its cluster files stay out of ``~/.ipython`` and the processes it starts can be
told apart from any others on the machine by their environment.
"""

from __future__ import annotations

import pathlib
import re
import time

import nbformat
import psutil
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK_NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))

CELL_TIMEOUT = 180  # seconds per cell
EXIT_GRACE = 20     # seconds for stopped processes to disappear


# -- ipyparallel processes started under a given IPYTHONDIR ------------------------------

def ipp_processes(ipythondir: pathlib.Path) -> dict[int, str]:
    """Live ipyparallel processes (controller, engines, nannies) whose IPYTHONDIR is ours."""
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline", "environ", "status"]):
        info = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(info["cmdline"] or ())
        if not any(word in cmdline for word in ("ipyparallel", "ipengine", "ipcontroller")):
            continue
        if (info["environ"] or {}).get("IPYTHONDIR") == str(ipythondir):
            found[info["pid"]] = cmdline
    return found


def engines(processes: dict[int, str]) -> dict[int, str]:
    return {pid: cmd for pid, cmd in processes.items()
            if ("ipyparallel.engine" in cmd or "ipengine" in cmd) and "nanny" not in cmd}


def wait_until_gone(ipythondir: pathlib.Path) -> dict[int, str]:
    """The processes still alive once they had ``EXIT_GRACE`` seconds to go away."""
    deadline = time.monotonic() + EXIT_GRACE
    left = ipp_processes(ipythondir)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = ipp_processes(ipythondir)
    return left


# -- reading outputs -------------------------------------------------------------------------

def stdout_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def all_stdout(nb) -> str:
    return "".join(stdout_of(c) for c in nb.cells if c.cell_type == "code")


# -- running a notebook ------------------------------------------------------------------------

class Executed:
    def __init__(self, nb, ipythondir: pathlib.Path, seen_engines: int, left_after_last_cell: dict,
                 left_after_shutdown: dict) -> None:
        self.nb = nb
        self.ipythondir = ipythondir
        self.seen_engines = seen_engines          # most engine processes alive after any cell
        self.left_after_last_cell = left_after_last_cell  # kernel still alive
        self.left_after_shutdown = left_after_shutdown    # kernel gone
        self.stdout = all_stdout(nb)


def execute(name: str, ipythondir: pathlib.Path) -> Executed:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    last_code = max(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    seen = [0]
    left_after_last: dict = {}

    def on_cell_executed(cell, cell_index, execute_reply):
        seen[0] = max(seen[0], len(engines(ipp_processes(ipythondir))))
        if cell_index == last_code:
            left_after_last.update(wait_until_gone(ipythondir))

    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}},
                            on_cell_executed=on_cell_executed)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("IPYTHONDIR", str(ipythondir))  # the kernel inherits os.environ
            client.execute()
    finally:
        left_after_shutdown = wait_until_gone(ipythondir)
        for pid in left_after_shutdown:  # never leave anything behind, whatever happened
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
    return Executed(nb, ipythondir, seen[0], left_after_last, left_after_shutdown)


@pytest.fixture(scope="module")
def run_notebook(tmp_path_factory):
    """``run_notebook(name)``: execute a notebook once per module; later calls reuse the outcome."""
    outcomes: dict[str, Executed | BaseException] = {}

    def get(name: str) -> Executed:
        if name not in outcomes:
            try:
                outcomes[name] = execute(name, tmp_path_factory.mktemp("ipython"))
            except Exception as exc:
                outcomes[name] = exc
        outcome = outcomes[name]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return get


@pytest.fixture
def executed(request, run_notebook) -> Executed:
    return run_notebook(request.param)


# -- every notebook ------------------------------------------------------------------------------

@pytest.mark.parametrize("executed", NOTEBOOK_NAMES, indirect=True, ids=NOTEBOOK_NAMES)
def test_notebook_runs_without_errors(executed: Executed) -> None:
    errors = [(i, o.get("ename"), o.get("evalue"))
              for i, c in enumerate(executed.nb.cells) if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert all(c.get("execution_count") for c in executed.nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("executed", NOTEBOOK_NAMES, indirect=True, ids=NOTEBOOK_NAMES)
def test_notebook_leaves_no_cluster_processes(executed: Executed) -> None:
    assert not executed.left_after_shutdown, (
        f"ipyparallel processes left running after the kernel exited: {executed.left_after_shutdown}")


def test_notebooks_are_stored_clean() -> None:
    for name in NOTEBOOK_NAMES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{name}: stored outputs"


# -- 01-getting-started: what a reader relies on ---------------------------------------------------

GETTING_STARTED = "01-getting-started.ipynb"
needs_getting_started = pytest.mark.skipif(GETTING_STARTED not in NOTEBOOK_NAMES,
                                           reason="notebooks/01-getting-started.ipynb is missing")


@pytest.fixture
def getting_started(run_notebook) -> Executed:
    return run_notebook(GETTING_STARTED)


@needs_getting_started
def test_getting_started_local_and_remote_calls(getting_started: Executed) -> None:
    out = getting_started.stdout
    assert "square(3) computed locally = 9\n" in out
    assert "cluster started with 2 engines\n" in out
    assert "square(7) computed on the cluster = 49\n" in out


@needs_getting_started
def test_getting_started_fan_out_matches_serial(getting_started: Executed) -> None:
    total = sum(x * x for x in range(1000))
    assert f"sum of squares 0..999 = {total} (serial: {total})\n" in getting_started.stdout


@needs_getting_started
def test_getting_started_closure_runs_on_engines(getting_started: Executed) -> None:
    assert "range(5) shifted by 10 on the engines: [10, 11, 12, 13, 14]\n" in getting_started.stdout


@needs_getting_started
def test_getting_started_pipeline_and_parameters(getting_started: Executed) -> None:
    out = getting_started.stdout
    total = sum(x * x for x in range(1000))
    assert f"pipeline(1000) -> the squares add up to {total:,}\n" in out
    assert f"default   -> the squares add up to {total:,}\n" in out
    assert f"factor=2.0 -> the squares add up to {4 * total:,}\n" in out
    rejected = re.search(r"rejected before dispatch: (.*)\n", out)
    assert rejected, out
    assert "'factor'" in rejected.group(1) and "float" in rejected.group(1)


@needs_getting_started
def test_getting_started_run_records(getting_started: Executed) -> None:
    out = getting_started.stdout
    assert "result: 332833500\n" in out
    counts = re.search(r"counts: (\{.*'done': 1000.*\})\n", out)
    assert counts and "failed" not in counts.group(1), out
    units = re.findall(r"  unit (\d+): square\((\d+)\) = (\d+) on engine (\d+) \((.+?)\) in \d+ µs\n", out)
    assert len(units) == 3, out
    for index, x, y, engine, host in units:
        assert index == x and int(y) == int(x) ** 2 and int(engine) in (0, 1) and host


@needs_getting_started
def test_getting_started_as_completed(getting_started: Executed) -> None:
    out = getting_started.stdout
    seen = re.findall(r"  unit (\d) finished on engine \d+: (\d)² = (\d+)\n", out)
    assert sorted(int(i) for i, _, _ in seen) == list(range(6)), out
    assert all(int(y) == int(x) ** 2 for _, x, y in seen)
    assert "6 units finished; results in input order: [0, 1, 4, 9, 16, 25]\n" in out


@needs_getting_started
def test_getting_started_unit_error_names_task_input_and_engine(getting_started: Executed) -> None:
    out = getting_started.stdout
    assert re.search(r"UnitError: task 'reciprocal' failed on unit 2 \(input 0\) on engine \d+ "
                     r"\(.+, pid \d+\): ZeroDivisionError: division by zero\n", out), out
    assert re.search(r"failed task: 'reciprocal', input: 0, engine: \d+\n", out), out


@needs_getting_started
def test_getting_started_on_error_continue_lists_failures(getting_started: Executed) -> None:
    out = getting_started.stdout
    assert "  failed: unit 1 (input 0): ZeroDivisionError: division by zero\n" in out
    assert "  failed: unit 3 (input 0): ZeroDivisionError: division by zero\n" in out
    assert "results that worked: {'unit 0': 0.25, 'unit 2': 0.5, 'unit 4': 1.0}\n" in out
    counts = re.search(r"counts: (\{.*'failed': 2.*\})\n", out)
    assert counts and "'done': 3" in counts.group(1), out


@needs_getting_started
def test_getting_started_stops_its_cluster(getting_started: Executed) -> None:
    out = getting_started.stdout
    assert out.endswith("cluster stopped\n"), out[-300:]
    # the process check really sees this notebook's engines...
    assert getting_started.seen_engines >= 2
    # ...and after the last cell (cluster.stop()), with the kernel still alive, none are left
    assert not getting_started.left_after_last_cell, (
        f"ipyparallel processes alive after cluster.stop(): {getting_started.left_after_last_cell}")
