"""The store's tables, and opening a database file safely.

One row per run, per finished *part* of a chunk (a stretch of units that ran
together; done units are derived from it, so 100,000 units cost a few hundred
rows), per failed unit, per result blob, per cluster, per *leaf* (a task's
code, parameters and shared values as one run used them, so a later run can
say what changed) and per request of many units (each unit's input digest, so
a changed list still finds the units it shares with an earlier one). A file
that is not an nbtasks store (corrupt, foreign, newer) is moved aside, never
deleted; an older one gains the newer columns.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from .location import MEMORY

__all__ = ["SCHEMA_VERSION", "connect", "open_database", "not_a_store", "StoreDamaged"]

log = logging.getLogger("nbtasks")

APP = "nbtasks"
SCHEMA_VERSION = 2

TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    notebook TEXT,
    host TEXT,
    kernel_pid INTEGER,
    cluster TEXT,
    params TEXT NOT NULL,          -- JSON: parameter name -> repr
    tree TEXT NOT NULL,            -- JSON: the task tree with counts per node
    counts TEXT NOT NULL,          -- JSON: queued/running/done/failed/retried/cancelled
    total INTEGER NOT NULL DEFAULT 0,
    reused INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    error TEXT,
    submitted REAL NOT NULL,
    started REAL,
    ended REAL,
    updated REAL NOT NULL,         -- the kernel's last write: a stale live run lost its kernel
    cancel_requested REAL,         -- set by the server; the kernel cancels the run
    cancel_reason TEXT,
    result_blob INTEGER,           -- the run's result (a finished run), pickled in blobs
    explain TEXT                   -- JSON: per task, units reused and why the others ran
);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (submitted);
CREATE TABLE IF NOT EXISTS blobs (
    id INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    data BLOB,                     -- the pickled chunk outcome, or NULL when in a file
    path TEXT,                     -- file name in the results folder beside the database
    dropped REAL                   -- when housekeeping removed its data (its records stay)
);
-- housekeeping: bytes kept, and which kept results name a file, without reading the results
CREATE INDEX IF NOT EXISTS blobs_kept ON blobs (path, size) WHERE dropped IS NULL;
CREATE TABLE IF NOT EXISTS parts (
    id INTEGER PRIMARY KEY,
    run TEXT NOT NULL,
    node INTEGER NOT NULL,
    task TEXT NOT NULL,
    request_key TEXT NOT NULL,     -- task code + parameters + the request's inputs
    leaf_key TEXT,                 -- task code + parameters + shared values (leaves.key)
    request_seq INTEGER NOT NULL,
    start INTEGER NOT NULL,        -- units [start, stop) of the request
    stop INTEGER NOT NULL,
    offset INTEGER NOT NULL,       -- where they sit in the chunk's outcome
    label INTEGER,                 -- the unit number users see, for a one-unit request
    done INTEGER NOT NULL,         -- how many of them finished without error
    skip TEXT NOT NULL,            -- JSON: positions that failed or ran again
    attempts TEXT NOT NULL,        -- JSON: position -> attempts, when more than one
    engine INTEGER,
    host TEXT,
    pid INTEGER,
    t0 REAL NOT NULL,
    ends BLOB NOT NULL,            -- float64 array: end of each unit, seconds after t0 (+1 before)
    stdout TEXT NOT NULL,          -- the chunk's output for these units
    stderr TEXT NOT NULL,
    marks TEXT NOT NULL,           -- JSON: [[pos, out_a, out_b, err_a, err_b], ...]
    blob INTEGER NOT NULL REFERENCES blobs (id)
);
CREATE INDEX IF NOT EXISTS parts_by_key ON parts (request_key);
CREATE INDEX IF NOT EXISTS parts_by_run ON parts (run, node, request_seq, start);
CREATE INDEX IF NOT EXISTS parts_by_leaf ON parts (leaf_key);
CREATE INDEX IF NOT EXISTS parts_by_blob ON parts (blob);   -- housekeeping: who else uses a result
CREATE TABLE IF NOT EXISTS leaves (
    key TEXT PRIMARY KEY,
    task TEXT NOT NULL,            -- the task's name in its tree
    parts TEXT NOT NULL,           -- JSON: digests of code (per function), parameters, shared values
    seen REAL NOT NULL             -- when a run last used it
);
CREATE INDEX IF NOT EXISTS leaves_by_task ON leaves (task, seen);
CREATE TABLE IF NOT EXISTS requests (
    key TEXT PRIMARY KEY,          -- parts.request_key: a leaf over a whole list of inputs
    leaf_key TEXT NOT NULL,
    units BLOB NOT NULL            -- 8 bytes per input, in order: a digest of each unit's own input
);
CREATE INDEX IF NOT EXISTS requests_by_leaf ON requests (leaf_key);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY,
    run TEXT NOT NULL,
    node INTEGER,
    task TEXT NOT NULL,
    unit INTEGER NOT NULL,
    input TEXT NOT NULL,           -- repr, shortened
    error TEXT NOT NULL,
    traceback TEXT NOT NULL,
    engine INTEGER,
    host TEXT,
    pid INTEGER,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_by_run ON failures (run, task, unit);
CREATE TABLE IF NOT EXISTS clusters (
    id TEXT PRIMARY KEY,
    host TEXT,
    kernel_pid INTEGER,
    profile TEXT,
    engines TEXT NOT NULL,         -- JSON list: id, host, pid, busy, units_done
    updated REAL NOT NULL
);
"""


