"""Keeping the run store to a size, and removing runs from it.

    store thread ── after it writes ──> SizeLimit.after_write ── over the limit? ──> drop_oldest
    prune(older_than=, name=)  ── whole runs: their rows, parts, failures, and results no other run uses
    usage()                    ── what the store holds: bytes of results, runs, the limit

A result (a ``blobs`` row, its bytes in the database or in a file in ``<store>-results/``)
may serve several runs: a later run that reused units names the same blob. It counts as
young as the newest run that names it, so dropping the oldest runs' results never takes
what a newer run still uses. A dropped blob keeps its row (``dropped`` set to the time,
``data`` NULL, its file deleted once no kept blob names it), so the runs, parts and
failures that name it stay readable; ``blobs.dropped`` is the one sign that its data is
gone (reuse skips it and those units run again).

Live runs (their kernel still writes them) are never touched by either: not their rows,
not their results, not results they share with older runs.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from typing import Collection

from .amounts import format_size, parse_age, parse_size
from .location import MEMORY, resolve
from .reader import LIVE_RUN_STATES, STALE_AFTER
from .schema import APP, connect, not_a_store, open_database

__all__ = ["LIMIT_ENV", "DEFAULT_LIMIT", "Usage", "Pruned", "Dropped", "SizeLimit",
           "size_limit", "set_size_limit", "usage", "prune", "drop_oldest"]

log = logging.getLogger("nbtasks")

#: the size limit for this process (e.g. ``5GB``, ``none``), over the store's own and the default
LIMIT_ENV = "NBTASKS_STORE_LIMIT"
#: at most this much, and at most ``DISK_SHARE`` of the disk that holds the store
DEFAULT_LIMIT = 10 * 1000 ** 3
DISK_SHARE = 0.2
#: over the limit, results are dropped until the store holds this share of it (so dropping
#: happens once per tenth of the limit written, not after every write)
LOW_WATER = 0.9
#: a stock SQLite VACUUM rewrites the whole file (~1.2 s for 400 MB here) and blocks kernels'
#: writes meanwhile: only done for stores up to this size (new stores use incremental vacuum)
VACUUM_AT_MOST = 256 * 1024 ** 2
#: free pages given back per pass in the store thread, and per transaction (8,000 took ~0.2 s here)
GIVE_BACK_PAGES = 25_000
STEP_PAGES = 8_000
#: runs deleted per transaction by ``prune`` (1,000 runs of 200 parts took ~2.3 s in one)
PRUNE_BATCH = 100
_NO_LIMIT = ("none", "off", "unlimited", "no")
_META_KEY = "size_limit"
_LIVE = f"state IN ({', '.join('?' * len(LIVE_RUN_STATES))}) AND updated >= ?"  # SQL


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


@dataclass(frozen=True)
class Dropped:
    """What one pass of the size limit dropped (records kept)."""
    runs: int
    blobs: int
    bytes: int


# -- the limit ---------------------------------------------------------------------------------

def _limit_text(value: "int | float | str | None") -> int | None:
    if isinstance(value, str) and value.strip().lower() in _NO_LIMIT:
        return None
    return parse_size(value)


def default_limit(path: str) -> int:
    """10 GB, or a fifth of the disk holding the store when that is smaller: results are a
    cache, a laptop's disk should not fill with them, and a small disk (a VM, a container)
    keeps most of its room for data."""
    where = os.path.dirname(os.path.abspath(path)) if path != MEMORY else os.getcwd()
    while not os.path.exists(where):
        where = os.path.dirname(where)
    try:
        disk = shutil.disk_usage(where).total
    except OSError:
        return DEFAULT_LIMIT
    return min(DEFAULT_LIMIT, int(disk * DISK_SHARE))


def _stored_limit(conn: sqlite3.Connection) -> "tuple[bool, int | None]":
    """(whether the store has a limit of its own, that limit)."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (_META_KEY,)).fetchone()
    except sqlite3.Error:
        return False, None
    if row is None:
        return False, None
    return True, (None if row[0] == "none" else int(row[0]))


