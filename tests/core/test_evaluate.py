"""``Evaluation`` driven by an in-process backend: every composition matches its serial meaning.

``InProcess`` plays the cluster dispatcher's part without ipyparallel: one loop handles
messages (a run to start, a run to cancel) before chunks of units, runs each chunk here
with ``execute_chunk``, moves the unit counts through their named moves, reports chunk
records and failures, and tells the evaluation when a request's units are all back.
With ``lifo=True`` the newest chunk runs first, so units finish out of order, as they do
on several engines. ``manual=True`` leaves the loop to the test (``step``, ``drain``),
to cancel a run while units wait in the queue.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbtasks as nt
from nbtasks.core.evaluate import Evaluation, UnitRequest
from nbtasks.core.partition import partition_of
from nbtasks.core.records import ChunkRecord
from nbtasks.core.run import Run, start_run
from nbtasks.core.task import NOTHING
from nbtasks.core.unitexec import ChunkOutcome, UnitFailure, execute_chunk


class InProcess:
    """A backend (``start_run``, ``cancel_run``) that runs units here, a chunk at a time."""

    def __init__(self, chunk: int = 2, lifo: bool = False, manual: bool = False) -> None:
        self.chunk, self.lifo, self.manual = chunk, lifo, manual
        self.inbox: collections.deque = collections.deque()   # (handler, *args)
        self.queue: collections.deque = collections.deque()   # (request, start, stop): queued units
        self.evaluations: dict[str, Evaluation] = {}
        self.started: list[Run] = []
        self.executed: list[tuple[str, list]] = []  # (leaf name, inputs) of every chunk run

    # -- the Backend protocol ---------------------------------------------------
    def start_run(self, run: Run) -> None:
        self.started.append(run)
        self._post(self._on_run, run)

    def cancel_run(self, run: Run, reason: str) -> None:
        self._post(self._on_cancel, run, reason)

    # -- the dispatch loop ----------------------------------------------------------
    def _post(self, *message) -> None:
        self.inbox.append(message)
        if not self.manual:
            self.drain()

    def step(self) -> bool:
        """Handle one message, or else run one chunk; False when there is nothing to do."""
        if self.inbox:
            handler, *args = self.inbox.popleft()
            handler(*args)
        elif self.queue:
            self._run_chunk(*(self.queue.pop() if self.lifo else self.queue.popleft()))
        else:
            return False
        return True

    def drain(self) -> None:
        while self.step():
            pass

    def _on_run(self, run: Run) -> None:
        if run.done():  # cancelled before the loop got to it
            run.release_prequeued(cancelled=True)
            return
        evaluation = Evaluation(run, self._enqueue, self._stop_run)
        self.evaluations[run.id] = evaluation
        evaluation.start()

    def _on_cancel(self, run: Run, reason: str) -> None:
        evaluation = self.evaluations.get(run.id)
        if evaluation is not None:
            evaluation.over = True
        self._stop_run(run, reason)

    def _enqueue(self, request: UnitRequest) -> None:
        n = len(request.inputs)
        for start in range(0, n, self.chunk):
            self.queue.append((request, start, min(start + self.chunk, n)))

    def _stop_run(self, run: Run, reason: str) -> None:
        """Drop the run's queued units (nothing is ever in flight here)."""
        keep: collections.deque = collections.deque()
        for request, start, stop in self.queue:
            if request.run is run:
                request.node.units.cancel(stop - start)
            else:
                keep.append((request, start, stop))
        self.queue = keep

    def _run_chunk(self, request: UnitRequest, start: int, stop: int) -> None:
        evaluation, units, n = request.evaluation, request.node.units, stop - start
        if evaluation.over:
            units.cancel(n)
            return
        units.start(n)
        inputs = request.inputs[start:stop]
        self.executed.append((request.node.name, inputs))
        outcome = execute_chunk(request.node.task, request.mode, request.params, inputs, request.extra, start)
        errors: dict[int, nt.UnitError] = {}
        for i in range(n):
            failure = outcome.errors.get(i)
            if failure is None:
                request.results[start + i] = outcome.values[i]
            else:
                errors[i] = self._unit_error(request, start + i, failure, outcome)
        units.finish(n - len(errors))
        units.fail(len(errors))
        request.failed += len(errors)
        request.remaining -= n
        evaluation.run.report_chunk(ChunkRecord(request, start, stop, None, outcome, 0, errors))
        evaluation.units_back(request, errors.values())

    @staticmethod
    def _unit_error(request: UnitRequest, index: int, failure: UnitFailure, outcome: ChunkOutcome) -> nt.UnitError:
        error = nt.UnitError(request.node.name, request.label(index), request.inputs[index], failure.summary,
                             failure.traceback, None, outcome.host, outcome.pid, failure.exception)
        error.node_id = request.node.id
        error.__cause__ = failure.exception
        return error