class StoreDamaged(Exception):
    """The file is not an nbtasks store we can use."""


def connect(path: str, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the settings every user of the store needs.

    ``readonly`` never writes. SQLite reads a WAL database only with its
    ``-shm`` beside it, which it cannot create in a place that cannot be
    written; a store there with no changes left in a ``-wal`` is read as
    ``immutable`` instead (SQLite's way for read-only media).
    """
    if not readonly:
        conn = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
    else:
        uri = Path(path).absolute().as_uri()
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=5.0, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master")  # the first read opens the -wal and -shm
        except sqlite3.Error as exc:
            conn.close()
            if not _frozen(path, exc):
                raise
            conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=5.0, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _frozen(path: str, exc: sqlite3.Error) -> bool:
    """SQLite could not open ``path`` only for want of a ``-shm`` it may not create,
    and the file alone holds the whole store (no ``-wal`` with changes)."""
    code = _code(exc)
    if not ("unable to open" in str(exc) if code is None else code == sqlite3.SQLITE_CANTOPEN):
        return False
    wal = path + "-wal"
    return (not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK)
            and (not os.path.exists(wal) or os.path.getsize(wal) == 0))


def _check(conn: sqlite3.Connection) -> None:
    """Raise ``StoreDamaged`` unless this is (or can become) our store."""
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return  # new, empty file
        if "meta" not in tables:
            raise StoreDamaged(f"not an nbtasks store (it has tables {sorted(tables)})")
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        if meta.get("app") != APP:
            raise StoreDamaged(f"not an nbtasks store (app={meta.get('app')!r})")
        if int(meta.get("schema", 0)) > SCHEMA_VERSION:
            raise StoreDamaged(f"made by a newer nbtasks (schema {meta['schema']})")
        if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise StoreDamaged("the database is damaged (quick_check failed)")
    except sqlite3.DatabaseError as exc:
        if _unwritable(exc):  # e.g. a WAL store in a read-only place: fine, just not ours to write
            raise
        raise StoreDamaged(str(exc)) from exc


_UNWRITABLE = {getattr(sqlite3, name, None) for name in
               ("SQLITE_READONLY", "SQLITE_FULL", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_PERM")} - {None}
_FOREIGN = {getattr(sqlite3, name, None) for name in ("SQLITE_ERROR", "SQLITE_CORRUPT", "SQLITE_NOTADB")} - {None}


def _code(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code (Python >= 3.11; None before)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF  # extended codes keep the primary one in the low byte


def _unwritable(exc: sqlite3.Error) -> bool:
    """The place cannot be written (the file itself may be fine), as opposed to damage."""
    code = _code(exc)
    if code is not None:
        return code in _UNWRITABLE
    return any(words in str(exc) for words in ("readonly", "is full", "I/O error", "unable to open",
                                                "permission denied"))


def not_a_store(exc: sqlite3.Error) -> bool:
    """What the file holds is not an nbtasks store (not SQLite, foreign, damaged),
    as opposed to a store that cannot be read now (permissions, locks, I/O)."""
    code = _code(exc)
    if code is not None:
        return code in _FOREIGN
    return any(words in str(exc) for words in ("not a database", "no such table", "malformed"))


def _set_aside(path: str, why: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = f"{path}.damaged-{stamp}"
    n = 1
    while os.path.exists(aside):
        n += 1
        aside = f"{path}.damaged-{stamp}-{n}"
    os.replace(path, aside)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, aside + suffix)
    log.warning("nbtasks: the run store %s cannot be used (%s); it was moved to %s and a fresh "
                "store started", path, why, aside)
    return aside


#: columns added after schema 1, as (table, column, declaration): a store made by an
#: older nbtasks gains them when it is opened for writing
ADDED = [
    ("runs", "result_blob", "INTEGER"),
    ("runs", "explain", "TEXT"),
    ("blobs", "dropped", "REAL"),
    ("parts", "leaf_key", "TEXT"),
]


def _add_columns(conn: sqlite3.Connection) -> None:
    for table, column, declaration in ADDED:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if have and column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


def _create(conn: sqlite3.Connection) -> None:
    with conn:
        _add_columns(conn)  # before TABLES: its indexes may name the new columns
        conn.executescript(TABLES)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('app', ?)", (APP,))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))


def open_database(path: str) -> sqlite3.Connection:
    """Open (creating if needed) the store at ``path`` for writing.

    A damaged or foreign file is moved aside with a warning and a fresh store
    started. Raises ``sqlite3.OperationalError``/``OSError`` when the place
    cannot be written at all (the caller falls back to memory).
    """
    if path == MEMORY:
        conn = connect(MEMORY)
        _create(conn)
        return conn
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        _check(conn)
    except StoreDamaged as exc:
        conn.close()
        _set_aside(path, str(exc))
        conn = connect(path)
    except sqlite3.Error:
        conn.close()
        raise
    try:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # a new file only (before WAL): housekeeping gives space back
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        _create(conn)
    except sqlite3.DatabaseError as exc:
        if _unwritable(exc):
            conn.close()
            raise
        conn.close()  # damaged in a way the quick check did not see
        _set_aside(path, str(exc))
        conn = connect(path)
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        _create(conn)
    return conn
