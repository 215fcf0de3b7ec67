"""Reading the store: runs, their units and the clusters, as plain JSON-able dicts.

Used by the Jupyter server extension and by anyone inspecting past runs. It
never unpickles anything (results stay opaque bytes), so reading needs none
of the user's code. Its one write is a cancel request, which the run's kernel
picks up.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from array import array
from typing import Any, Iterator

from ..core.states import RunState
from .location import MEMORY, resolve
from .schema import connect, not_a_store

__all__ = ["StoreReader", "StoreUnreadable", "RUN_STATES", "LIVE_RUN_STATES", "UNIT_STATES", "STALE_AFTER"]

#: a run's states as the store shows them: ``RunState``'s, and "lost" for a live run whose kernel is gone
RUN_STATES = (*(s.value for s in RunState), "lost")
#: the states in which a run may still change, and its kernel still listens for a cancel request
LIVE_RUN_STATES = tuple(s.value for s in RunState if not s.finished)
UNIT_STATES = ("done", "failed")
#: seconds without a write from its kernel after which a live run counts as lost
STALE_AFTER = 15.0
IS_LIVE = f"state IN ({', '.join('?' * len(LIVE_RUN_STATES))})"  # SQL; takes LIVE_RUN_STATES as arguments

RUN_COLUMNS = ("id, name, notebook, host, kernel_pid, cluster, counts, total, reused, state, note, error, "
                "submitted, started, ended, updated, cancel_requested, cancel_reason")


class StoreUnreadable(sqlite3.OperationalError):
    """The store is there but cannot be read (permissions, locks, I/O): its runs
    must not look like none at all."""


class StoreReader:
    """Queries over one store file. A missing file, or one that holds no nbtasks
    store (another program's, damaged), reads as an empty store; one that cannot
    be read raises ``StoreUnreadable``."""

    def __init__(self, path: "str | os.PathLike[str] | None" = None, stale_after: float = STALE_AFTER) -> None:
        self.path = resolve(path)
        self.stale_after = stale_after

    def _connect(self) -> sqlite3.Connection | None:
        if self.path == MEMORY or not os.path.exists(self.path):
            return None
        try:
            conn = connect(self.path, readonly=True)
        except sqlite3.Error as exc:
            return self._unusable(exc)
        try:
            conn.execute("SELECT 1 FROM runs LIMIT 1")
        except sqlite3.Error as exc:
            conn.close()
            return self._unusable(exc)
        return conn

    def _unusable(self, exc: sqlite3.Error) -> None:
        """None (read as empty) for a file that holds no store of ours; raise otherwise."""
        if not_a_store(exc):
            return None
        why = str(exc)
        wal, shm = self.path + "-wal", self.path + "-shm"
        if os.path.exists(wal) and not os.path.exists(shm) and not os.access(os.path.dirname(wal), os.W_OK):
            why += f" (SQLite reads the changes in {wal} only with a {shm}, which cannot be made in that folder)"
        raise StoreUnreadable(f"the run store {self.path} cannot be read: {why}") from exc

    # -- runs ------------------------------------------------------------------
    def runs(self, state: str | None = None, notebook: str | None = None,
             limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """Runs, newest first: ``{"runs": [...], "total": n}`` (``state`` may be ``lost``)."""
        conn = self._connect()
        if conn is None:
            return {"runs": [], "total": 0, "offset": offset, "limit": limit}
        where, args = run_filter(state, self.stale_after)
        if notebook is not None:
            where.append("notebook = ?")
            args.append(notebook)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        try:
            total = conn.execute(f"SELECT count(*) FROM runs{clause}", args).fetchone()[0]
            rows = [run_summary(r, self.stale_after) for r in conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs{clause} ORDER BY submitted DESC LIMIT ? OFFSET ?",
                [*args, limit, offset])]
        finally:
            conn.close()
        return {"runs": rows, "total": total, "offset": offset, "limit": limit}

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run with its task tree (counts per node) and parameters; None if unknown."""
        conn = self._connect()
        if conn is None:
            return None
        try:
            explain, = newer_columns(conn, "runs", "explain")
            row = conn.execute(f"SELECT {RUN_COLUMNS}, tree, params, {explain} FROM runs WHERE id = ?",
                               (run_id,)).fetchone()
        finally:
            conn.close()
        if row is None:
            return None
        out = run_summary(row[:-3], self.stale_after)
        out["tree"] = json.loads(row[-3])
        out["params"] = json.loads(row[-2])
        out["explain"] = json.loads(row[-1]) if row[-1] else {"tasks": []}
        return out

    # -- units -----------------------------------------------------------------
    def units(self, run_id: str, state: str | None = None, offset: int = 0,
              limit: int = 50) -> dict[str, Any] | None:
        """A page of a run's finished units: failed ones first (with tracebacks),
        then done ones in input order. None if the run is unknown."""
        conn = self._connect()
        if conn is None:
            return None
        try:
            if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                return None
            n_failed = conn.execute("SELECT count(*) FROM failures WHERE run = ?", (run_id,)).fetchone()[0]
            n_done = conn.execute("SELECT coalesce(sum(done), 0) FROM parts WHERE run = ?", (run_id,)).fetchone()[0]
            page: list[dict] = []
            total = {"failed": n_failed, "done": n_done, None: n_failed + n_done}[state]
            skip = offset
            if state in (None, "failed"):
                page += [failure_record(r) for r in conn.execute(
                    "SELECT task, node, unit, input, error, traceback, engine, host, pid, time "
                    "FROM failures WHERE run = ? ORDER BY id LIMIT ? OFFSET ?", (run_id, limit, skip))]
                skip = max(0, skip - n_failed)
            if state in (None, "done") and len(page) < limit:
                page += list(done_units(conn, run_id, skip, limit - len(page)))
        finally:
            conn.close()
        return {"units": page, "total": total, "offset": offset, "limit": limit}

    # -- clusters ----------------------------------------------------------------
    def clusters(self) -> list[dict[str, Any]]:
        """Clusters that kernels reported lately, with their engines (busy or idle)."""
        conn = self._connect()
        if conn is None:
            return []
        try:
            rows = conn.execute("SELECT id, host, kernel_pid, profile, engines, updated FROM clusters "
                                "ORDER BY updated DESC").fetchall()
        finally:
            conn.close()
        now = time.time()
        return [{"id": r[0], "host": r[1], "kernel_pid": r[2], "profile": r[3], "engines": json.loads(r[4]),
                 "updated": r[5], "live": now - r[5] < self.stale_after} for r in rows]

    # -- the one write: asking a kernel to cancel -------------------------------
    def request_cancel(self, run_id: str, reason: str = "cancelled from JupyterLab") -> dict[str, Any] | None:
        """Mark a run for cancelling; its kernel notices within about a second.
        Returns the run (None if unknown)."""
        if self.path == MEMORY or not os.path.exists(self.path):
            return None
        conn = connect(self.path)
        try:
            with conn:
                conn.execute("UPDATE runs SET cancel_requested = coalesce(cancel_requested, ?), cancel_reason = "
                             f"coalesce(cancel_reason, ?) WHERE id = ? AND {IS_LIVE}",
                             (time.time(), reason, run_id, *LIVE_RUN_STATES))
        finally:
            conn.close()
        return self.run(run_id)


def run_filter(state: str | None, stale_after: float) -> tuple[list[str], list]:
    """SQL conditions (and their arguments) on ``runs`` for runs in ``state`` as readers
    see it: "lost" is a live state whose kernel stopped writing ``stale_after`` ago."""
    fresh = time.time() - stale_after
    if state == "lost":
        return [f"{IS_LIVE} AND updated < ?"], [*LIVE_RUN_STATES, fresh]
    if state in LIVE_RUN_STATES:
        return ["state = ? AND updated >= ?"], [state, fresh]
    if state is not None:
        return ["state = ?"], [state]
    return [], []


def run_summary(row: tuple, stale_after: float) -> dict[str, Any]:
    (id, name, notebook, host, kernel_pid, cluster, counts, total, reused, state, note, error,
     submitted, started, ended, updated, cancel_requested, cancel_reason) = row
    now = time.time()
    if state in LIVE_RUN_STATES and now - updated > stale_after:
        state, note = "lost", "its kernel stopped reporting (restarted or gone)"
    start = started or submitted
    return {"id": id, "name": name, "notebook": notebook, "host": host, "kernel_pid": kernel_pid,
            "cluster": cluster, "state": state, "note": note, "error": error, "counts": json.loads(counts),
            "total": total, "reused": reused, "submitted": submitted, "started": started, "ended": ended,
            "elapsed": (ended or (updated if state == "lost" else now)) - start, "updated": updated,
            "cancel_requested": cancel_requested is not None, "cancel_reason": cancel_reason}


def failure_record(row: tuple) -> dict[str, Any]:
    task, node, unit, input, error, tb, engine, host, pid, when = row
    return {"task": task, "node": node, "unit": unit, "key": None, "state": "failed", "input": input,
            "engine": engine, "host": host, "pid": pid, "start": None, "end": when, "duration": None,
            "attempts": None, "stdout": "", "stderr": "", "error": error, "traceback": tb}


def done_units(conn: sqlite3.Connection, run_id: str, skip: int, limit: int) -> Iterator[dict[str, Any]]:
    """A page of a run's done units, in input order, as the server shows them."""
    for unit, _, _ in done_unit_rows(conn, run_id, skip, limit):
        yield unit


def done_unit_rows(conn: sqlite3.Connection, run_id: str, skip: int = 0,
                   limit: int | None = None) -> Iterator[tuple[dict[str, Any], int, int]]:
    """Done units as ``done_units`` gives them, each with where its result is: the
    stored chunk outcome (a ``blobs`` id) and the unit's position among its values."""
    rows = conn.execute(
        "SELECT task, node, request_key, start, stop, label, done, skip, attempts, engine, host, pid, t0, ends, "
        "stdout, stderr, marks, blob, offset FROM parts WHERE run = ? ORDER BY node, request_seq, start",
        (run_id,))
    for (task, node, key, start, stop, label, done, skips, attempts, engine, host, pid, t0, ends_blob,
         stdout, stderr, marks, blob, offset) in rows:
        if skip >= done:  # page past this part without expanding it
            skip -= done
            continue
        ends = array("d")
        ends.frombytes(ends_blob)
        skipped = set(json.loads(skips))
        tries = {int(k): v for k, v in json.loads(attempts).items()}
        texts = {m[0]: (stdout[m[1]:m[2]], stderr[m[3]:m[4]]) for m in json.loads(marks)}
        for pos in range(stop - start):
            if pos in skipped:
                continue
            if skip:
                skip -= 1
                continue
            out, err = texts.get(pos, ("", ""))
            index = start + pos
            yield ({"task": task, "node": node, "unit": label if label is not None else index,
                    "key": f"{key}/{index}", "state": "done", "input": None, "engine": engine, "host": host,
                    "pid": pid, "start": t0 + ends[pos], "end": t0 + ends[pos + 1],
                    "duration": ends[pos + 1] - ends[pos], "attempts": tries.get(pos, 1),
                    "stdout": out, "stderr": err, "error": None, "traceback": None}, blob, offset + pos)
            if limit is not None:
                limit -= 1
                if limit == 0:
                    return


def newer_columns(conn: sqlite3.Connection, table: str, *columns: str) -> list[str]:
    """``columns`` of ``table`` as a SELECT names them: NULL for each that a store of an
    older schema lacks (read where it cannot be upgraded, it keeps the columns it has)."""
    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    return [column if column in have else "NULL" for column in columns]
