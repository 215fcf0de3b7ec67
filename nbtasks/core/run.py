"""``Run``: one submitted task, a ``concurrent.futures.Future`` with progress.

A run has two public sides besides the user's:

- **for observers** (the widget, the text bar, the store): ``snapshot()``,
  ``chunks_since(n)`` (finished chunk records after the first ``n``),
  ``wait_for_change(timeout)``, ``error``, ``failures``, ``counts()``;
- **for the backend that runs it** (the evaluation and the dispatcher, on one
  thread): the ``report_*`` methods, ``divide_now()``, ``take_root_units()``
  and ``release_prequeued()``. Unit counts move on ``node.units`` (see
  ``states.UnitCounts``).

Any thread may read, wait, iterate ``as_completed()`` or ``cancel()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import threading
import time
import uuid
from typing import Any, Callable, Iterator, Mapping, Protocol

from .errors import UnitError
from .explain import Explanation, Tally
from .hooks import hooks
from .nodes import Node, build_tree
from .records import ChunkRecord, UnitRecord
from .serialize import dumps
from .states import COUNTS, RunState, UnitState, check_transition
from .task import NOTHING, Task

__all__ = ["Run", "Backend", "Recorder", "start_run"]

log = logging.getLogger("nbtasks")

ON_ERROR = ("raise", "continue")
SETTLE_WAIT = 1.0  # seconds result()/wait() give the units interrupted at a run's end to be counted


class Backend(Protocol):
    """What a run needs from whatever executes it (``nbtasks.cluster.Cluster``)."""

    def start_run(self, run: "Run") -> None: ...
    def cancel_run(self, run: "Run", reason: str) -> None: ...

    def shared_digests(self) -> dict[str, bytes]:
        """A digest of each value shared with the engines (``nt.shared``): unit results
        may depend on them, so they enter unit keys."""


class Recorder(Protocol):
    """Where a run is recorded and finished units are looked up (``nbtasks.store``'s
    ``Store``). The path of ``cache``: ``submit(cache=)`` and ``task.cache`` →
    ``Evaluation.request``: each request is looked up; with ``cache`` on, the units
    found are taken instead of run."""

    def lookup(self, request: Any, reuse: bool) -> tuple[list, dict[str, int]]:
        """Key ``request`` (sets ``request.key`` and ``request.leaf``); with ``reuse``, the
        stretches of its units an earlier run finished (``start, stop, offset, engine, blob,
        outcome``, ``start``/``stop`` in this request, none overlapping) and, for the units
        it did not find, why not (``explain.Reasons``: count)."""

    def record(self, run: "Run", chunk: ChunkRecord, payload: bytes | None = None,
               blob: int | None = None) -> None: ...

    def track(self, run: "Run") -> None: ...


class Run(cf.Future):
    """A task on its way: result, errors, counts, per-unit records, cancel."""


    def __init__(self, task: Task, input: Any, params: Mapping[str, Any], on_error: str = "raise",
                 progress: bool | None = None, store: Any = None, cache: bool = True) -> None:
        super().__init__()
        self.id = uuid.uuid4().hex[:12]
        self.task = task
        self.input = input
        self.params = dict(params)
        self.on_error = on_error
        self.progress = progress
        self.tree: Node = build_tree(task)
        self.nodes: list[Node] = list(self.tree.walk())
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self._failures: list[UnitError] = []
        #: node id -> (unit index, fraction, message): the latest ``nt.progress`` report
        self.unit_progress: dict[int, tuple[int, float, str]] = {}
        self.cancel_reason: str | None = None
        self.backend: Backend | None = None
        self.status_note = "waiting for the cluster"  # "why is this not running?"
        self._run_state = RunState.PENDING
        self._chunks: list[ChunkRecord] = []
        self._root_units: list | None = None  # the top fan-out's units, divided at submit
        self._prequeued: tuple[Node, int] | None = None  # and counted queued then
        self._progress_cond = threading.Condition()
        #: where finished units are recorded and looked up, if anywhere
        self.store: Recorder | None = store
        self.cache = cache  # False: run every unit even if the store has it
        self.reused = 0  # units taken from the store instead of running
        self.why = Tally()  # per task: units reused, and why the others ran (``explain``)
        self._error: BaseException | None = None  # what report_error was given; read while FAILED
        #: called once when the run ends, before result()/wait() return (see ``on_end``)
        self._end_observers: list[Callable[["Run"], None]] = []

    # -- state ---------------------------------------------------------------
    @property
    def state(self) -> RunState:
        return self._run_state

    def _move(self, new: RunState) -> bool:
        """Move to ``new`` (False if already there or finished). Callers wake waiters
        (``_notify_progress``) once they hold no lock: waiters take the progress lock first,
        then the future's."""
        with self._condition:
            if self._run_state is new or self._run_state.finished:
                return False
            check_transition(self._run_state, new)
            self._run_state = new
            if new is RunState.RUNNING:
                self.started = time.time()
                self.status_note = ""
            elif new.finished:
                self.finished = time.time()
        return True

    # -- for the backend: what happened ----------------------------------------
    def report_running(self) -> None:
        """Units are being dispatched."""
        if self._move(RunState.RUNNING):
            self._notify_progress()

    def report_result(self, result: Any) -> None:
        """The run finished with ``result`` (ignored once it is over)."""
        if self._move(RunState.DONE):
            self._tell_end()
            self.set_result(result)
            self._notify_progress()  # waiters see done() now

    def report_error(self, exc: BaseException) -> None:
        """The run failed with ``exc`` (ignored once it is over)."""
        with self._condition:
            if not self._move(RunState.FAILED):
                return
            self._error = exc
        self._tell_end()
        self.set_exception(exc)
        self._notify_progress()

    def report_chunk(self, chunk: ChunkRecord, payload: bytes | None = None, blob: int | None = None) -> None:
        """A finished part of a chunk (``payload``: the chunk's pickled outcome, for the
        store; ``blob``: the stored outcome it was taken from)."""
        with self._progress_cond:
            self._chunks.append(chunk)
        if chunk.unit_errors:
            self._failures.extend(chunk.unit_errors.values())
        if self.store is not None:
            self.store.record(self, chunk, payload, blob)
        self._notify_progress()

    def report_unit_failure(self, error: UnitError) -> None:
        """A unit failed without a chunk record (its engine died too often)."""
        self._failures.append(error)

    def report_unit_progress(self, node: Node, index: int, fraction: float, message: str) -> None:
        """What a running unit said with ``nt.progress``."""
        self.unit_progress[node.id] = (index, fraction, message)

    def divide_now(self) -> None:
        """Divide a top fan-out at submit, so a bad ``divide`` raises there; its units
        count as queued from then on (a leaf's; a composite's once dispatched)."""
        if not hasattr(self.task, "units"):
            return
        self._root_units = self.task.units(self.input)
        leaf = self.tree.children[0]
        if leaf.task.is_leaf:
            leaf.units.queue(len(self._root_units))
            self._prequeued = (leaf, len(self._root_units))

    def take_root_units(self) -> list | None:
        """The units ``divide_now`` made, once (None if there are none)."""
        units, self._root_units = self._root_units, None
        return units

    def release_prequeued(self, cancelled: bool = False) -> None:
        """Stop counting the units counted queued at submit: they are dispatched (and
        counted again) or, with ``cancelled``, count as cancelled."""
        if self._prequeued is not None:
            node, n = self._prequeued
            self._prequeued = None
            if cancelled:
                node.units.cancel(n)
            else:
                node.units.withdraw(n)

    # -- for observers -----------------------------------------------------------
    def on_end(self, observer: Callable[["Run"], None]) -> None:
        """Call ``observer(run)`` when the run ends (done, failed, cancelled), on the thread
        that ends it, after ``state`` moved and before ``result()``/``wait()`` return to
        anyone: a view drawn there is final when the user's code goes on. ``done()`` is
        still False then; read ``state`` and ``error``. Called once more by the first
        ``result()``/``exception()``/``wait()`` to return, once the units interrupted at the
        end are counted (``settled``, or ``SETTLE_WAIT`` passed). Errors are logged, never
        raised. Not called if the run had already ended: read the run instead."""
        with self._condition:
            if not self._run_state.finished:
                self._end_observers.append(observer)

    def _tell_end(self, last: bool = False) -> None:
        with self._condition:
            observers = list(self._end_observers)
            if last:
                self._end_observers = []
        for observer in observers:
            try:
                observer(self)
            except Exception:  # a broken view must not keep the run from ending
                log.exception("nbtasks: an observer of run %s's end failed", self.id)

    def chunks_since(self, seen: int) -> list[ChunkRecord]:
        """Chunk records that finished after the first ``seen`` (completion order)."""
        with self._progress_cond:
            return self._chunks[seen:]

    def wait_for_change(self, timeout: float | None = None) -> bool:
        """Block until the run's state moves or a chunk finishes (or ``timeout``);
        True if the run is finished."""
        with self._progress_cond:
            if not self.done():
                self._progress_cond.wait(timeout)
        return self.done()

    def _settle(self) -> None:
        """An ended run's running units are counted a moment after its end, when their
        engines answer the interrupt: give them up to ``SETTLE_WAIT``, then let observers
        draw the counts, so that they are final when result()/wait() return."""
        if not self.done() or not self._end_observers:
            return
        deadline = time.monotonic() + SETTLE_WAIT
        while not self.settled and (left := deadline - time.monotonic()) > 0:
            self.wait_for_change(min(left, 0.02))  # counts move without a wake-up: look again
        self._tell_end(last=True)

    def failures_since(self, seen: int) -> list[UnitError]:
        """Failed units after the first ``seen``, in the order they failed."""
        return self._failures[seen:]

    @property
    def error(self) -> BaseException | None:
        """The exception the run finished with; None while it runs, or if it did not fail."""
        return self._error if self._run_state is RunState.FAILED else None

    def _notify_progress(self) -> None:
        with self._progress_cond:
            self._progress_cond.notify_all()

    # -- Future --------------------------------------------------------------
    def running(self) -> bool:
        return self._run_state is RunState.RUNNING

    def cancel(self, reason: str = "cancelled by the user") -> bool:
        """Drop queued units, interrupt running ones; idempotent; False once finished."""
        with self._condition:
            if self._run_state is RunState.CANCELLED:
                return True
            if self._run_state.finished:
                return False
            self.cancel_reason = reason
            self._move(RunState.CANCELLED)
        self._tell_end()
        super().cancel()
        self._notify_progress()
        if self.backend is not None:
            self.backend.cancel_run(self, reason)
        return True

    def result(self, timeout: float | None = None) -> Any:
        self._wait_with_progress(timeout)
        try:
            return super().result(timeout)
        finally:
            self._settle()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait_with_progress(timeout)
        try:
            return super().exception(timeout)
        finally:
            self._settle()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until finished (or ``timeout``); True when finished."""
        self._wait_with_progress(timeout)
        try:
            super().exception(timeout)
        except (cf.TimeoutError, cf.CancelledError):
            pass
        self._settle()
        return self.done()

    def _wait_with_progress(self, timeout: float | None) -> None:
        if hooks.wait is not None and not self.done():
            hooks.wait(self, timeout)

    def __await__(self):
        return asyncio.wrap_future(self).__await__()

    # -- progress ------------------------------------------------------------
    def counts(self, by: str | None = None) -> dict:
        """Units per state: ``{"queued": .., "running": .., "done": .., "failed": ..}``.

        ``by="tag"`` or ``by="task"`` gives one such dict per tag / task name.
        """
        if by is None:
            return self.tree.counts()
        if by not in ("tag", "task"):
            raise ValueError(f"counts(by=...) takes 'tag' or 'task', not {by!r}")
        out: dict[str, dict[str, int]] = {}
        for node in self.nodes:
            if not node.task.is_leaf:
                continue
            key = node.task.tag if by == "tag" else node.name
            row = out.setdefault(key, dict.fromkeys(COUNTS, 0))
            for name in COUNTS:
                row[name] += getattr(node.units, name)
        return out

    @property
    def failures(self) -> list[UnitError]:
        """Every failed unit so far, by task and unit index."""
        return sorted(self._failures, key=lambda f: (f.task, f.index))

    @property
    def settled(self) -> bool:
        """Finished, and no unit is still counted queued or running (after a cancel,
        interrupted units come back a moment later)."""
        if not self.done():
            return False
        c = self.tree.counts()
        return c["queued"] == 0 and c["running"] == 0

    @property
    def elapsed(self) -> float:
        start = self.started or self.created
        return (self.finished or time.time()) - start

    def explain(self) -> Explanation:
        """Per task: how many units came from the store, and why the others ran (so far)."""
        return self.why.explanation()

    def snapshot(self) -> dict:
        """A plain, read-only picture of the run for renderers."""
        return {"id": self.id, "name": self.task.name, "state": self._run_state.value,
                "note": self.status_note, "elapsed": self.elapsed, "counts": self.counts(),
                "tree": self.tree.snapshot(), "failures": len(self.failures), "reused": self.reused}

    def units(self, state: UnitState | str | None = None) -> list[UnitRecord]:
        """Records of finished units (state, engine, host, times, output, error), in input order."""
        wanted = None if state is None else UnitState(state)
        with self._progress_cond:
            chunks = sorted(self._chunks, key=_in_input_order)
        return [u for c in chunks for u in c.units() if wanted is None or u.state is wanted]

    def as_completed(self, timeout: float | None = None) -> Iterator[UnitRecord]:
        """Unit records as units finish; ends when the run is finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = 0
        while True:
            with self._progress_cond:
                while seen == len(self._chunks) and not self.done():
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise cf.TimeoutError(f"run {self.task.name!r} not finished within {timeout}s")
                    self._progress_cond.wait(0.5 if left is None else min(left, 0.5))
                fresh = self._chunks[seen:]
                seen = len(self._chunks)
            for chunk in fresh:
                yield from chunk.units()
            if not fresh and self.done():
                return

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        """In a notebook a run shows as a live progress widget (see nbtasks.ui)."""
        if hooks.display is None:
            return {"text/plain": repr(self)}
        return hooks.display(self, include, exclude)

    def __repr__(self) -> str:
        c = self.counts()
        return (f"<Run {self.task.name!r} {self._run_state.value}: {c['done']} done, {c['failed']} failed, "
                f"{c['running']} running, {c['queued']} queued>")


