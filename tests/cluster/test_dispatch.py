"""Runs on a real local cluster of 2 engines: results, errors, cancel, batching."""

import asyncio
import concurrent.futures as cf
import subprocess
import threading
import time
import traceback

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbtasks as nt
from nbtasks.core.serialize import UnpicklableError
from tests.core.test_compose import compositions


def noop(x):
    return x


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return seconds


def fail_on_three(x):
    if x == 3:
        raise ValueError("three is bad")
    return x * 10


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(compositions(), st.integers(-20, 20))
def test_any_nesting_on_the_cluster_equals_the_serial_run(cluster, task, x):
    task = nt.core.as_task(task)
    assert task.run(x, cluster=cluster, progress=False, timeout=60) == task(x)


def test_submit_returns_at_once_and_result_waits(cluster):
    run = nt.task(spin).submit(0.3, cluster=cluster, progress=False)
    assert not run.done()
    assert run.result(timeout=30) == 0.3
    assert run.done() and run.state is nt.RunState.DONE and run.exception() is None


def test_results_keep_unit_order_with_many_units(cluster):
    run = nt.ParallelTask(lambda x: -x).submit(range(20_000), cluster=cluster, progress=False)
    assert run.result(60) == [-x for x in range(20_000)]
    assert run.counts()["done"] == 20_000


def test_tiny_units_are_batched_without_tuning(cluster):
    run = nt.ParallelTask(noop).submit(range(100_000), cluster=cluster, progress=False)
    run.result(120)
    sizes = [c.stop - c.start for c in run._chunks]
    assert sum(sizes) == 100_000
    assert len(sizes) < 200, "tiny units must travel in large chunks"
    assert max(sizes) >= 1000


def test_long_units_are_not_batched_into_a_long_tail(cluster):
    from nbtasks.cluster.batching import ChunkSizer

    run = nt.ParallelTask(spin).submit([0.05] * 40, cluster=cluster, progress=False)
    run.result(60)
    sizes = [c.stop - c.start for c in run._chunks]  # in the order they came back
    assert max(sizes) * 0.05 <= ChunkSizer.target + 0.05  # a chunk holds ~target seconds at most
    assert sizes[-1] <= 2  # the tail shrinks so no engine idles while another finishes a big chunk
    assert {u.engine for u in run.units()} == set(cluster.engines)


def test_a_probe_runs_what_its_time_allows_and_the_rest_waits_without_counting_as_retried(cluster, tmp_path):
    """The first chunks carry many units but run ~20 ms of them: 10 ms units run once each,
    the units a probe did not reach are neither lost nor counted as retried, and the probes'
    records show they stopped early."""

    def once(x, directory=str(tmp_path)):
        with open(f"{directory}/{x}", "a") as f:
            f.write("x")
        time.sleep(0.01)
        return x

    run = nt.ParallelTask(once).submit(range(120), cluster=cluster, progress=False, cache=False)
    assert run.result(60) == list(range(120))
    assert sorted(int(p.name) for p in tmp_path.iterdir()) == list(range(120))
    assert all(p.read_text() == "x" for p in tmp_path.iterdir())
    assert run.counts()["retried"] == 0 and run.counts()["done"] == 120
    first = [c.stop - c.start for c in run._chunks[:2]]
    assert max(first) <= 5, first  # ~20 ms of 10 ms units, not the 15 units the probe carried


def test_a_task_run_again_sizes_its_first_chunks_from_its_last_run_instead_of_probing(cluster):
    """A loop of runs, a cell run again: the second run knows its units take ~20 ms, so its
    first chunks are shares of the work (not probes of one unit each), and it needs fewer.
    (No store: the units' results would be found there by later tests.)"""
    task = nt.ParallelTask(spin)
    first = task.submit([0.02] * 40, cluster=cluster, progress=False, store=False)
    first.result(60)
    again = task.submit([0.02] * 40, cluster=cluster, progress=False, store=False)
    assert again.result(60) == [0.02] * 40
    probes = [c.stop - c.start for c in first._chunks[:2]]
    opening = [c.stop - c.start for c in again._chunks[:2]]
    assert max(probes) <= 2 and min(opening) >= 5, (probes, opening)
    assert len(again._chunks) < len(first._chunks)


