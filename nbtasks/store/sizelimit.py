"""The size limit of the run store's results, kept from the store thread.

    store thread ── after it writes ──> SizeLimit.after_write ── kept_bytes over the limit?
                                            └──> drop_oldest: the oldest runs' results, records kept

A result (a ``blobs`` row, its bytes in the database or in a file in ``<store>-results/``)
may serve several runs: a later run that reused units names the same blob. It counts as
young as the newest run that names it, so dropping the oldest runs' results never takes
what a newer run still uses. A dropped blob keeps its row (``dropped`` set to the time,
``data`` NULL, its file deleted once no kept blob names it), so the runs, parts and
failures that name it stay readable; ``blobs.dropped`` is the one sign that its data is
gone (reuse skips it and those units run again). Live runs keep their results, and the
results they share with older runs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from typing import Collection

from .amounts import format_size, parse_size
from .location import MEMORY
from .reader import IS_LIVE, LIVE_RUN_STATES, STALE_AFTER

__all__ = ["LIMIT_ENV", "DEFAULT_LIMIT", "LOW_WATER", "META_KEY", "SizeLimit", "Dropped", "drop_oldest",
           "kept_bytes", "effective_limit", "limit_value", "default_limit", "live_runs", "remove_files",
           "give_back"]

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
_NO_LIMIT = ("none", "off", "unlimited", "no")
#: where the store keeps its own limit (``set_size_limit``), in its ``meta`` table
META_KEY = "size_limit"


@dataclass(frozen=True)
class Dropped:
    """What one pass of the size limit dropped (records kept)."""
    runs: int
    blobs: int
    bytes: int


def limit_value(value: "int | float | str") -> int | None:
    """Bytes from a limit as written (``"5GB"``, ``1e9``); None for ``"none"`` (no limit)."""
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


def stored_limit(conn: sqlite3.Connection) -> "tuple[bool, int | None]":
    """(whether the store has a limit of its own, that limit)."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (META_KEY,)).fetchone()
    except sqlite3.Error:
        return False, None
    if row is None:
        return False, None
    return True, (None if row[0] == "none" else int(row[0]))


def effective_limit(path: str, conn: sqlite3.Connection | None) -> int | None:
    env = os.environ.get(LIMIT_ENV)
    if env:
        try:
            return limit_value(env)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"${LIMIT_ENV}: {exc}") from None
    if conn is not None:
        has, limit = stored_limit(conn)
        if has:
            return limit
    return default_limit(path)


_KEPT_BYTES = ("SELECT (SELECT coalesce(sum(size), 0) FROM blobs WHERE dropped IS NULL AND path IS NULL) + "
               "(SELECT coalesce(sum(size), 0) FROM (SELECT max(size) AS size FROM blobs "
               "WHERE dropped IS NULL AND path IS NOT NULL GROUP BY path))")


def kept_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of results kept (a file several blobs name counts once); read from the index
    ``blobs_kept``, so it costs ~2 ms at 20,000 results, not a read of the results."""
    return conn.execute(_KEPT_BYTES).fetchone()[0]


def live_runs(conn: sqlite3.Connection, now: float) -> set[str]:
    return {r[0] for r in conn.execute(f"SELECT id FROM runs WHERE {IS_LIVE} AND updated >= ?",
                                       (*LIVE_RUN_STATES, now - STALE_AFTER))}


#: the sum of kept bytes is taken again once this process wrote this share of the limit
#: since the last one, or ``CHECK_EVERY`` seconds passed (other kernels write too)
CHECK_SHARE = 0.01
CHECK_EVERY = 60.0


class SizeLimit:
    """Keeps one store under its limit from the store thread: after a write of enough
    bytes, one indexed sum (~2 ms at 20,000 results: not after every run of a loop of small
    ones); over the limit, ``drop_oldest`` down to ``LOW_WATER`` of it. Never raises: a
    failure here is logged (once per kind) and recording carries on."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._checked: tuple[float, int] | None = None  # (when, bytes written by then)
        #: (bytes kept, runs going) when dropping could not get under the limit: live runs
        #: hold the rest, so it is tried again once they change or a tenth of the limit more came
        self._stuck: tuple[int, frozenset[str]] | None = None
        self._warned: set[str] = set()

    def after_write(self, conn: sqlite3.Connection, results_dir: str | None,
                    running: Collection[str] = (), written: int | None = None) -> Dropped | None:
        """``written``: bytes of results this process wrote so far (None: check now)."""
        try:
            limit = effective_limit(self.path, conn)
            if limit is None:
                return None
            now = time.monotonic()
            if written is not None and self._checked is not None:
                when, then = self._checked
                if written - then < limit * CHECK_SHARE and now - when < CHECK_EVERY:
                    return None
            self._checked = (now, written or 0)
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
    keep = set(running) | live_runs(conn, now)
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
    remove_files(results_dir, files)
    give_back(conn, keep_free=limit - target, at_most=GIVE_BACK_PAGES)
    log.info("nbtasks: the run store passed its size limit (%s); the results of its %d oldest run(s) "
             "were dropped (%s), their records kept", format_size(limit), touched, format_size(freed))
    return Dropped(touched, blobs, freed)


def remove_files(results_dir: str | None, names: Collection[str]) -> int:
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


def give_back(conn: sqlite3.Connection, keep_free: int = 0, at_most: int | None = None) -> None:
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
