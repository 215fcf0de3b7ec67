"""Past runs read back from the store as ``Run``s: ``nt.runs(...)``, in any later kernel.

    nt.runs(filters) ── runs row (+ failures) ──> StoredRun (a Run, settled as recorded)
        result()        ── runs.result_blob ──────────> results.read_blob
        units()         ── parts, failures (reader's rows) ──> UnitRecord (results from chunk outcomes if asked)
        widget          ── snapshot(), chunks_since() ──> ui.RunView, as for a live run

A run that ended is settled when loaded (done, failed, cancelled; "lost" when its
kernel stopped reporting before it ended: it fails with ``RunLost``). Its result is
unpickled only when ``result()`` asks. A run still going in another kernel is
followed: ``done()``, ``result()``, ``wait()`` and its widget re-read its row (at most
every ``POLL`` seconds) until it ends or is lost; ``cancel()`` asks that kernel
through the store, as the Tasks sidebar does.
"""

from __future__ import annotations

import concurrent.futures as cf
import enum
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

from ..core.explain import Explanation
from ..core.errors import NbtasksError, RemoteTraceback, RunFailed, UnitError
from ..core.nodes import Node
from ..core.records import UnitRecord
from ..core.run import Run
from ..core.states import COUNTS, RunState, UnitCounts, UnitState
from .location import MEMORY
from .recorder import Store
from .reader import (RUN_COLUMNS, RUN_STATES, STALE_AFTER, StoreReader, done_unit_rows, failure_record,
                     newer_columns, run_filter, run_summary)
from .results import ResultNotKept, UnpicklableResult, read_blob

__all__ = ["runs", "History", "StoredRun", "RunLost", "RecordedError", "ResultNotKept", "LOST"]

POLL = 0.5          # seconds between two reads of a run that is still going in another kernel
DEFAULT_LIMIT = 20  # runs ``nt.runs()`` gives when not told


class Lost(str, enum.Enum):
    """The state of a run whose kernel stopped reporting before it ended (``RunState``
    has no such state: a live run never is in it, only a stored one)."""

    LOST = "lost"

    @property
    def finished(self) -> bool:
        return True  # nothing more will come of it


LOST = Lost.LOST


class RunLost(NbtasksError):
    """A stored run's kernel died (or restarted) before the run ended."""


class RecordedError(NbtasksError):
    """A stored run failed; the store keeps the error's text, not the exception."""


class StoredTask:
    """What the store knows of a task of a run's tree: its name, tag and kind (not its code)."""

    __slots__ = ("name", "tag", "kind")

    def __init__(self, name: str, tag: str, kind: str) -> None:
        self.name, self.tag, self.kind = name, tag, kind

    @property
    def is_leaf(self) -> bool:
        return self.kind == "leaf"

    def __repr__(self) -> str:
        return f"<StoredTask {self.kind} {self.name!r}>"


class Shown:
    """A value as the store recorded it: its repr, shortened (a failed unit's input)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Record:
    """One ``runs`` row as the store has it now, with the run's failed units."""

    summary: dict[str, Any]   # as the server shows it (``reader.run_summary``): state "lost" included
    tree: dict[str, Any]
    params: dict[str, str]
    result_blob: int | None
    explain: str | None
    failures: list[dict[str, Any]]
    stored: int               # of a lost run: done units whose records (and results) are in the store