def test_units_much_slower_than_last_time_stop_the_guessed_chunks_after_one_unit(cluster):
    """The same task again with units 50 times longer: the chunks sized by last run's time
    stop at twice what it said, after their first unit, and hand the rest back (not counted
    as retried); the next chunks are sized by what those measured."""
    task = nt.ParallelTask(spin)
    task.submit([0.001] * 40, cluster=cluster, progress=False, store=False).result(60)
    run = task.submit([0.05] * 24, cluster=cluster, progress=False, store=False)
    assert run.result(60) == [0.05] * 24
    opening = [c.stop - c.start for c in run._chunks[:2]]
    assert max(opening) == 1, opening  # chunks of 6 and 5 units, each stopped after one
    assert run.counts()["retried"] == 0 and run.counts()["done"] == 24


def test_the_last_units_go_to_the_engine_that_will_be_free_first(cluster):
    """With equal units and no probes, the first chunks of both engines are sized at once;
    the last units then go where they end soonest, not to the first engine with room in its
    queue (that gave one engine two units more, and the other idled 100 ms)."""
    task = nt.ParallelTask(spin)
    task.submit([0.05] * 8, cluster=cluster, progress=False, store=False).result(60)  # its unit time
    run = task.submit([0.05] * 40, cluster=cluster, progress=False, store=False)
    run.result(60)
    ends: dict[int, float] = {}
    for unit in run.units():
        ends[unit.engine] = max(ends.get(unit.engine, 0.0), unit.end)
    assert len(ends) == 2
    first_done, last_done = sorted(ends.values())
    assert last_done - first_done < 0.04, ends  # less than one unit apart


def test_lambdas_closures_and_classes_from_main_run_on_engines(python_script):
    script = python_script('''
import nbtasks as nt

class Point:
    def __init__(self, x):
        self.x = x
    def norm(self):
        return abs(self.x)

offset = 100
def make_adder(k):
    return lambda p: p.norm() + k + offset

with nt.Cluster(n=2) as c:
    print(nt.ParallelTask(make_adder(1)).run([Point(-1), Point(2)], cluster=c, progress=False))
    print(type(nt.task(lambda x: Point(x)).run(5, cluster=c, progress=False)).__name__)
''')
    out = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[102,", "103]", "Point"]


def test_failed_unit_names_task_input_engine_and_keeps_remote_traceback(cluster):
    run = nt.ParallelTask(fail_on_three).submit(range(6), cluster=cluster, progress=False)
    with pytest.raises(nt.UnitError) as info:
        run.result(30)
    err = info.value
    assert (err.task, err.index, err.input) == ("fail_on_three", 3, 3)
    assert err.engine in cluster.engines and err.host and err.pid
    assert "task 'fail_on_three' failed on unit 3 (input 3) on engine" in str(err)
    assert isinstance(err.__cause__, ValueError)
    assert isinstance(err.__cause__.__cause__, nt.RemoteTraceback)
    assert 'raise ValueError("three is bad")' in err.traceback
    assert "nbtasks/core" not in err.traceback  # only the user's frames
    assert run.state is nt.RunState.FAILED


def test_on_error_continue_finishes_the_others_and_lists_failures(cluster):
    run = nt.ParallelTask(fail_on_three).submit(range(8), cluster=cluster, progress=False,
                                                on_error="continue")
    with pytest.raises(nt.RunFailed) as info:
        run.result(30)
    assert [f.input for f in info.value.failures] == [3] == [f.input for f in run.failures]
    assert run.counts()["done"] == 7 and run.counts()["failed"] == 1
    done = sorted(u.result for u in run.units(state="done"))
    assert done == [0, 10, 20, 40, 50, 60, 70]


