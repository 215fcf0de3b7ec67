"""Every tutorial in notebooks/ runs top to bottom in a real kernel and says what it should.

Each notebook is executed headless with nbclient, with ``IPYTHONDIR`` pointing at a
temporary directory (the kernel, and the ipyparallel processes it starts, inherit it),
so its cluster files stay out of ``~/.ipython`` and the processes it starts can be
told apart from any others on the machine by their environment.
"""

from __future__ import annotations

import ast
import base64
import math
import pathlib
import re
import socket
import sys
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


def execute(name: str, ipythondir: pathlib.Path, workdir: pathlib.Path = NOTEBOOKS,
            env: dict[str, str] | None = None) -> Executed:
    """Run ``workdir/name`` with ``workdir`` as the kernel's working directory, ``env`` added
    to its environment."""
    nb = nbformat.read(workdir / name, as_version=4)
    last_code = max(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    seen = [0]
    left_after_last: dict = {}

    def on_cell_executed(cell, cell_index, execute_reply):
        seen[0] = max(seen[0], len(engines(ipp_processes(ipythondir))))
        if cell_index == last_code:
            left_after_last.update(wait_until_gone(ipythondir))

    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}},
                            on_cell_executed=on_cell_executed)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("IPYTHONDIR", str(ipythondir))  # the kernel inherits os.environ
            for key, value in (env or {}).items():
                mp.setenv(key, value)
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


# -- shared by the tutorials below -------------------------------------------------------------------

def needs(name: str):
    return pytest.mark.skipif(name not in NOTEBOOK_NAMES, reason=f"notebooks/{name} is missing")


def one(pattern: str, out: str) -> re.Match:
    """The single match of ``pattern`` (a whole line, without its newline) in ``out``."""
    found = list(re.finditer(f"^{pattern}\n", out, flags=re.MULTILINE))
    assert len(found) == 1, f"{len(found)} lines match {pattern!r} in:\n{out}"
    return found[0]


def assert_stops_its_cluster(executed: Executed) -> None:
    assert executed.stdout.endswith("cluster stopped\n"), executed.stdout[-300:]
    assert executed.seen_engines >= 2
    assert not executed.left_after_last_cell, (
        f"ipyparallel processes alive after cluster.stop(): {executed.left_after_last_cell}")


# -- 02-containers: sequences, concurrent steps, nesting, parameters ------------------------------------

CONTAINERS = "02-containers.ipynb"


@pytest.fixture
def containers(run_notebook) -> Executed:
    return run_notebook(CONTAINERS)


@needs(CONTAINERS)
def test_containers_sequence_equals_serial(containers: Executed) -> None:
    out = containers.stdout
    # a year of hourly readings; every 50th is missing, every 97th (not also a 50th) is an error code
    hours = 365 * 24
    kept = sum(1 for h in range(hours) if h % 50 and h % 97)
    assert f"readings kept: {kept} of {hours}\n" in out
    cluster = ast.literal_eval(one(r"on the cluster:  (\{.*\})", out).group(1))
    notebook = ast.literal_eval(one(r"in the notebook: (\{.*\})", out).group(1))
    assert cluster == notebook and cluster["readings"] == kept, out
    assert "pipeline: same result on the cluster and in the notebook: True\n" in out


@needs(CONTAINERS)
def test_containers_parameters_reach_their_step(containers: Executed) -> None:
    out = containers.stdout
    hours = 365 * 24
    kept = sum(1 for h in range(hours) if h % 50 and h % 97)
    high = ast.literal_eval(one(r"high=20\.0 -> (\{.*\})", out).group(1))
    assert high["max"] <= 20.0 and high["readings"] < kept, high
    seed = ast.literal_eval(one(r"seed=1    -> (\{.*\})", out).group(1))
    assert seed["readings"] == kept, seed
    assert "high=20.0: same result on the cluster and in the notebook: True\n" in out
    rejected = one(r"rejected before dispatch: (.*)", out).group(1)
    assert "'ofset'" in rejected and "'offset'" in rejected, rejected


@needs(CONTAINERS)
def test_containers_concurrent_gives_a_tuple(containers: Executed) -> None:
    out = containers.stdout
    cluster = ast.literal_eval(one(r"mean, median, spread on the cluster:  (\(.*\)) \(a tuple\)", out).group(1))
    notebook = ast.literal_eval(one(r"mean, median, spread in the notebook: (\(.*\))", out).group(1))
    assert isinstance(cluster, tuple) and len(cluster) == 3 and cluster == notebook, out
    m, med, s = cluster
    assert f"a typical hour is {m} °C, give or take {s} °C (median {med} °C)\n" in out