class History(StoreReader):
    """Reads runs, their units and results from one store file, for ``StoredRun``s."""

    def _columns(self, conn: sqlite3.Connection) -> str:
        """What ``_record`` reads; a store of schema 1 read as it is (never upgraded by a
        reader) has no ``result_blob`` or ``explain``: NULL."""
        return ", ".join([RUN_COLUMNS, "tree, params", *newer_columns(conn, "runs", "result_blob", "explain")])

    def find(self, name: str | None = None, tag: str | None = None, state: str | None = None,
             notebook: str | None = None, limit: int | None = DEFAULT_LIMIT) -> list["StoredRun"]:
        """Runs matching every filter given, newest first."""
        conn = self._connect()
        if conn is None:
            return []
        where, args = run_filter(state, self.stale_after)
        if name is not None:
            where.append("name = ?")
            args.append(name)
        if tag is not None:  # any node of its tree; every node has a tag (its name by default)
            where.append("EXISTS (SELECT 1 FROM json_tree(runs.tree) AS t WHERE t.key = 'tag' AND t.atom = ?)")
            args.append(tag)
        if notebook is not None:  # the name Jupyter gave, or its path; "a.ipynb" matches ".../a.ipynb"
            where.append("(notebook = ? OR substr(notebook, -length(?) - 1) = '/' || ?)")
            args += [notebook] * 3
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        try:
            rows = conn.execute(f"SELECT {self._columns(conn)} FROM runs{clause} ORDER BY submitted DESC LIMIT ?",
                                [*args, -1 if limit is None else limit]).fetchall()
            return [StoredRun(self, self._record(conn, row)) for row in rows]
        finally:
            conn.close()

    def record(self, run_id: str) -> Record | None:
        """The run's row as it is now; None if the store has no such run."""
        conn = self._connect()
        if conn is None:
            return None
        try:
            row = conn.execute(f"SELECT {self._columns(conn)} FROM runs WHERE id = ?", (run_id,)).fetchone()
            return None if row is None else self._record(conn, row)
        finally:
            conn.close()

    def load(self, run_id: str) -> "StoredRun | None":
        """One run by its id; None if the store has no such run."""
        record = self.record(run_id)
        return None if record is None else StoredRun(self, record)

    def _record(self, conn: sqlite3.Connection, row: tuple) -> Record:
        n = len(RUN_COLUMNS.split(","))
        summary = run_summary(row[:n], self.stale_after)
        tree, params, result_blob, explain = row[n:]
        failures = [failure_record(r) for r in conn.execute(
            "SELECT task, node, unit, input, error, traceback, engine, host, pid, time "
            "FROM failures WHERE run = ? ORDER BY id", (summary["id"],))]
        stored = 0
        if summary["state"] == LOST.value:  # what its kernel finished before it died
            stored = conn.execute("SELECT coalesce(sum(done), 0) FROM parts WHERE run = ?",
                                  (summary["id"],)).fetchone()[0]
        return Record(summary, json.loads(tree), json.loads(params), result_blob, explain, failures, stored)

    def blob(self, blob: int, what: str) -> Any:
        """A stored result, unpickled (raises ``ResultNotKept`` saying why it is not there)."""
        conn = self._connect()
        if conn is None:
            raise ResultNotKept(f"{what} is not there: the run store {self.path} is gone")
        try:
            return read_blob(conn, self.path, blob, what)
        finally:
            conn.close()

    def done_units(self, run_id: str, results: bool) -> Iterator[tuple[dict[str, Any], Any]]:
        """The run's done units (as ``StoreReader.units`` shows them), each with its result
        when ``results`` (one chunk outcome unpickled at a time)."""
        conn = self._connect()
        if conn is None:
            return
        try:
            loaded: tuple[int, Any] | None = None
            for unit, blob, at in list(done_unit_rows(conn, run_id)):
                value = None
                if results:
                    if loaded is None or loaded[0] != blob:
                        what = f"the result of unit {unit['unit']} of task {unit['task']!r} (run {run_id})"
                        loaded = (blob, read_blob(conn, self.path, blob, what))
                    value = loaded[1].values[at]
                yield unit, value
        finally:
            conn.close()

    def printed(self, run_id: str) -> list["Printed"]:
        """What the run's units printed, per stored part, in the order parts were written."""
        conn = self._connect()
        if conn is None:
            return []
        try:
            return [Printed(out, err) for out, err in conn.execute(
                "SELECT stdout, stderr FROM parts WHERE run = ? AND (stdout != '' OR stderr != '') ORDER BY id",
                (run_id,))]
        finally:
            conn.close()


class Printed:
    """A stored part's output, shaped as a chunk record is for renderers (``chunks_since``)."""

    __slots__ = ("stdout", "stderr")
    offset = 0  # each stored part's text is its own

    def __init__(self, stdout: str, stderr: str) -> None:
        self.stdout, self.stderr = stdout, stderr

    @property
    def outcome(self) -> "Printed":
        return self


