"""Housekeeping of the run store: its size limit, what it holds, and removing runs.

    set_size_limit("50GB") / $NBTASKS_STORE_LIMIT ── the limit the store thread keeps (sizelimit.py)
    usage()                     ── bytes of results kept, runs, the limit
    prune(older_than=, name=)   ── whole runs: their rows, parts, failures, the lookups' rows,
                                   and the results no remaining run names (files too)

Live runs (their kernel still writes them) are never removed, and the results a remaining
run also uses stay. ``python -m nbtasks.store`` does the same from a shell.
"""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
import time
from dataclasses import dataclass

from .amounts import format_size, parse_age
from .location import MEMORY, resolve
from .schema import APP, connect, not_a_store, open_database
from .sizelimit import (DEFAULT_LIMIT, LIMIT_ENV, META_KEY, SizeLimit, drop_oldest, effective_limit, give_back,
                        kept_bytes, limit_value, live_runs, remove_files)

__all__ = ["LIMIT_ENV", "DEFAULT_LIMIT", "Usage", "Pruned", "SizeLimit", "drop_oldest", "size_limit",
           "set_size_limit", "usage", "prune"]

#: runs deleted per transaction by ``prune`` (1,000 runs of 200 parts took ~2.3 s in one)
PRUNE_BATCH = 100


@dataclass(frozen=True)
class Usage:
    """What a store holds (``usage()``)."""
    path: str
    runs: int
    results: int            # bytes of results kept: blobs in the database plus files beside it
    database: int           # bytes of the database file and its write-ahead log
    limit: int | None       # the size limit for results (None: no limit)

    def __str__(self) -> str:
        return (f"{self.path}: {format_size(self.results)} of results from {self.runs} run(s), "
                f"limit {format_size(self.limit)}; database file {format_size(self.database)}")


@dataclass(frozen=True)
class Pruned:
    """What ``prune`` removed."""
    runs: tuple[str, ...]   # ids of the runs removed
    bytes: int              # bytes of results removed (database and files)
    live: int               # runs that matched but are live, so kept

    def __str__(self) -> str:
        kept = f" ({self.live} live run(s) kept)" if self.live else ""
        return f"removed {len(self.runs)} run(s) and {format_size(self.bytes)} of results{kept}"


# -- the limit ---------------------------------------------------------------------------------

def size_limit(store: "str | os.PathLike[str] | None" = None) -> int | None:
    """The size limit of the store's results in bytes (None: no limit): ``$NBTASKS_STORE_LIMIT``
    if set, else the store's own (``set_size_limit``), else the default."""
    path = resolve(store)
    conn = _reader(path)
    try:
        return effective_limit(path, conn)
    finally:
        if conn is not None:
            conn.close()


def set_size_limit(limit: "int | float | str | None", store: "str | os.PathLike[str] | None" = None) -> int | None:
    """Keep the store's results under ``limit`` (bytes, or e.g. ``"5GB"``; ``"none"``: no
    limit; None: back to the default). Kept in the store, so every kernel writing it and the
    Jupyter server reading it use it (``$NBTASKS_STORE_LIMIT`` still wins in a process that sets
    it). Returns the limit now in force."""
    value = None if limit is None else limit_value(limit)
    path = _file(store, "have a size limit set")
    if os.path.exists(path):
        _reader(path).close()  # refuses a file that is not a store (rather than set it aside)
    conn = open_database(path)
    try:
        with conn:
            if limit is None:
                conn.execute("DELETE FROM meta WHERE key = ?", (META_KEY,))
            else:
                conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                             (META_KEY, "none" if value is None else str(value)))
        return effective_limit(path, conn)
    finally:
        conn.close()


# -- what the store holds --------------------------------------------------------------------

def usage(store: "str | os.PathLike[str] | None" = None) -> Usage:
    """How much the store holds: bytes of results (database and files), runs, the size limit."""
    path = resolve(store)
    conn = _reader(path)
    if conn is None:
        return Usage(path, 0, 0, 0, effective_limit(path, None))
    try:
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        results = kept_bytes(conn)
        limit = effective_limit(path, conn)
    finally:
        conn.close()
    database = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
    return Usage(path, runs, results, database, limit)


def _reader(path: str) -> sqlite3.Connection | None:
    """A read-only connection, None when there is no store file yet (or in memory)."""
    if path == MEMORY or not os.path.exists(path):
        return None
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, not a run store's database file")
    conn = connect(path, readonly=True)
    try:
        app = conn.execute("SELECT value FROM meta WHERE key = 'app'").fetchone()
        columns = {r[1] for r in conn.execute("PRAGMA table_info(blobs)")}
    except sqlite3.Error as exc:
        conn.close()
        if not_a_store(exc):
            raise ValueError(f"{path} is not an nbtasks run store ({exc})") from exc
        raise
    if app is None or app[0] != APP:
        conn.close()
        raise ValueError(f"{path} is not an nbtasks run store (it has no nbtasks tables)")
    if "dropped" not in columns:  # made by an older nbtasks: it gains the columns when opened to write
        conn.close()
        open_database(path).close()
        return _reader(path)
    return conn