def submit(task, input=NOTHING, params=None, backend=None, **options):
    backend = backend or InProcess()
    run = start_run(task, input, params or {}, cluster=backend, store=False, progress=False, **options)
    return run, backend


def assert_settled(run: Run, done: int, failed: int = 0, cancelled: int = 0) -> None:
    counts = run.counts()
    assert (counts["queued"], counts["running"]) == (0, 0)
    assert (counts["done"], counts["failed"], counts["cancelled"]) == (done, failed, cancelled)
    assert run.settled


# -- the tasks ------------------------------------------------------------------------
def inc(x):
    return x + 1


def double(x):
    return 2 * x


def square(x):
    return x * x


def words(line):
    for w in line.split():
        yield w, 1


def total(key, values):
    return sum(values)


def lines_of(text):
    return text.splitlines()


def top(counts):
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def fragile(x):
    if x in (3, 5):
        raise ValueError(f"{x} is bad")
    return x


TEXT = "a b a\nc b\n\na d a"
LINES = TEXT.splitlines()
KEYS = ["a", "b", "c", "d"]
REDUCE_UNITS = len({partition_of(k, 3) for k in KEYS})  # the partitions that get keys

CASES = {  # name: (task, input, units it runs)
    "leaf": (nt.task(double), 5, 1),
    "sequence": (nt.ContainerTask(inc, double, inc), 3, 3),
    "concurrent": (nt.ContainerTask(sum, max, len, concurrent=True), [1, 5, 2], 3),
    "parallel": (nt.ParallelTask(square, divide=range, collect=lambda rs: ",".join(map(str, rs))), 7, 7),
    "parallel-empty": (nt.ParallelTask(square), [], 0),
    "no-input": (nt.ContainerTask(nt.ParallelTask(double, divide=lambda: range(3)), sum), NOTHING, 4),
    "mapreduce": (nt.MapReduceTask(words, total, partitions=3, combiner=total), LINES,
                  len(LINES) + REDUCE_UNITS),
    "mapreduce-empty": (nt.MapReduceTask(words, total, partitions=3), [], 0),
    "parallel-over-sequence": (nt.ParallelTask(nt.ContainerTask(inc, double), divide=range), 5, 10),
    "parallel-over-concurrent": (nt.ParallelTask(nt.ContainerTask(inc, double, concurrent=True)), [4, 1, 7], 6),
    "parallel-over-parallel": (nt.ParallelTask(nt.ParallelTask(double, divide=range, collect=sum), divide=range),
                               5, 0 + 1 + 2 + 3 + 4),
    "mapreduce-in-sequence": (nt.ContainerTask(lines_of, nt.MapReduceTask(words, total, partitions=3), top), TEXT,
                              1 + len(LINES) + REDUCE_UNITS + 1),
    "mapreduce-composed": (nt.MapReduceTask(nt.ContainerTask(str.upper, lambda s: [(w, 1) for w in s.split()]),
                                            nt.ContainerTask(lambda kv: kv[1], sum), partitions=3, combiner=total),
                           LINES, 2 * len(LINES) + 2 * len(KEYS)),
}


@pytest.mark.parametrize("lifo", [False, True], ids=["in-order", "out-of-order"])
@pytest.mark.parametrize("case", list(CASES))
def test_run_gives_the_serial_result(case, lifo):
    task, input, units = CASES[case]
    run, _ = submit(task, input, backend=InProcess(lifo=lifo))
    expected = task(input)
    assert run.state is nt.RunState.DONE
    assert run.result() == expected
    assert repr(run.result()) == repr(expected)  # same types (tuple, list) and key order
    assert_settled(run, done=units)