@needs(CONTAINERS)
def test_containers_nested_parallel_with_parameters(containers: Executed) -> None:
    out = containers.stdout
    plain = ast.literal_eval(one(r"no correction     \(mean, median, spread\): (\(.*\))", out).group(1))
    corrected = ast.literal_eval(one(r"offset=-0\.4       \(mean, median, spread\): (\(.*\))", out).group(1))
    assert abs((plain[0] - corrected[0]) - 0.4) < 0.011, (plain, corrected)   # every reading moved by -0.4
    assert abs(plain[2] - corrected[2]) < 0.011, (plain, corrected)            # the spread did not
    assert "full pipeline: same result on the cluster and in the notebook: True\n" in out


@needs(CONTAINERS)
def test_containers_counts_by_task(containers: Executed) -> None:
    out = containers.stdout
    kept = sum(1 for h in range(365 * 24) if h % 50 and h % 97)
    for step, done in (("load", 1), ("clean", 1), ("calibrate", kept), ("mean", 1), ("median", 1), ("spread", 1)):
        assert f"  {step}: {done} done, 0 failed\n" in out, step
    assert f"units in total: {kept + 5}\n" in out


@needs(CONTAINERS)
def test_containers_stops_its_cluster(containers: Executed) -> None:
    assert_stops_its_cluster(containers)


# -- 03-parallel: divide/collect, reproducible Monte Carlo, batching, nesting, cancel ---------------------

PARALLEL = "03-parallel.ipynb"


@pytest.fixture
def parallel(run_notebook) -> Executed:
    return run_notebook(PARALLEL)


@needs(PARALLEL)
def test_parallel_divide_and_collect(parallel: Executed) -> None:
    out = parallel.stdout
    n = 10_000_000
    total = (n - 1) * n * (2 * n - 1) // 6
    assert "40 work units; the first is range(0, 250000), the last range(9750000, 10000000)\n" in out
    assert f"sum of x² for x below {n:,} = {total:,}\n" in out
    assert "blocks agree with the formula: True\n" in out
    blocks = [sum(x * x for x in range(s, s + 250_000)) for s in range(0, 1_000_000, 250_000)]
    assert f"4 partial sums, in block order: {blocks}\n" in out
    assert "they add up to the total: True\n" in out


@needs(PARALLEL)
def test_parallel_monte_carlo_is_reproducible(parallel: Executed) -> None:
    out = parallel.stdout
    estimate = float(one(r"π ≈ (\S+) from 3,200,000 random points \(off by \S+\)", out).group(1))
    assert abs(estimate - math.pi) < 0.01, estimate
    assert f"the same estimate computed serially in the notebook: {estimate}\n" in out
    assert "π: same estimate on the cluster and in the notebook: True\n" in out


@needs(PARALLEL)
def test_parallel_many_tiny_units(parallel: Executed) -> None:
    out = parallel.stdout
    assert "primes below 100,000: 9592\n" in out
    assert re.search(r"^work units: 100,000, done: 100,000, in \S+ s\n", out, flags=re.MULTILINE), out
    per_engine = ast.literal_eval(one(r"units per engine: (\{.*\})", out).group(1))
    assert sum(per_engine.values()) == 100_000 and set(per_engine) <= {0, 1}, per_engine


@needs(PARALLEL)
def test_parallel_over_a_pipeline(parallel: Executed) -> None:
    out = parallel.stdout
    average = float(one(r"average farthest distance over 100 walkers: (\S+) steps \(theory: 125\.3\)", out).group(1))
    assert 90 < average < 160, average
    assert "walkers: same result on the cluster and in the notebook: True\n" in out
    assert "  random_walk: 100 units done\n" in out
    assert "  farthest: 100 units done\n" in out


@needs(PARALLEL)
def test_parallel_as_completed(parallel: Executed) -> None:
    out = parallel.stdout
    seen = re.findall(r"^  (\d) unit\(s\) in \(latest: seed (\d) from engine (\d+)\): π ≈ (\S+)\n", out,
                      flags=re.MULTILINE)
    assert [int(count) for count, _, _, _ in seen] == list(range(1, 9)), out
    assert sorted(int(seed) for _, seed, _, _ in seen) == list(range(8)), out
    assert f"all 8 units: π ≈ {seen[-1][3]}\n" in out