class StoredRun(Run):
    """A run loaded from the store: every read of a ``Run`` gives what was recorded.

    ``task`` describes the task (``StoredTask``: name, tag, kind) and ``input`` is
    None: the store keeps neither. ``state`` is a ``RunState``, or ``LOST``.
    ``units(results=True)`` reads each unit's result from its stored chunk outcome.
    """

    def __init__(self, history: History, record: Record) -> None:
        cf.Future.__init__(self)  # not Run's: there is no task to build a tree from
        self.history = history
        self.input = None
        self.on_error = None
        self.progress = False
        self.unit_progress: dict = {}
        self.backend = None
        self.store = None
        self.cache = True
        self._root_units = None
        self._prequeued = None
        self._chunks: list = []  # a live run's chunk records: a stored run has none (see chunks_since)
        self._error: BaseException | None = None
        self._end_observers: list = []
        self._progress_cond = threading.Condition()
        self._adopt_lock = threading.Lock()
        self._value: Any = _UNREAD
        self._polled = time.monotonic()
        self._run_state: RunState | Lost = RunState.PENDING
        self._adopt(record)

    # -- from the store ------------------------------------------------------------
    def _adopt(self, record: Record) -> None:
        """Take the run as ``record`` shows it; settle the future once it ended."""
        s = record.summary
        with self._adopt_lock:
            if self._run_state.finished:
                return
            self.id = s["id"]
            self.notebook, self.host, self.kernel_pid = s["notebook"], s["host"], s["kernel_pid"]
            ended = s["state"] in (RunState.DONE.value, RunState.FAILED.value, RunState.CANCELLED.value)
            self.tree = _node(record.tree, None, ended)
            self.nodes = list(self.tree.walk())
            self.task = self.tree.task
            self.params = record.params
            self.created, self.started = s["submitted"], s["started"]
            lost = s["state"] == LOST.value
            self.finished = s["ended"] or (s["updated"] if lost else None)
            self.status_note = s["note"]
            self.reused = s["reused"]
            self.cancel_reason = s["error"] if s["state"] == RunState.CANCELLED.value else None
            self._failures = [_unit_error(f) for f in record.failures]
            self._explain = record.explain
            self._result_blob = record.result_blob
            self._printed: list[Printed] | None = None  # read when a view asks (chunks_since)
            state = self._run_state = LOST if lost else RunState(s["state"])
            if state is RunState.FAILED or lost:
                self._error = _lost(self, record) if lost else _run_error(self, s)
        self._notify_progress()
        if not state.finished:
            return
        if state is RunState.DONE:
            self.set_result(None)  # the value is read when asked (result())
        elif state is RunState.CANCELLED:
            cf.Future.cancel(self)
        else:
            self.set_exception(self._error)
        self._notify_progress()

    def _poll(self) -> None:
        """Read the row again (at most every ``POLL`` s) while the run goes on elsewhere."""
        now = time.monotonic()
        if self._run_state.finished or now - self._polled < POLL:
            return
        self._polled = now
        record = self.history.record(self.id)
        if record is not None:
            self._adopt(record)

    def _follow(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise cf.TimeoutError(f"run {self.id} of {self.task.name!r} (going on in another kernel) "
                                      f"not finished within {timeout}s")
            time.sleep(POLL if left is None else min(POLL, left))
        # views of it draw its end before result() or wait() return, as for a live run; not
        # from _adopt: that may run inside a view's own drawing (its ticker reads ``state``)
        self._tell_end(last=True)  # once: later result() calls need not draw again

    # -- Future ---------------------------------------------------------------------
    @property
    def state(self) -> "RunState | Lost":
        self._poll()
        return self._run_state

    def done(self) -> bool:
        if not cf.Future.done(self):
            self._poll()
        return cf.Future.done(self)

    def result(self, timeout: float | None = None) -> Any:
        self._follow(timeout)
        if self._run_state is RunState.DONE:
            return self._stored_result()
        return cf.Future.result(self, 0)  # raises its error, or CancelledError

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._follow(timeout)
        return cf.Future.exception(self, 0)

    def wait(self, timeout: float | None = None) -> bool:
        try:
            self._follow(timeout)
        except cf.TimeoutError:
            pass
        return self.done()

    def wait_for_change(self, timeout: float | None = None) -> bool:
        if not self.done():
            time.sleep(POLL if timeout is None else min(POLL, timeout))
        return self.done()

    def cancel(self, reason: str = "cancelled by the user") -> bool:
        """False for a run that ended (True if it was cancelled); for a run going on in
        another kernel, ask that kernel through the store (it cancels within about a
        second, and this run follows): True once asked."""
        if self.cancelled():
            return True
        if self.done():
            return False
        asked = self.history.request_cancel(self.id, reason)
        return bool(asked and asked["cancel_requested"])

    @property
    def error(self) -> BaseException | None:
        return self._error if self.done() else None

    @property
    def settled(self) -> bool:
        return self.done()  # nothing more comes of a stored run that ended

    # -- what was recorded ------------------------------------------------------------
    def chunks_since(self, seen: int) -> list["Printed"]:
        """What its units printed, per stored part (renderers read ``outcome.stdout``/``stderr``)."""
        if self._printed is None or not self.done():
            self._printed = self.history.printed(self.id)
        return self._printed[seen:]

    def _stored_result(self) -> Any:
        if self._value is not _UNREAD:
            return self._value
        what = f"the result of run {self.id} ({self.task.name!r})"
        if self._result_blob is None:
            raise ResultNotKept(f"{what} is not in the store (it ended before nbtasks kept runs' results); "
                                "the results of its units are: run.units(results=True)")
        value = self.history.blob(self._result_blob, what)
        if isinstance(value, UnpicklableResult):
            raise ResultNotKept(f"{what} was not kept: it could not be pickled ({value.why})")
        self._value = value
        return value

    def units(self, state: UnitState | str | None = None, results: bool = False) -> list[UnitRecord]:
        """Records of the finished units as they were (done ones' ``input`` is None: the store
        keeps only a digest), in input order; ``results=True`` reads each done unit's result."""
        wanted = None if state is None else UnitState(state)
        order: list[tuple[int, int, UnitRecord]] = []
        tags = {n.id: n.task.tag for n in self.nodes}
        if wanted in (None, UnitState.FAILED):
            for f in self._failures:
                order.append((f.node_id if f.node_id is not None else -1, f.index, UnitRecord(
                    task=f.task, tag=tags.get(f.node_id, f.task), index=f.index, input=f.input,
                    state=UnitState.FAILED, engine=f.engine, host=f.host, pid=f.pid, end=f.time, error=f)))
        if wanted in (None, UnitState.DONE):
            for u, value in self.history.done_units(self.id, results):
                order.append((u["node"], u["unit"], UnitRecord(
                    task=u["task"], tag=tags.get(u["node"], u["task"]), index=u["unit"], input=None,
                    state=UnitState.DONE, result=value, engine=u["engine"], host=u["host"], pid=u["pid"],
                    start=u["start"], end=u["end"], stdout=u["stdout"], stderr=u["stderr"])))
        order.sort(key=lambda item: item[:2])
        return [record for _, _, record in order]

    def as_completed(self, timeout: float | None = None) -> Iterator[UnitRecord]:
        """The finished units with their results, in the order they finished (once the run
        ended, for one going on in another kernel)."""
        self._follow(timeout)
        yield from sorted(self.units(results=True), key=lambda u: u.end or 0.0)

    def explain(self) -> Explanation:
        """Per task: how many units came from the store and why the others ran, as recorded
        (empty for a run an older nbtasks recorded, as for a live run that has not begun)."""
        return Explanation.from_record(json.loads(self._explain) if self._explain else None)


_UNREAD = object()


def _node(snapshot: dict[str, Any], parent: Node | None, ended: bool) -> Node:
    """A node of a stored tree, its own counts (the stored ones include its children's) set
    through ``UnitCounts``' named moves. Units of a run that ``ended`` still counted queued
    or running never finished (its kernel stopped before they came back): cancelled."""
    name = snapshot["name"]
    node = Node(snapshot["id"], StoredTask(name, snapshot.get("tag") or name, snapshot.get("kind", "leaf")),
                parent)
    children = snapshot.get("children", ())
    node.children = [_node(child, node, ended) for child in children]
    own = {k: max(0, snapshot["counts"].get(k, 0) - sum(c["counts"].get(k, 0) for c in children)) for k in COUNTS}
    if ended:
        own["cancelled"] += own["queued"] + own["running"]
        own["queued"] = own["running"] = 0
    _set_counts(node.units, own)
    return node


def _set_counts(units: UnitCounts, counts: dict[str, int]) -> None:
    units.queue(sum(counts[s.value] for s in UnitState))
    units.retry(counts["retried"], UnitState.QUEUED)
    units.start(counts["running"])
    units.finish(counts["done"], UnitState.QUEUED)
    units.fail(counts["failed"], UnitState.QUEUED)
    units.cancel(counts["cancelled"], UnitState.QUEUED)


def _unit_error(f: dict[str, Any]) -> UnitError:
    err = UnitError(f["task"], f["unit"], Shown(f["input"]), f["error"], f["traceback"], f["engine"], f["host"],
                    f["pid"])
    err.node_id = f["node"]
    err.time = f["end"]
    if f["traceback"]:
        err.__cause__ = RemoteTraceback(f["traceback"])
    return err


def _run_error(run: StoredRun, s: dict[str, Any]) -> BaseException:
    """The failed run's exception, rebuilt from its text and its failed units where it was one of ours."""
    text = s["error"] or "no error was recorded"
    kind, _, message = text.partition(": ")
    failures = run.failures
    if kind == "UnitError" and failures:
        return next((f for f in failures if str(f) == message), failures[0])
    if kind == "RunFailed" and failures:
        return RunFailed(run.task.name, failures, s["total"])
    return RecordedError(f"run {run.id} of {run.task.name!r} failed: {text}")


def _lost(run: StoredRun, record: Record) -> RunLost:
    return RunLost(f"run {run.id} of {run.task.name!r} was lost: its kernel stopped reporting before it ended "
                   f"(restarted or gone); {record.stored} of {record.summary['total']} units had finished and "
                   "are in the store "
                   "(run.units(results=True)), and submitting the same task on the same input again "
                   "reuses them and runs only the rest")


def _check_text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"nt.runs({what}=...) takes a non-empty str, not {value!r}")
    return value