def test_out_of_order_chunks_still_give_results_in_unit_order():
    backend = InProcess(chunk=1, lifo=True)
    run, _ = submit(nt.ParallelTask(inc, divide=range), 6, backend=backend)
    assert [inputs for _, inputs in backend.executed] == [[5], [4], [3], [2], [1], [0]]
    assert run.result() == [1, 2, 3, 4, 5, 6]


def test_the_top_fan_out_divides_its_input_once():
    numbers = (n for n in range(4))  # a generator: a second divide would see it empty
    run, _ = submit(nt.ParallelTask(nt.ContainerTask(inc, double)), numbers)
    assert run.result() == [2, 4, 6, 8]


def test_a_parallel_over_a_sequence_reports_every_unit_under_its_fan_out_index():
    run, _ = submit(nt.ParallelTask(nt.ContainerTask(inc, double)), [10, 20, 30])
    records = {(u.task, u.index): (u.input, u.result) for u in run.units()}
    assert records == {("inc", 0): (10, 11), ("inc", 1): (20, 21), ("inc", 2): (30, 31),
                       ("double", 0): (11, 22), ("double", 1): (21, 42), ("double", 2): (31, 62)}
    assert run.counts(by="task") == {name: {"queued": 0, "running": 0, "done": 3, "failed": 0, "retried": 0,
                                            "cancelled": 0} for name in ("inc", "double")}


def test_run_units_lists_a_later_step_in_input_order_when_units_finish_out_of_order():
    run, _ = submit(nt.ParallelTask(nt.ContainerTask(inc, double)), [10, 20, 30],
                    backend=InProcess(chunk=1, lifo=True))
    assert run.result() == [22, 42, 62]
    assert [u.index for u in run.units() if u.task == "inc"] == [0, 1, 2]
    assert [u.index for u in run.units() if u.task == "double"] == [0, 1, 2]


def test_run_units_lists_a_nested_fan_out_in_input_order_when_units_finish_out_of_order():
    inner = nt.ParallelTask(double, divide=lambda x: [x, x + 1])
    run, _ = submit(nt.ParallelTask(nt.ContainerTask(inc, inner)), [10, 20, 30],
                    backend=InProcess(chunk=1, lifo=True))
    assert run.result() == [[22, 24], [42, 44], [62, 64]]
    assert [u.input for u in run.units() if u.task == "double"] == [11, 12, 21, 22, 31, 32]


# -- any nesting ------------------------------------------------------------------
def _fan_out(x):
    return range(x % 4)


def _pairs(x):
    return [(x % 3, x), ("n", 1)]


def _flatten(result):
    return sum(v for v in (result.values() if isinstance(result, dict) else result))


def _values(kv):
    return kv[1]


def _mapreduce(child, partitions, combine, leaf_mapper, leaf_reducer):
    """``child``, then a map-reduce of its result's pairs, summed back to an int."""
    combiner = total if combine else None
    reducer = total if leaf_reducer else nt.ContainerTask(_values, sum)
    if leaf_mapper:  # "map" units, combined where they run; then the partitions reduce
        mr = nt.MapReduceTask(_pairs, reducer, partitions=partitions, combiner=combiner, divide=_fan_out)
        return nt.ContainerTask(child, mr, _flatten)
    mapper = nt.ContainerTask(child, _pairs)  # composed: pairs grouped and combined on the client
    mr = nt.MapReduceTask(mapper, reducer, partitions=partitions, combiner=combiner, divide=_fan_out)
    return nt.ContainerTask(mr, _flatten)