def _effective_limit(path: str, conn: sqlite3.Connection | None) -> int | None:
    env = os.environ.get(LIMIT_ENV)
    if env:
        try:
            return _limit_text(env)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"${LIMIT_ENV}: {exc}") from None
    if conn is not None:
        has, limit = _stored_limit(conn)
        if has:
            return limit
    return default_limit(path)


def size_limit(store: "str | os.PathLike[str] | None" = None) -> int | None:
    """The size limit of the store's results in bytes (None: no limit): ``$NBTASKS_STORE_LIMIT``
    if set, else the store's own (``set_size_limit``), else the default."""
    path = resolve(store)
    conn = _reader(path)
    try:
        return _effective_limit(path, conn)
    finally:
        if conn is not None:
            conn.close()


def set_size_limit(limit: "int | float | str | None", store: "str | os.PathLike[str] | None" = None) -> int | None:
    """Keep the store's results under ``limit`` (bytes, or e.g. ``"5GB"``; ``"none"``: no
    limit; None: back to the default). Kept in the store, so every kernel writing it and the
    Jupyter server reading it use it (``$NBTASKS_STORE_LIMIT`` still wins in a process that sets
    it). Returns the limit now in force."""
    value = None if limit is None else _limit_text(limit)
    path = _file(store, "have a size limit set")
    conn = open_database(path)
    try:
        with conn:
            if limit is None:
                conn.execute("DELETE FROM meta WHERE key = ?", (_META_KEY,))
            else:
                conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                             (_META_KEY, "none" if value is None else str(value)))
        return _effective_limit(path, conn)
    finally:
        conn.close()


# -- what the store holds --------------------------------------------------------------------

_KEPT_BYTES = ("SELECT (SELECT coalesce(sum(size), 0) FROM blobs WHERE dropped IS NULL AND path IS NULL) + "
               "(SELECT coalesce(sum(size), 0) FROM (SELECT max(size) AS size FROM blobs "
               "WHERE dropped IS NULL AND path IS NOT NULL GROUP BY path))")