@needs(PARALLEL)
def test_parallel_cancel(parallel: Executed) -> None:
    out = parallel.stdout
    assert "run.cancel() -> True\nrun.cancelled(): True\nrun.result() raises CancelledError\n" in out
    assert re.search(r"^next run after the cancel: 333,332,833,333,500,000 in \S+ s\n", out, flags=re.MULTILINE), out
    units = ast.literal_eval(one(r"the cancelled run's units: (\{.*\})", out).group(1))
    assert units.get("cancelled", 0) > 0, units
    assert sum(units.get(s, 0) for s in ("queued", "running", "done", "failed", "cancelled")) == 20, units


@needs(PARALLEL)
def test_parallel_divide_not_iterable_is_a_clear_error(parallel: Executed) -> None:
    message = one(r"TypeError: (.*)", parallel.stdout).group(1)
    for part in ("sum_of_squares", "'how_many_blocks'", "int 40", "not iterable"):
        assert part in message, message


@needs(PARALLEL)
def test_parallel_stops_its_cluster(parallel: Executed) -> None:
    assert_stops_its_cluster(parallel)


# -- 04-mapreduce: word count over the standard library's sources -----------------------------------------

MAPREDUCE = "04-mapreduce.ipynb"


@pytest.fixture
def mapreduce(run_notebook) -> Executed:
    return run_notebook(MAPREDUCE)


@needs(MAPREDUCE)
def test_mapreduce_matches_counter(mapreduce: Executed) -> None:
    out = mapreduce.stdout
    assert "matches collections.Counter: True\n" in out
    files = int(one(r"corpus: (\d+) source files of the Python standard library, \S+ MB", out).group(1))
    assert 20 <= files <= 200, files
    assert "add_up('the', [1, 1, 1]) = 3\n" in out


@needs(MAPREDUCE)
def test_mapreduce_top_words(mapreduce: Executed) -> None:
    out = mapreduce.stdout
    words, distinct = one(r"([\d,]+) words in all, ([\d,]+) different ones", out).groups()
    words, distinct = int(words.replace(",", "")), int(distinct.replace(",", ""))
    assert 0 < distinct < words, out
    top = re.findall(r"^ +(\d+)\. ([a-z]+) +([\d,]+)\n", out.split("top 10 words:\n", 1)[1], flags=re.MULTILINE)
    assert [int(rank) for rank, _, _ in top[:10]] == list(range(1, 11)), out
    frequencies = [int(n.replace(",", "")) for _, _, n in top[:10]]
    assert frequencies == sorted(frequencies, reverse=True) and frequencies[-1] > 0, frequencies


@needs(MAPREDUCE)
def test_mapreduce_units_and_partitions(mapreduce: Executed) -> None:
    out = mapreduce.stdout
    files = one(r"corpus: (\d+) source files of the Python standard library, \S+ MB", out).group(1)
    assert f"map units (one per file): {files}\n" in out
    assert "reduce units (one per partition): 4\n" in out
    parts = re.findall(r"^  partition (\d): ([\d,]+) different words, on engine \d+\n", out, flags=re.MULTILINE)
    assert [int(p) for p, _ in parts] == [0, 1, 2, 3], out
    distinct = int(one(r"[\d,]+ words in all, ([\d,]+) different ones", out).group(1).replace(",", ""))
    assert sum(int(n.replace(",", "")) for _, n in parts) == distinct, out


@needs(MAPREDUCE)
def test_mapreduce_combiner(mapreduce: Executed) -> None:
    out = mapreduce.stdout
    assert "with a combiner: same counts: True\n" in out
    without, with_ = one(r"values sent from mappers to reducers: ([\d,]+) without a combiner, "
                         r"([\d,]+) with one", out).groups()
    words = one(r"([\d,]+) words in all, [\d,]+ different ones", out).group(1)
    assert without == words, out   # without a combiner, one value per occurrence
    assert int(with_.replace(",", "")) < int(without.replace(",", "")), out


@needs(MAPREDUCE)
def test_mapreduce_stops_its_cluster(mapreduce: Executed) -> None:
    assert_stops_its_cluster(mapreduce)


# -- 05-parameters: a form drives a simulation whose result is plotted -------------------------------------

PARAMETERS = "05-parameters.ipynb"


@pytest.fixture
def parameters(run_notebook) -> Executed:
    return run_notebook(PARAMETERS)


def widget_states(executed: Executed, css_class: str) -> list[dict]:
    """The recorded state of every widget carrying ``css_class`` (nbclient keeps the final state)."""
    widgets = executed.nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    return [model["state"] for model in widgets.get("state", {}).values()
            if css_class in model["state"].get("_dom_classes", ())]