def runs(name: str | None = None, tag: str | None = None, state: "RunState | str | None" = None,
         notebook: "str | os.PathLike[str] | None" = None, store: "str | os.PathLike[str] | None" = None,
         limit: int | None = DEFAULT_LIMIT) -> list[StoredRun]:
    """Past runs from the store, newest first, each a ``Run`` as it was recorded.

    Filters: the task's ``name``; a ``tag`` of any task in the run's tree; ``state``
    (a ``RunState``, or "lost": still going when its kernel died); the ``notebook`` (or
    script) that ran it, by name or path; ``store``: the store file (the default one, as
    ``submit`` uses, if None); ``limit``: at most that many runs (None: all).
    """
    name = _check_text(name, "name")
    tag = _check_text(tag, "tag")
    if isinstance(state, enum.Enum):
        state = state.value
    if state is not None and state not in RUN_STATES:
        raise ValueError(f"nt.runs(state=...) takes one of {', '.join(map(repr, RUN_STATES))}, not {state!r}")
    if notebook is not None:
        if not isinstance(notebook, (str, os.PathLike)) or not os.fspath(notebook):
            raise TypeError(f"nt.runs(notebook=...) takes a notebook's name or path, not {notebook!r}")
        notebook = os.fspath(notebook)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"nt.runs(limit=...) takes a whole number of runs from 1 up (or None: all), not {limit!r}")
    if store is not None and not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"nt.runs(store=...) takes the path of a store file, not {store!r}")
    history = History(store, STALE_AFTER)
    if history.path == MEMORY:
        raise ValueError("nt.runs(store=':memory:'): an in-memory store keeps nothing another kernel can read; "
                         "name a store file")
    _written(history.path)
    return history.find(name, tag, state, notebook, limit)


def _written(path: str) -> None:
    """Runs of this very process reach the file a moment after they happen (the store
    thread writes in batches): wait for those, so ``nt.runs()`` sees them."""
    Store.written(path)