def test_many_failures_print_a_few_and_count_the_rest(cluster):
    run = nt.ParallelTask(lambda x: 1 / 0).submit(range(10), cluster=cluster, progress=False,
                                                  on_error="continue")
    message = str(run.exception(30))
    assert message.startswith("10 unit(s) of 'parallel(<lambda>)' failed")
    assert "and 7 more" in message


def test_cancel_stops_a_run_and_frees_the_engines(cluster):
    run = nt.ParallelTask(spin).submit([30] * 6, cluster=cluster, progress=False)
    while run.counts()["running"] == 0:
        time.sleep(0.05)
    assert run.cancel() is True
    assert run.cancel() is True  # idempotent
    assert run.cancelled() and run.done() and run.state is nt.RunState.CANCELLED
    with pytest.raises(cf.CancelledError):
        run.result(1)
    # the engines take new work at once: this would wait 30 s if the spin went on
    assert nt.ParallelTask(noop).run(range(4), cluster=cluster, progress=False, timeout=10) == [0, 1, 2, 3]
    deadline = time.monotonic() + 10
    while run.counts()["cancelled"] < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.counts()["cancelled"] == 6 and run.counts()["running"] == 0


def test_cancel_after_finish_returns_false(cluster):
    run = nt.task(noop).submit(1, cluster=cluster, progress=False)
    run.result(30)
    assert run.cancel() is False and not run.cancelled()


def test_future_protocol_callbacks_and_await(cluster):
    seen = threading.Event()
    run = nt.task(noop).submit(5, cluster=cluster, progress=False)
    run.add_done_callback(lambda f: seen.set() if f.result() == 5 else None)
    assert isinstance(run, cf.Future)
    assert seen.wait(30)
    assert list(cf.as_completed([run])) == [run]

    async def main():
        return await nt.task(noop).submit(6, cluster=cluster, progress=False)

    assert asyncio.run(main()) == 6


def test_as_completed_yields_every_unit_with_its_result(cluster):
    run = nt.ParallelTask(lambda x: x * x).submit(range(50), cluster=cluster, progress=False)
    records = list(run.as_completed(timeout=60))
    assert sorted((r.index, r.result) for r in records) == [(i, i * i) for i in range(50)]


def test_unit_records_capture_output_engine_host_and_times(cluster):
    def chatty(x):
        print("out", x)
        import sys
        print("err", x, file=sys.stderr)
        return x

    run = nt.ParallelTask(chatty).submit(range(4), cluster=cluster, progress=False)
    run.result(30)
    units = sorted(run.units(), key=lambda u: u.index)
    assert [u.stdout for u in units] == [f"out {i}\n" for i in range(4)]
    assert [u.stderr for u in units] == [f"err {i}\n" for i in range(4)]
    for u in units:
        assert u.engine in cluster.engines and u.host and u.pid
        assert u.start <= u.end and u.state is nt.UnitState.DONE


def test_counts_by_tag(cluster):
    a = nt.task(tag="io")(noop)
    b = nt.task(tag="cpu")(lambda x: x + 1)
    run = nt.ParallelTask(nt.ContainerTask(a, b)).submit(range(5), cluster=cluster, progress=False)
    assert run.result(30) == [1, 2, 3, 4, 5]
    by_tag = run.counts(by="tag")
    assert by_tag["io"]["done"] == 5 and by_tag["cpu"]["done"] == 5
    with pytest.raises(ValueError):
        run.counts(by="colour")


def test_parameters_reach_the_engines(cluster):
    @nt.task
    def scale(x, factor: float = 1.0):
        return x * factor

    assert nt.ParallelTask(scale).run([1, 2], cluster=cluster, factor=3.0, progress=False) == [3.0, 6.0]
    with pytest.raises(TypeError, match="unexpected keyword argument 'factr'"):
        nt.ParallelTask(scale).submit([1], cluster=cluster, factr=3.0)