@needs(PARAMETERS)
def test_parameters_fields_follow_annotations(parameters: Executed) -> None:
    out = parameters.stdout
    for name, widget in (("sigma", "FloatSlider"), ("steps", "IntSlider"), ("kick", "Dropdown"),
                         ("drift", "Checkbox"), ("label", "Text")):
        one(rf" *{name}: {widget}", out)
    values = ast.literal_eval(one(r"the form's values: (\{.*\})", out).group(1))
    assert values == {"sigma": 1.0, "steps": 200, "kick": "gauss", "drift": False}, values


@needs(PARAMETERS)
def test_parameters_form_refuses_before_dispatch(parameters: Executed) -> None:
    out = parameters.stdout
    one(r"form\.submit\(\) with an empty label returns None", out)
    reason = one(r"next to the Run button: (.*)", out).group(1)
    assert "'label'" in reason and "missing" in reason, reason
    refused = one(r"form\.set\(sigma=50\) refused: (.*)", out).group(1)
    assert "'sigma'" in refused and "<= 10" in refused, refused
    one(r"sigma is still 1\.0", out)


@needs(PARAMETERS)
def test_parameters_form_run_equals_direct_call(parameters: Executed) -> None:
    out = parameters.stdout
    params = ast.literal_eval(one(r"parameters: (\{.*\})", out).group(1))
    assert params == {"sigma": 2.0, "steps": 200, "kick": "gauss", "drift": False,
                      "label": "σ = 2, Gaussian kicks"}, params
    spread = float(one(r"after 200 steps, 3200 walkers spread by (\S+) \(theory: σ·√200 = 28\.28\)", out).group(1))
    assert abs(spread - 2.0 * math.sqrt(200)) < 0.05 * 2.0 * math.sqrt(200), spread
    from_form = one(r"spread after 200 steps, from the form's run:   (\S+)", out).group(1)
    direct = one(r"spread after 200 steps, calling the task here: (\S+)", out).group(1)
    assert from_form == direct and f"{float(from_form):.2f}" == f"{spread:.2f}", (from_form, direct)
    one(r"the form's run equals calling the task directly: True", out)


@needs(PARAMETERS)
def test_parameters_history_of_two_runs(parameters: Executed) -> None:
    out = parameters.stdout
    one(r"runs so far: 2", out)
    rows = re.findall(r"^ +(\d+) +(\S+) +(\d+) +(gauss|uniform|coin) +(True|False) +(-?\d+\.\d\d) +(\d+\.\d\d)\n",
                      out.split("spread at end\n", 1)[1], flags=re.MULTILINE)
    assert [(n, sigma, steps, kick, drift) for n, sigma, steps, kick, drift, _, _ in rows[:2]] == [
        ("1", "2.0", "200", "gauss", "False"), ("2", "2.0", "200", "coin", "True")], out
    first, second = rows[0], rows[1]
    spread = float(one(r"after 200 steps, 3200 walkers spread by (\S+) .*", out).group(1))
    assert float(first[6]) == spread, (first, spread)
    assert abs(float(first[5])) < 3 and abs(float(second[5]) - 40) < 3, rows     # only the drift moves the cloud
    assert abs(float(second[6]) - 2.0 * math.sqrt(200)) < 1.5, rows               # a coin toss spreads the same
    one(r"drift expected: 0\.1·σ·steps = 40\.00", out)


@needs(PARAMETERS)
def test_parameters_progress_inside_units(parameters: Executed) -> None:
    out = parameters.stdout
    count = int(one(r"(\d+) progress reports seen while the run went on, for example:", out).group(1))
    assert count >= 1, out
    reports = re.findall(r"^  unit ([0-7]): (\d+)% step (\d+) of 1000\n", out, flags=re.MULTILINE)
    assert 1 <= len(reports) <= 3, out
    assert all(int(percent) * 10 == int(step) for _, percent, step in reports), reports
    spread = float(one(r"after 1000 steps the walkers spread by (\S+) \(theory: σ·√1000 = 63\.25\)", out).group(1))
    assert abs(spread - 63.25) < 0.05 * 63.25, spread