def _in_input_order(chunk: ChunkRecord) -> tuple:
    request = chunk.request
    return (request.node.id, -1 if request.within is None else request.within, request.seq, chunk.start)


def start_run(task: Task, input: Any, params: Mapping[str, Any], cluster: Any = None,
              on_error: str = "raise", progress: bool | None = None, store: Any = None,
              cache: bool = True) -> Run:
    """Validate everything knowable now, then hand the run to its backend.

    ``store`` is where the run is recorded: a path, ``":memory:"``, False for
    nowhere, or None for the cluster's store (``Cluster(store=...)``) or the
    default one.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if not isinstance(cache, bool):
        raise TypeError(f"cache must be True or False, got {cache!r}")
    bound = task.bind(params)
    for t in task.walk():
        if t.is_leaf:
            dumps(t, f"task {t.name!r}")
    dumps(bound, f"parameters of {task.name!r}")
    if task.is_leaf and input is not NOTHING:
        dumps(input, f"the input of task {task.name!r} (unit 0)")
    backend = cluster
    if backend is None:
        if hooks.default_backend is None:
            raise RuntimeError("no default cluster: import nbtasks (not only nbtasks.core)")
        backend = hooks.default_backend()
    if store is None:
        store = getattr(backend, "store", None)
    recorder = hooks.store(store) if hooks.store is not None and store is not False else None
    run = Run(task, input, bound, on_error, progress, recorder, cache)
    run.divide_now()
    run.backend = backend
    if recorder is not None:
        recorder.track(run)
    backend.start_run(run)
    return run
