"""The rows a kernel keeps up to date for its live runs and clusters (the store thread writes them).

Readers (``StoreReader``, the server, the Tasks sidebar) see a run's tree, counts and
state, its failed units, and each live cluster's engines; a live run's row is touched
at least every ``HEARTBEAT`` seconds, so a run whose kernel died reads as lost.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
from typing import Any

from ..core.errors import short_repr
from ..core.states import total

__all__ = ["Tracked", "write_run", "write_cluster", "HEARTBEAT"]

HEARTBEAT = 2.0     # a live run's row is touched at least this often, so readers see it alive
_INPUT_REPR = 200   # characters kept of the repr of a failed unit's input or of a parameter


def _notebook() -> str | None:
    """The notebook (or script) this kernel runs, as Jupyter names it."""
    name = os.environ.get("JPY_SESSION_NAME")
    if name:
        return name
    main = sys.modules.get("__main__")
    session = getattr(main, "__session__", None)
    if session:
        return str(session)
    path = getattr(main, "__file__", None)
    return os.path.abspath(path) if path else None


class Tracked:
    """A run being recorded, and what of it was written last."""

    __slots__ = ("run", "written", "beat", "failures", "result_written")

    def __init__(self, run: Any) -> None:
        self.run = run
        self.written: tuple | None = None  # (state, note, tree, reused) as last written
        self.beat = 0.0  # when its row was last written
        self.failures = 0  # how many of its failed units are written
        self.result_written = False  # its result is in ``runs.result_blob``


def write_run(conn: sqlite3.Connection, t: Tracked, now: float) -> str:
    """Write the run's row if it changed (or its heartbeat is due) and its new failed
    units; returns the state written."""
    run = t.run
    snap = run.snapshot()
    state = snap["state"]
    sig = (state, snap["note"], json.dumps(snap["tree"]), run.reused)
    if sig != t.written or now - t.beat >= HEARTBEAT:
        counts = snap["counts"]
        error = None
        if state == "failed":
            exc = run.error
            error = f"{type(exc).__name__}: {exc}" if exc is not None else None
        elif state == "cancelled":
            error = run.cancel_reason
        backend = run.backend
        cluster = getattr(backend, "cluster_id", None) if backend is not None else None
        params = {k: short_repr(v, limit=_INPUT_REPR) for k, v in run.params.items()}
        conn.execute(
            "INSERT INTO runs (id, name, notebook, host, kernel_pid, cluster, params, tree, counts, total, "
            "reused, state, note, error, submitted, started, ended, updated, explain) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "tree = excluded.tree, counts = excluded.counts, total = excluded.total, "
            "reused = excluded.reused, state = excluded.state, note = excluded.note, "
            "error = excluded.error, started = excluded.started, ended = excluded.ended, "
            "updated = excluded.updated, cluster = excluded.cluster, explain = excluded.explain",
            (run.id, run.task.name, _notebook(), socket.gethostname(), os.getpid(), cluster,
             json.dumps(params), sig[2], json.dumps(counts), total(counts), run.reused, state, snap["note"],
             error, run.created, run.started, run.finished, now, json.dumps(run.explain().to_record())))
        t.written, t.beat = sig, now
    failures = run.failures_since(t.failures)
    if failures:
        conn.executemany(
            "INSERT INTO failures (run, node, task, unit, input, error, traceback, engine, host, pid, "
            "time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(run.id, f.node_id, f.task, f.index, short_repr(f.input, limit=_INPUT_REPR), f.error,
              f.traceback or "", f.engine, f.host, f.pid, now) for f in failures])
        t.failures += len(failures)
    return state


def write_cluster(conn: sqlite3.Connection, cluster: Any, now: float) -> bool:
    """Write a cluster's engines; False once it stopped (its row is deleted)."""
    ident = cluster.cluster_id or f"{socket.gethostname()}:{os.getpid()}:{id(cluster):x}"
    state = getattr(cluster.state, "value", cluster.state)
    if state in ("stopped", "failed"):
        conn.execute("DELETE FROM clusters WHERE id = ?", (ident,))
        return False
    if state != "running":
        return True
    try:
        engines = cluster.engines_status()
    except Exception:
        return True
    conn.execute(
        "INSERT INTO clusters (id, host, kernel_pid, profile, engines, updated) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET engines = excluded.engines, updated = excluded.updated",
        (ident, socket.gethostname(), os.getpid(), cluster.profile_dir, json.dumps(engines), now))
    return True