def test_unpicklable_task_is_refused_before_dispatch_with_the_culprit_named(cluster):
    lock = threading.Lock()
    with pytest.raises(UnpicklableError, match=r"variable 'lock' captured by .*cannot be pickled"):
        nt.task(lambda x: lock).submit(1, cluster=cluster)
    with pytest.raises(UnpicklableError, match="input of task 'noop'"):
        nt.task(noop).submit(threading.Lock(), cluster=cluster)


def test_unpicklable_unit_input_fails_the_run_naming_the_unit(cluster):
    run = nt.ParallelTask(noop).submit([1, threading.Lock(), 3], cluster=cluster, progress=False)
    with pytest.raises(UnpicklableError, match="unit 1"):
        run.result(30)


def test_unpicklable_result_fails_that_unit_clearly(cluster):
    run = nt.task(lambda x: threading.Lock()).submit(1, cluster=cluster, progress=False)
    with pytest.raises(nt.UnitError, match="cannot be pickled to send it back"):
        run.result(30)


def test_bad_divide_and_bad_mapper_give_clear_errors(cluster):
    with pytest.raises(TypeError, match="fan: divide '<lambda>' returned int 5, which is not iterable"):
        nt.ParallelTask(noop, divide=lambda n: n, name="fan").submit(5, cluster=cluster)  # before dispatch
    inner = nt.ContainerTask(abs, nt.ParallelTask(noop, divide=lambda n: n, name="inner"))
    run = inner.submit(-5, cluster=cluster, progress=False)  # known only once abs has run
    with pytest.raises(TypeError, match="inner: divide '<lambda>' returned int 5, which is not iterable"):
        run.result(30)
    mr = nt.MapReduceTask(lambda s: s.split(), lambda k, v: v)
    with pytest.raises(nt.UnitError, match="must yield \\(key, value\\) pairs") as info:
        mr.run(["a b"], cluster=cluster, progress=False, timeout=30)
    assert isinstance(info.value.__cause__, TypeError)


def no_units_today(n):
    raise ValueError("no units today")


def test_a_divide_that_raises_names_its_task_before_and_after_dispatch(cluster):
    with pytest.raises(ValueError, match="no units today") as caught:
        nt.ParallelTask(noop, divide=no_units_today, name="fan").submit(5, cluster=cluster)  # at submit
    assert "in divide 'no_units_today' of task 'fan'" in "".join(caught.value.__notes__)
    later = nt.ContainerTask(abs, nt.ParallelTask(noop, divide=no_units_today, name="inner"))
    with pytest.raises(ValueError, match="no units today") as caught:
        later.run(-5, cluster=cluster, progress=False, timeout=30)  # once abs has run
    shown = "".join(traceback.format_exception(caught.value))
    assert "in divide 'no_units_today' of task 'inner'" in shown


def test_a_mapper_yielding_an_unhashable_key_is_named(cluster):
    mr = nt.MapReduceTask(lambda line: [(w.split("="), 1) for w in line.split()], lambda k, v: sum(v),
                          name="count")
    message = r"mapper '<lambda>' yielded the key \['a'\] \(list\) for unit 0, which cannot be a key"
    with pytest.raises(nt.UnitError, match=message):
        mr.run(["a b"], cluster=cluster, progress=False, timeout=30)
    with pytest.raises(TypeError, match=message):
        mr(["a b"])  # the same words when it runs right here


def test_a_small_run_is_not_stuck_behind_a_big_one(cluster):
    big = nt.ParallelTask(spin).submit([0.02] * 300, cluster=cluster, progress=False)
    small = nt.ParallelTask(spin).submit([0.02] * 4, cluster=cluster, progress=False)
    small.result(60)
    assert not big.done(), "the small run should share the engines, not wait for the big one"
    big.cancel()


def test_on_error_must_be_known(cluster):
    with pytest.raises(ValueError, match="on_error"):
        nt.task(noop).submit(1, cluster=cluster, on_error="ignore")


def test_empty_inputs_finish_at_once(cluster):
    assert nt.ParallelTask(noop).run([], cluster=cluster, progress=False, timeout=30) == []
    assert nt.MapReduceTask(lambda x: [(x, 1)], lambda k, v: v).run([], cluster=cluster, progress=False,
                                                                     timeout=30) == {}