def _file(store: "str | os.PathLike[str] | None", what: str) -> str:
    path = resolve(store)
    if path == MEMORY:
        raise ValueError(f"the in-memory store ({MEMORY}) lives inside one kernel and cannot {what} from here")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, not a run store's database file")
    return path


# -- prune ---------------------------------------------------------------------------------------

def prune(older_than: "float | str | datetime.timedelta | None" = None, name: str | None = None,
          store: "str | os.PathLike[str] | None" = None) -> Pruned:
    """Remove whole runs, records and results, that were submitted more than ``older_than`` ago
    (seconds, a ``datetime.timedelta`` or text like ``"30d"``) and/or whose task is named
    ``name``. Live runs are never removed; results a remaining run also uses are kept."""
    if older_than is None and name is None:
        raise ValueError("prune() needs older_than= and/or name= (older_than=0 removes every finished run)")
    age = None if older_than is None else parse_age(older_than)
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"name must be a task's name (a non-empty str), not {name!r}")
    path = _file(store, "be pruned")
    if not os.path.exists(path):
        return Pruned((), 0, 0)
    _reader(path).close()  # refuses a file that is not a store, before anything is written
    conn = open_database(path)
    try:
        return _prune(conn, path + "-results", age, name)
    finally:
        conn.close()


def _prune(conn: sqlite3.Connection, results_dir: str, age: float | None, name: str | None) -> Pruned:
    now = time.time()
    where, args = [], []
    if age is not None:
        where.append("submitted <= ?")
        args.append(now - age)
    if name is not None:
        where.append("name = ?")
        args.append(name)
    matched = [r[0] for r in conn.execute(f"SELECT id FROM runs WHERE {' AND '.join(where)} "
                                          "ORDER BY submitted, id", args)]
    live = live_runs(conn, now)
    ids = [i for i in matched if i not in live]
    if not ids:
        return Pruned((), 0, len(matched))
    freed = 0
    files: set[str] = set()
    for first in range(0, len(ids), PRUNE_BATCH):  # a short transaction each: kernels write in between
        batch, named = _delete_runs(conn, ids[first:first + PRUNE_BATCH])
        freed += batch
        files |= named
    if files:  # files a kept blob (of a remaining run) still names stay
        kept = {r[0] for r in conn.execute("SELECT path FROM blobs WHERE dropped IS NULL AND path IN "
                                           "(SELECT value FROM json_each(?))", (json.dumps(sorted(files)),))}
        freed += remove_files(results_dir, files - kept)
    give_back(conn)
    return Pruned(tuple(ids), freed, len(matched) - len(ids))


def _delete_runs(conn: sqlite3.Connection, ids: list[str]) -> tuple[int, set[str]]:
    """Delete these runs, their parts and failures, and the blobs no remaining run names;
    returns (bytes of results deleted from the database, files those blobs named)."""
    chosen = json.dumps(ids)
    in_chosen = "IN (SELECT value FROM json_each(?))"
    freed = 0
    files: set[str] = set()
    with conn:
        blobs = json.dumps([r[0] for r in conn.execute(
            f"SELECT blob FROM parts WHERE run {in_chosen} UNION "
            f"SELECT result_blob FROM runs WHERE id {in_chosen} AND result_blob IS NOT NULL", (chosen, chosen))])
        keys = conn.execute(f"SELECT json_group_array(DISTINCT request_key), json_group_array(DISTINCT leaf_key) "
                            f"FROM parts WHERE run {in_chosen}", (chosen,)).fetchone()
        conn.execute(f"DELETE FROM parts WHERE run {in_chosen}", (chosen,))
        # what lookups keep per request (8 bytes per unit) and per leaf, once no part names it
        conn.execute("DELETE FROM requests WHERE key IN (SELECT value FROM json_each(?)) "
                     "AND NOT EXISTS (SELECT 1 FROM parts WHERE request_key = requests.key)", (keys[0],))
        conn.execute("DELETE FROM leaves WHERE key IN (SELECT value FROM json_each(?)) "
                     "AND NOT EXISTS (SELECT 1 FROM parts WHERE leaf_key = leaves.key)", (keys[1],))
        conn.execute(f"DELETE FROM failures WHERE run {in_chosen}", (chosen,))
        conn.execute(f"DELETE FROM runs WHERE id {in_chosen}", (chosen,))
        unused = json.dumps([r[0] for r in conn.execute(
            "SELECT value FROM json_each(?) WHERE NOT EXISTS (SELECT 1 FROM parts WHERE blob = value) "
            "AND value NOT IN (SELECT result_blob FROM runs WHERE result_blob IS NOT NULL)", (blobs,))])
        for size, path, dropped in conn.execute(f"SELECT size, path, dropped FROM blobs WHERE id {in_chosen}",
                                                (unused,)).fetchall():
            if path is not None:
                files.add(path)
            elif dropped is None:
                freed += size
        conn.execute(f"DELETE FROM blobs WHERE id {in_chosen}", (unused,))
    return freed, files