def kept_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of results kept (a file several blobs name counts once); read from the index
    ``blobs_kept``, so it costs ~2 ms at 20,000 results, not a read of the results."""
    return conn.execute(_KEPT_BYTES).fetchone()[0]


def usage(store: "str | os.PathLike[str] | None" = None) -> Usage:
    """How much the store holds: bytes of results (database and files), runs, the size limit."""
    path = resolve(store)
    conn = _reader(path)
    if conn is None:
        return Usage(path, 0, 0, 0, _effective_limit(path, None))
    try:
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        results = kept_bytes(conn)
        limit = _effective_limit(path, conn)
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


def _live_runs(conn: sqlite3.Connection, now: float) -> set[str]:
    return {r[0] for r in conn.execute(f"SELECT id FROM runs WHERE {_LIVE}",
                                       (*LIVE_RUN_STATES, now - STALE_AFTER))}


# -- the size limit ----------------------------------------------------------------------------

class SizeLimit:
    """Keeps one store under its limit from the store thread: after a write, one indexed
    sum; over the limit, ``drop_oldest`` down to ``LOW_WATER`` of it. Never raises: a
    failure here is logged (once per kind) and recording carries on."""

    def __init__(self, path: str) -> None:
        self.path = path
        #: (bytes kept, runs going) when dropping could not get under the limit: live runs
        #: hold the rest, so it is tried again once they change or a tenth of the limit more came
        self._stuck: tuple[int, frozenset[str]] | None = None
        self._warned: set[str] = set()

    def after_write(self, conn: sqlite3.Connection, results_dir: str | None,
                    running: Collection[str] = ()) -> Dropped | None:
        try:
            limit = _effective_limit(self.path, conn)
            if limit is None:
                return None
            kept = kept_bytes(conn)
            if kept <= limit:
                self._stuck = None
                return None
            going = frozenset(running)
            if self._stuck is not None and self._stuck[1] == going and kept < self._stuck[0] + limit * (1 - LOW_WATER):
                return None
            dropped = drop_oldest(conn, results_dir, limit, going, kept=kept)
            self._stuck = (kept - dropped.bytes, going) if kept - dropped.bytes > limit else None
            return dropped
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            if why not in self._warned:
                self._warned.add(why)
                log.warning("nbtasks: keeping the run store %s to its size limit failed (%s)", self.path, why,
                            exc_info=not isinstance(exc, ValueError))
            return None


def drop_oldest(conn: sqlite3.Connection, results_dir: str | None, limit: int,
                running: Collection[str] = (), kept: int | None = None) -> Dropped:
    """Drop the results of the oldest runs (their records stay) until the store holds at most
    ``LOW_WATER`` of ``limit``; ``running`` and live runs keep theirs, and so does any result
    that a newer or live run also names."""
    kept = kept_bytes(conn) if kept is None else kept
    if kept <= limit:
        return Dropped(0, 0, 0)
    target = int(limit * LOW_WATER)
    now = time.time()
    keep = set(running) | _live_runs(conn, now)
    protected = json.dumps(sorted(keep))
    runs = conn.execute("SELECT id, submitted FROM runs ORDER BY submitted, id").fetchall()
    freed = blobs = touched = 0
    files: set[str] = set()
    with conn:
        for run_id, submitted in runs:
            if kept - freed <= target:
                break
            if run_id in keep:
                continue
            rows = conn.execute(
                "SELECT b.id, b.size, b.path FROM blobs b WHERE b.dropped IS NULL AND b.id IN "
                "(SELECT blob FROM parts WHERE run = ?1 UNION SELECT result_blob FROM runs WHERE id = ?1) "
                "AND NOT EXISTS (SELECT 1 FROM parts p JOIN runs r ON r.id = p.run WHERE p.blob = b.id "
                "AND p.run != ?1 AND ((r.submitted, r.id) > (?2, ?1) OR r.id IN (SELECT value FROM json_each(?3))))",
                (run_id, submitted, protected)).fetchall()
            if not rows:
                continue
            conn.execute("UPDATE blobs SET data = NULL, dropped = ? WHERE id IN (SELECT value FROM json_each(?))",
                         (now, json.dumps([r[0] for r in rows])))
            touched += 1
            blobs += len(rows)
            for _, size, path in rows:
                if path is None:
                    freed += size
                elif path not in files and conn.execute(
                        "SELECT 1 FROM blobs WHERE dropped IS NULL AND path = ? LIMIT 1", (path,)).fetchone() is None:
                    files.add(path)
                    freed += size
    _remove_files(results_dir, files)
    _give_back(conn, keep_free=limit - target, at_most=GIVE_BACK_PAGES)
    log.info("nbtasks: the run store passed its size limit (%s); the results of its %d oldest run(s) "
             "were dropped (%s), their records kept", format_size(limit), touched, format_size(freed))
    return Dropped(touched, blobs, freed)


def _remove_files(results_dir: str | None, names: Collection[str]) -> int:
    removed = 0
    if results_dir is None:
        return 0
    for name in names:
        target = os.path.join(results_dir, name)
        try:
            size = os.path.getsize(target)
            os.remove(target)
            removed += size
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("nbtasks: could not remove the stored result %s: %s", target, exc)
    return removed


def _give_back(conn: sqlite3.Connection, keep_free: int = 0, at_most: int | None = None) -> None:
    """Return free database pages to the disk beyond ``keep_free`` bytes (later writes reuse
    those), ``STEP_PAGES`` at a time so kernels' writes get the lock in between; at most
    ``at_most`` pages. A store made before incremental vacuum is vacuumed whole only when it
    is small (that rewrites the file and blocks kernels' writes meanwhile)."""
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    extra = conn.execute("PRAGMA freelist_count").fetchone()[0] - keep_free // page
    if at_most is not None:
        extra = min(extra, at_most)
    if extra <= 0:
        return
    mode = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
    if mode == 2:  # incremental; executescript steps it to the end (execute() frees one page)
        while extra > 0:
            conn.executescript(f"PRAGMA incremental_vacuum({min(extra, STEP_PAGES)});")
            extra -= STEP_PAGES
    elif at_most is None and conn.execute("PRAGMA page_count").fetchone()[0] * page <= VACUUM_AT_MOST:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # VACUUM applies it: next time is cheap
        conn.execute("VACUUM")
    else:
        return
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # the file shrinks when the log is copied back
    except sqlite3.Error:
        pass


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
    live = _live_runs(conn, now)
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
        freed += _remove_files(results_dir, files - kept)
    _give_back(conn)
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