def test_with_continue_a_failed_unit_stops_only_its_own_branch(cluster):
    after = nt.task(lambda x: x + 1, name="after")
    branch = nt.ContainerTask(fail_on_three, after)
    run = nt.ParallelTask(branch).submit(range(5), cluster=cluster, progress=False, on_error="continue")
    assert isinstance(run.exception(30), nt.RunFailed)
    by_task = run.counts(by="task")
    assert by_task["fail_on_three"]["done"] == 4 and by_task["fail_on_three"]["failed"] == 1
    assert by_task["after"]["done"] == 4  # the other branches went on to the next step


def test_engine_killed_mid_run_loses_nothing(cluster):
    import os
    import signal

    with nt.Cluster(n=2) as own:
        pids = dict(zip(own.client.ids, own.client[:].apply_sync(os.getpid)))
        run = nt.ParallelTask(spin).submit([0.02] * 100, cluster=own, progress=False)
        while run.counts()["done"] < 10:
            time.sleep(0.02)
        os.kill(pids[own.engines[0]], signal.SIGKILL)
        assert run.result(120) == [0.02] * 100
        assert run.counts()["done"] == 100


def test_cancel_right_after_submit_frees_the_engines(cluster):
    for _ in range(3):  # the interrupt may land before an engine starts the chunk
        run = nt.ParallelTask(spin).submit([30] * 4, cluster=cluster, progress=False)
        run.cancel()
    assert nt.ParallelTask(noop).run(range(4), cluster=cluster, progress=False, timeout=15) == [0, 1, 2, 3]


def test_tracebacks_from_engines_show_the_lines_of_notebook_cells(cluster):
    """A function defined in a cell lives in a file only the kernel's linecache knows;
    the engine gets those lines with the task, so its traceback shows the failing line."""
    import linecache

    cell = "/tmp/ipykernel_0/nbtasks-test-cell.py"
    source = "def invert(x):\n    half = x / 2\n    return 1 / (x - x)\n"
    linecache.cache[cell] = (len(source), None, source.splitlines(True), cell)  # as IPython does
    scope: dict = {}
    exec(compile(source, cell, "exec"), scope)
    try:
        with pytest.raises(nt.UnitError) as caught:
            nt.task(scope["invert"]).run(3, cluster=cluster, progress=False, timeout=30)
    finally:
        del linecache.cache[cell]
    assert "return 1 / (x - x)" in caught.value.traceback
    assert f'File "{cell}", line 3, in invert' in caught.value.traceback


HELPERS = '''\
def check(x):
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x
'''

MAIN = '''\
import cloudpickle
import nbtasks as nt
import helpers

cloudpickle.register_pickle_by_value(helpers)  # the module travels whole, as code of __main__ does


def scale(x):
    return helpers.check(x) * 2


if __name__ == "__main__":
    with nt.Cluster(n=1) as cluster:
        try:
            nt.ParallelTask(scale).run([1, -1], cluster=cluster, progress=False, timeout=60)
        except nt.UnitError as error:
            print(error.traceback)
'''


def test_tracebacks_show_the_lines_of_a_scripts_main_and_of_a_local_module(tmp_path, python_script):
    """Both travel by value (cloudpickle rebuilds their code on the engine, under whatever
    file name its version gives it); the traceback names the real files and lines."""
    (tmp_path / "helpers.py").write_text(HELPERS)
    command = python_script(MAIN, name="main.py")
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    tb = done.stdout
    assert f'File "{tmp_path / "main.py"}", line 9, in scale' in tb, tb
    assert "return helpers.check(x) * 2" in tb
    assert f'File "{tmp_path / "helpers.py"}", line 3, in check' in tb
    assert 'raise ValueError(f"negative: {x}")' in tb
    assert "ValueError: negative: -1" in tb
    assert "<dynamic-code>" not in tb