@needs(PARAMETERS)
def test_parameters_form_shows_the_plot(parameters: Executed) -> None:
    # read from the kernel: every run's plot reached the form's Output widget as a PNG
    holds = re.findall(r"^the form's output area holds: (.*)\n", parameters.stdout, flags=re.MULTILINE)
    assert holds == ["[['image/png', 'text/plain']]"] * 3, holds
    # and as the front end got it: the widget state nbclient recorded
    outputs = widget_states(parameters, "nbtasks-result")
    assert len(outputs) == 1, outputs
    shown = outputs[0]["outputs"]
    assert len(shown) == 1 and "image/png" in shown[0]["data"], shown
    assert base64.b64decode(shown[0]["data"]["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")
    history = widget_states(parameters, "nbtasks-history")
    assert len(history) == 1 and history[0]["value"].count("<tr><td") == 3, history


@needs(PARAMETERS)
def test_parameters_stops_its_cluster(parameters: Executed) -> None:
    assert_stops_its_cluster(parameters)


# -- 06-run-store: nothing finished is lost -----------------------------------------------------------

RUN_STORE = "06-run-store.ipynb"


@pytest.fixture
def run_store(run_notebook) -> Executed:
    return run_notebook(RUN_STORE)


@needs(RUN_STORE)
def test_run_store_rerun_runs_only_the_missing_units(run_store: Executed) -> None:
    out = run_store.stdout
    done = int(one(r"first run: cancelled, (\d+) units done", out).group(1))
    assert 12 <= done < 40, out
    reused, ran = map(int, one(r"second run: (\d+) units reused from the store, (\d+) units ran", out).groups())
    assert reused == done and reused + ran == 40, out  # counted from files the units left
    assert "every seed has its walk: True\n" in out
    assert one(r"third run: 40 of 40 reused, 0 ran, \S+ s", out)


@needs(RUN_STORE)
def test_run_store_changes_and_cache_false_run_again(run_store: Executed) -> None:
    out = run_store.stdout
    assert "steps=4000: 0 reused, 40 ran\n" in out
    assert "cache=False: 0 reused, 40 ran\n" in out


@needs(RUN_STORE)
def test_run_store_failed_unit_runs_again_alone(run_store: Executed) -> None:
    out = run_store.stdout
    assert "first try: failed - 7 done, 1 failed\n" in out
    assert "failed unit: 5 - ConnectionError: the service is down\n" in out
    assert "second try: [0, 10, 20, 30, 40, 50, 60, 70] (7 reused, 1 ran)\n" in out


@needs(RUN_STORE)
def test_run_store_record_lists_every_run(run_store: Executed) -> None:
    out = run_store.stdout
    assert "7 runs recorded:\n" in out
    rows = re.findall(r"^  (\S+) +(\w+) +done +(\d+) +failed (\d) +reused +(\d+)$", out, flags=re.MULTILINE)
    assert [r[0] for r in rows] == ["parallel(fetch)"] * 2 + ["parallel(simulate)"] * 5, rows
    assert [r[1] for r in rows] == ["done", "failed", "done", "done", "done", "done", "cancelled"], rows
    assert "unit 5 of fetch: ConnectionError: the service is down\n" in out


@needs(RUN_STORE)
def test_run_store_explains_why_units_ran_and_a_grown_list_runs_one_unit(run_store: Executed) -> None:
    out = run_store.stdout
    assert "simulate: 0 of 40 units from the store; 40 ran: parameter steps changed (40)\n" in out
    assert "simulate: 0 of 40 units from the store; 40 ran: cache turned off: submit(cache=False) (40)\n" in out
    assert "one seed more: 40 reused, 1 ran\n" in out  # counted from the files the units left
    assert "simulate: 40 of 41 units from the store; 1 ran: input new (1)\n" in out


@needs(RUN_STORE)
def test_run_store_an_edited_file_reruns_its_unit(run_store: Executed) -> None:
    out = run_store.stdout
    assert "totals: [10, 60, 110]\nafter the edit: [10, 1000, 110]\n" in out
    assert "total: 2 of 3 units from the store; 1 ran: input new (1)\n" in out


@needs(RUN_STORE)
def test_run_store_a_cache_false_step_runs_while_the_walks_are_reused(run_store: Executed) -> None:
    out = run_store.stdout
    assert "new readings: True\nsimulate: 6 of 6 units from the store\n" in out
    assert "reading: 0 of 6 units from the store; 6 ran: cache turned off: the task has cache=False (6)\n" in out


@needs(RUN_STORE)
def test_run_store_past_runs_are_picked_up_and_pruned(run_store: Executed) -> None:
    out = run_store.stdout
    assert "6 sweeps recorded; the newest: done with 41 units\n" in out
    assert "its result, read back from the store: True\n" in out
    assert one(r"\S+runs\.db: \S+ \S+ of results from 12 run\(s\), limit .*", out)
    assert "removed 2 run(s)" in out and "left: 0 runs of the totals\n" in out


@needs(RUN_STORE)
def test_run_store_stops_its_cluster(run_store: Executed) -> None:
    assert_stops_its_cluster(run_store)


# -- 07-cluster: the same notebook here and on other hosts (the test hosts of tests/hosts/) -------------


CLUSTER = "07-cluster.ipynb"


@pytest.fixture
def cluster_here(run_notebook) -> Executed:
    return run_notebook(CLUSTER)


@pytest.fixture(scope="module")
def cluster_on_hosts(request, tmp_path_factory) -> Executed:
    """07 run against SSH hosts: a copy of the notebook and its helpers.py in a folder the hosts
    cannot read, ipyparallel's SSH settings in the profile (as a user would keep them there)."""
    ssh = request.getfixturevalue("ssh_hosts")
    workdir = tmp_path_factory.mktemp("laptop")  # under pytest's base temp: hidden from the hosts
    for name in (CLUSTER, "helpers.py"):
        (workdir / name).write_bytes((NOTEBOOKS / name).read_bytes())
    ipythondir = workdir / "ipython"
    (ipythondir / "profile_default").mkdir(parents=True)
    (ipythondir / "profile_default" / "ipcluster_config.py").write_text(
        f"c.SSHLauncher.ssh_args = c.SSHLauncher.scp_args = {ssh.ssh_args!r}\n"
        f"c.SSHLauncher.remote_python = {sys.executable!r}\n")
    for host in ssh.network.hosts:
        seen = host.run(["sh", "-c", 'test -e "$0" && echo readable || echo hidden', str(workdir / "helpers.py")])
        assert seen == "hidden\n"  # helpers.py is the client's alone
    return execute(CLUSTER, ipythondir, workdir, env={"NBTASKS_TUTORIAL_HOSTS": "node1,node2",
                                                      "NBTASKS_STORE": str(workdir / "runs.db")})


def assert_cluster_tutorial(executed: Executed, here: str, there: list[str]) -> None:
    """Part 1 ran on ``here``; part 2 and the attached cluster on ``there`` (one engine each)."""
    out = executed.stdout
    part1, part2 = out.split("there: ", 1)
    report = one(r"here: (.*)", part1).group(1)
    assert report == "35 different words; the most frequent: bread (3), came (3), market (3), river (3), town (3)"
    assert one(r"ran on: (.*)", part1).group(1) == here
    assert part2.startswith(f"{report}\n")
    assert one(r"ran on: (.*)", part2).group(1) == ", ".join(sorted(set(there)))
    assert "same result as on the laptop: True\n" in part2
    assert "same as running it serially in this notebook: True\n" in part2
    engines = re.findall(r"^  engine \d+ on (\S+), pid \d+$", part2, flags=re.MULTILINE)
    assert sorted(engines) == sorted(there), part2
    assert "characters per line, counted on the attached cluster: [69, 66, 64, 52, 59, 69, 60, 56]\n" in part2
    assert one(r"its engines run on: (.*)", part2).group(1) == ", ".join(sorted(set(there)))
    assert "after detaching, the cluster still has 2 engines\n" in part2
    assert out.endswith("cluster stopped\n"), out[-300:]
    assert not executed.left_after_last_cell, executed.left_after_last_cell


@needs(CLUSTER)
def test_cluster_tutorial_runs_on_this_machine_without_hosts(cluster_here: Executed) -> None:
    host = socket.gethostname()
    assert "SSH hosts: none given, every part runs here\n" in cluster_here.stdout
    assert_cluster_tutorial(cluster_here, host, [host, host])


@needs(CLUSTER)
def test_cluster_tutorial_moves_to_ssh_hosts_by_its_cluster_line(cluster_on_hosts: Executed, request) -> None:
    hosts = request.getfixturevalue("network").hosts
    assert not [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(cluster_on_hosts.nb.cells)
                if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert "SSH hosts: node1, node2\n" in cluster_on_hosts.stdout
    assert_cluster_tutorial(cluster_on_hosts, socket.gethostname(), ["node1", "node2"])
    deadline = time.monotonic() + EXIT_GRACE  # cluster.stop() stopped the engines on the hosts too
    while any(h.processes() for h in hosts) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p.cmdline() for h in hosts for p in h.processes()] == []