def _compositions(leaves):
    """Tasks from an int to an int, nesting every kind of composition."""
    def extend(children):
        return st.one_of(
            st.lists(children, min_size=1, max_size=3).map(lambda ts: nt.ContainerTask(*ts)),
            st.lists(children, min_size=1, max_size=3).map(
                lambda ts: nt.ContainerTask(nt.ContainerTask(*ts, concurrent=True), _flatten)),
            children.map(lambda t: nt.ParallelTask(t, divide=_fan_out, collect=_flatten)),
            st.builds(_mapreduce, children, st.integers(1, 3), st.booleans(), st.booleans(), st.booleans()),
        )
    return st.recursive(leaves, extend, max_leaves=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(task=_compositions(st.sampled_from([nt.task(inc), nt.task(double), nt.task(square)])),
       x=st.integers(0, 7), lifo=st.booleans())
def test_any_nesting_gives_the_serial_result(task, x, lifo):
    run, _ = submit(task, x, backend=InProcess(lifo=lifo))
    assert run.result() == task(x)
    counts = run.counts()
    assert (counts["queued"], counts["running"], counts["failed"], counts["cancelled"]) == (0, 0, 0, 0)
    assert counts["done"] == len(run.units())


# -- failed units --------------------------------------------------------------------
def test_a_failed_unit_fails_the_run_with_a_unit_error_naming_task_and_unit():
    backend = InProcess(chunk=2, manual=True)
    run, _ = submit(nt.ParallelTask(fragile, divide=range), 8, backend=backend)
    while not run.done():
        backend.step()
    # the chunk with unit 3 ran to its end; the four units queued behind it are dropped at once
    assert [inputs for _, inputs in backend.executed] == [[0, 1], [2, 3]]
    assert_settled(run, done=3, failed=1, cancelled=4)
    assert not backend.step()  # nothing of the run is left to do
    error = run.exception()
    assert isinstance(error, nt.UnitError)
    assert (error.task, error.index, error.input) == ("fragile", 3, 3)
    assert "'fragile'" in str(error) and "unit 3" in str(error) and "3 is bad" in str(error)
    with pytest.raises(nt.UnitError):
        run.result()
    assert run.state is nt.RunState.FAILED


def test_a_unit_error_in_a_fan_out_over_a_sequence_names_the_fan_out_unit():
    run, _ = submit(nt.ParallelTask(nt.ContainerTask(inc, fragile)), [0, 1, 2, 10])
    error = run.exception()
    assert isinstance(error, nt.UnitError)
    assert (error.task, error.index, error.input) == ("fragile", 2, 3)


def test_with_continue_the_other_units_of_a_request_finish_and_run_failed_lists_every_failure():
    backend = InProcess(chunk=2)
    run, _ = submit(nt.ParallelTask(fragile, divide=range), 8, backend=backend, on_error="continue")
    error = run.exception()
    assert isinstance(error, nt.RunFailed)
    assert [(f.task, f.index, f.input) for f in error.failures] == [("fragile", 3, 3), ("fragile", 5, 5)]
    assert sum(len(inputs) for _, inputs in backend.executed) == 8
    assert_settled(run, done=6, failed=2)


def test_with_continue_the_other_fan_out_units_finish_and_run_failed_lists_every_failure():
    run, _ = submit(nt.ParallelTask(nt.ContainerTask(fragile, inc), divide=range), 8, on_error="continue")
    error = run.exception()
    assert isinstance(error, nt.RunFailed)
    assert [(f.task, f.index) for f in error.failures] == [("fragile", 3), ("fragile", 5)]
    assert [(f.task, f.index) for f in run.failures] == [("fragile", 3), ("fragile", 5)]
    assert "2 unit(s)" in str(error)
    by_task = run.counts(by="task")
    assert (by_task["fragile"]["done"], by_task["fragile"]["failed"]) == (6, 2)
    assert by_task["inc"]["done"] == 6  # every unit that did not fail went on to the next step
    assert_settled(run, done=12, failed=2)


def test_with_continue_a_failed_branch_waits_for_the_concurrent_one():
    always = nt.task(lambda x: 1 / 0, name="always")
    run, _ = submit(nt.ContainerTask(always, nt.ContainerTask(inc, inc, inc), concurrent=True), 1,
                    on_error="continue")
    error = run.exception()
    assert isinstance(error, nt.RunFailed)
    assert [(f.task, f.index) for f in error.failures] == [("always", 0)]
    assert run.counts(by="task")["inc"]["done"] == 3
    assert_settled(run, done=3, failed=1)


def test_with_continue_and_no_failure_the_run_gives_its_result():
    task = nt.ParallelTask(nt.ContainerTask(inc, double), divide=range)
    run, _ = submit(task, 4, on_error="continue")
    assert run.result() == task(4) == [2, 4, 6, 8]


# -- client-side user code: divide, collect -------------------------------------------------
def bad_divide(x):
    raise ValueError("cannot divide")


def bad_collect(results):
    raise ValueError("cannot collect")


@pytest.mark.parametrize("inner", [
    nt.ParallelTask(double, divide=bad_divide, name="fan"),
    nt.ParallelTask(double, divide=range, collect=bad_collect, name="fan"),
    nt.ParallelTask(nt.ContainerTask(double), divide=range, collect=bad_collect, name="fan"),
    nt.MapReduceTask(words, total, divide=bad_divide, name="fan"),
], ids=["divide", "collect", "collect-composed", "mapreduce-divide"])
def test_a_divide_or_collect_that_raises_fails_the_run_with_a_note_naming_its_task(inner):
    after = nt.task(inc, name="after")
    run, backend = submit(nt.ContainerTask(inc, inner, after), 3)
    error = run.exception()
    assert type(error) is ValueError and str(error) in ("cannot divide", "cannot collect")
    assert any("'fan'" in note for note in error.__notes__)
    with pytest.raises(ValueError):
        run.result()
    assert "after" not in [name for name, _ in backend.executed]
    assert run.settled


def test_a_top_level_divide_that_raises_refuses_the_submit():
    backend = InProcess()
    with pytest.raises(ValueError, match="cannot divide") as caught:
        submit(nt.ParallelTask(double, divide=bad_divide, name="fan"), 3, backend=backend)
    assert any("'fan'" in note for note in caught.value.__notes__)
    assert backend.started == [] and backend.executed == []


# -- cancel --------------------------------------------------------------------------
def test_cancel_before_queued_units_run_leaves_the_run_cancelled_and_settled():
    backend = InProcess(manual=True)
    run, _ = submit(nt.ParallelTask(double, divide=range), 6, backend=backend)
    backend.step()  # the run starts: its six units wait in the queue
    assert run.running() and run.counts()["queued"] == 6
    assert run.cancel("enough")
    backend.drain()
    assert run.cancelled() and run.state is nt.RunState.CANCELLED and run.cancel_reason == "enough"
    assert backend.executed == []
    assert_settled(run, done=0, cancelled=6)
    with pytest.raises(cf.CancelledError):
        run.result()


def test_cancel_before_the_backend_starts_the_run_cancels_the_units_counted_at_submit():
    backend = InProcess(manual=True)
    run, _ = submit(nt.ParallelTask(double, divide=range), 6, backend=backend)
    assert run.counts()["queued"] == 6  # divided and counted at submit
    run.cancel()
    backend.drain()
    assert run.cancelled() and backend.executed == []
    assert_settled(run, done=0, cancelled=6)


def test_cancel_between_steps_keeps_what_finished_and_runs_nothing_more():
    backend = InProcess(manual=True)
    run, _ = submit(nt.ContainerTask(nt.task(inc, name="first"), nt.task(double, name="second")), 1,
                    backend=backend)
    backend.step()  # start: "first" is queued
    backend.step()  # "first" runs; "second" is queued
    assert run.counts(by="task")["second"]["queued"] == 1
    run.cancel()
    backend.drain()
    assert run.cancelled() and backend.executed == [("first", [1])]
    assert_settled(run, done=1, cancelled=1)


# -- parameters ------------------------------------------------------------------------
def scale(x, k: int = 1):
    return x * k


def total_plus(key, values, offset=0):
    return sum(values) + offset


def test_parameters_reach_the_leaves_that_declare_them():
    task = nt.ParallelTask(nt.ContainerTask(scale, inc), divide=range)  # inc takes no k
    run, _ = submit(task, 4, {"k": 3})
    assert run.result() == task(4, k=3) == [1, 4, 7, 10]


@pytest.mark.parametrize("mapper", [words, nt.ContainerTask(str.strip, lambda s: [(w, 1) for w in s.split()])],
                         ids=["leaf-mapper", "composed-mapper"])
def test_parameters_reach_a_mapreduce_combiner_and_reducer(mapper):
    task = nt.MapReduceTask(mapper, total_plus, partitions=3, combiner=total_plus)
    run, _ = submit(task, LINES, {"offset": 10})
    assert run.result() == task(LINES, offset=10) != task(LINES)


@pytest.mark.parametrize("params, why", [({"kk": 3}, "unexpected keyword argument 'kk'"),
                                        ({"k": "3"}, "parameter 'k' expected int")], ids=["unknown", "wrong-type"])
def test_bad_parameters_are_refused_before_anything_is_enqueued(params, why):
    backend = InProcess()
    with pytest.raises(TypeError, match=why):
        submit(nt.ParallelTask(nt.ContainerTask(scale, inc), divide=range), 4, params, backend=backend)
    assert backend.started == [] and backend.executed == []
