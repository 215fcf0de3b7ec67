"""The kernel's side of the store: records runs as they go, finds finished units.

    dispatch thread ── record(part) ──> queue ──> [nbtasks-store thread] ── SQLite (WAL)
                    <── reuse(key) ── reads on its own connection
    server (POST cancel) ── runs.cancel_requested ──> store thread ── run.cancel()

Writing happens on one thread, in batches, so a run never waits for the
disk; a lookup that needs parts still in the queue waits for them. A store
that cannot be written (read-only place, full disk) degrades to memory with
a warning, and runs carry on.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
import warnings
import weakref
from array import array
from typing import Any

from ..core.freeing import give_back_free_memory
from ..core.serialize import Pickled, dump, find_unpicklable, split
from ..core.explain import Reasons
from ..core.fingerprint import UNIT_DIGEST, unit_digest_pieces, unit_digests, unit_digests_if_changeable
from .housekeeping import SizeLimit
from .keys import leaf_digest, request_key
from .lookup import Found, Leaf, fresh_reason, look_up
from .location import MEMORY, resolve
from .results import UnpicklableResult
from .rows import Tracked, write_cluster, write_run
from .schema import connect, open_database

__all__ = ["Store", "Found"]

log = logging.getLogger("nbtasks")

SYNC_EVERY = 0.5    # seconds between two writes of live runs' counts (and cancel checks)
WRITE_EVERY = 1.0   # seconds finished units may wait for the runs to pause before they are written
LARGE = 1 << 20     # result blobs bigger than this go to files beside the database
#: seconds a run's end waits to be written, and anything else after a run starts, unless
#: someone waits for it: in a loop of runs the last run's end was written as the next one
#: sent its first chunks, and delayed them (~1.5 ms of a 1 s run of 40 units on 2 cores);
#: the first chunks are out within ~3 ms, and 50 ms held 20 waves of 100,000 units' results
#: longer (client RSS +30 MB, not +22)
START_QUIET = 0.02


_FINISHED = object()  # queued when a run ends: write its final state now


class Store:
    """Records runs into one store file; one instance per path per process."""

    _instances: dict[str, "Store"] = {}
    _instances_lock = threading.Lock()

    @classmethod
    def at(cls, where: "str | os.PathLike[str] | None" = None) -> "Store":
        path = resolve(where)
        with cls._instances_lock:
            store = cls._instances.get(path)
            if store is None or store._closed:
                store = cls._instances[path] = cls(path)
            return store

    @classmethod
    def written(cls, where: "str | os.PathLike[str] | None" = None) -> None:
        """Wait until what this process queued for the store at ``where`` is written
        (so a reader in this process sees its runs); nothing if it records none there."""
        with cls._instances_lock:
            store = cls._instances.get(resolve(where))
        if store is not None and not store._closed:
            store.flush()

    def __init__(self, path: str) -> None:
        self.path = path
        self.warning: str | None = None  # why this store keeps its records in memory only
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        #: finished parts: they wake nobody (the store thread looks every ``SYNC_EVERY``, and
        #: at once when a run ends or someone flushes); a wake-up per chunk took engines' CPU
        self._parts: collections.deque = collections.deque()
        self._first_part: float | None = None  # when the oldest part not yet taken came
        self._started = float("-inf")  # when the last run tracked here started (``START_QUIET``)
        self._runs: dict[str, Tracked] = {}
        self._runs_lock = threading.Lock()
        self._clusters: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._pending: collections.Counter[str] = collections.Counter()  # request key -> parts queued
        self._pending_lock = threading.Lock()
        self._leaves: dict[tuple, Leaf] = {}  # (run, node) -> the leaf its requests ran
        #: (run, leaf key) whose leaf row is written, (run, request key) whose units are
        self._noted: set[tuple[str, str]] = set()
        #: outcome id -> (outcome, blob id) within one batch: a chunk's parts share one blob
        self._blobs: dict[int, tuple[Any, int]] = {}
        self._written = 0  # bytes of results written by this process (the size limit checks by them)
        self._closed = False
        self._lock = threading.Lock()  # guards the connections when they are one (memory)
        self._read_lock = threading.Lock()
        self._open(path)
        self._thread = threading.Thread(target=self._loop, name="nbtasks-store", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- opening and degrading ----------------------------------------------------------
    def _open(self, path: str) -> None:
        try:
            self._write = open_database(path)
            self._read = self._write if path == MEMORY else connect(path)
        except (sqlite3.Error, OSError) as exc:
            self._degrade(exc)

    def _degrade(self, exc: BaseException) -> None:
        """Carry on in memory; say so once."""
        self.warning = (f"nbtasks: the run store {self.path} cannot be written ({exc}); "
                        "runs are recorded in memory only for this session")
        log.warning(self.warning)
        warnings.warn(self.warning, RuntimeWarning, stacklevel=2)
        self._write = open_database(MEMORY)
        self._read = self._write
        self._noted.clear()
        with self._runs_lock:
            for tracked in self._runs.values():
                tracked.written, tracked.failures = None, 0

    def _guard(self) -> Any:
        """The lock for a store whose one connection serves both threads (memory)."""
        return self._lock if self.in_memory else contextlib.nullcontext()

    @property
    def in_memory(self) -> bool:
        return self._read is self._write

    @property
    def results_dir(self) -> str | None:
        """Where results too large for the database go (beside it)."""
        return None if self.in_memory else self.path + "-results"

    # -- what core calls (dispatch thread) ------------------------------------------------
    def lookup(self, request: Any, reuse: bool) -> tuple[list[Found], dict[str, int]]:
        """Key ``request``; with ``reuse``, the units an earlier run finished and why the
        others run (see ``lookup.py``)."""
        n = len(request.inputs)
        leaf = self._leaf(request)
        request.leaf = None if leaf is None else leaf.key
        request.key = None if leaf is None else request_key(leaf.digest, request.inputs)
        if request.key is None:
            return [], {Reasons.UNKEYED: n}
        if n > 1:  # inputs that can change (a dict, a file) are digested as the units get them
            request.digests = unit_digests_if_changeable(request.inputs)
        if not reuse:
            return [], {}
        with self._pending_lock:
            pending = self._pending.get(request.key, 0) + self._pending.get(leaf.key, 0)
        if pending:
            self.flush()
        try:
            with self._read_lock, self._guard():  # dispatch threads of several clusters
                found, why, fresh = look_up(self._read, request, leaf, self._load)
            if fresh:
                if leaf.fresh is None:  # once per run and leaf: earlier runs' records written first
                    self.flush()
                    with self._read_lock, self._guard():
                        leaf.fresh = fresh_reason(self._read, leaf)
                why[leaf.fresh] = why.get(leaf.fresh, 0) + fresh
            return found, why
        except sqlite3.Error:
            log.warning("nbtasks: reading the run store failed; running every unit", exc_info=True)
            return [], {"the run store could not be read": n}

    def _leaf(self, request: Any) -> Leaf | None:
        """The request's leaf, once per run and node: code, parameters, shared values."""
        ident = (request.run.id, request.node.id)
        leaf = self._leaves.get(ident)
        if leaf is None:
            try:
                parts: dict[str, Any] = {}
                digest = leaf_digest(request.node.task, request.mode, request.params, request.extra, parts)
                backend = request.run.backend  # a core.run.Backend
                shared = backend.shared_digests() if backend is not None else {}
                h = hashlib.blake2b(digest_size=16)  # results may read shared values (nt.shared)
                for name, value in shared.items():
                    h.update(name.encode() + b"\0" + value)
                parts["shared"] = {name: value[:8].hex() for name, value in shared.items()}
                digest += h.digest()
            except Exception:
                log.debug("nbtasks: no key for %r", request.node.name, exc_info=True)
                return None
            leaf = self._leaves[ident] = Leaf(digest, digest.hex(), request.node.name, parts)
        return leaf

    def _load(self, data: bytes | None, path: str | None) -> Any:
        try:
            if data is None:  # into memory of its own: arrays are rebuilt on it, writable
                with open(os.path.join(self.path + "-results", path), "rb") as f:
                    data = bytearray(os.fstat(f.fileno()).st_size)
                    f.readinto(data)
            return Pickled.from_bytes(data).loads()
        except Exception as exc:  # a class that is gone, a file removed: run those units again
            log.info("nbtasks: a stored result cannot be read (%s); its units run again", exc)
            return None

    def track(self, run: Any) -> None:
        """Record ``run`` from now until it is finished (and its cluster's engines)."""
        with self._runs_lock:
            self._runs[run.id] = Tracked(run)
        self._started = time.monotonic()
        run.add_done_callback(lambda _: self._queue.put(_FINISHED))  # record its end at once
        if run.backend is not None and hasattr(run.backend, "engines_status"):
            self._clusters.add(run.backend)

    def watch(self, cluster: Any) -> None:
        """Report ``cluster``'s engines (busy or idle) while it runs."""
        self._clusters.add(cluster)

    def record(self, run: Any, part: Any, payload: Pickled | None = None, blob: int | None = None) -> None:
        """Queue a finished part of a chunk (``payload``: the chunk's pickled outcome, which
        no one changes any more, or ``blob``: the stored one it was taken from)."""
        req = part.request
        if req.key is not None:
            with self._pending_lock:
                self._pending[req.key] += 1
                self._pending[req.leaf] += 1  # a later lookup of the leaf waits for it too
        if self._first_part is None:
            self._first_part = time.monotonic()
        self._parts.append((run.id, part, payload, blob))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is written."""
        if threading.current_thread() is self._thread:
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self) -> None:
        if not self._closed:
            self.flush(10.0)
            self._closed = True
            self._queue.put(None)

    # -- the store thread -------------------------------------------------------------------
    def _loop(self) -> None:
        """Counts of live runs go out every ``SYNC_EVERY``; finished units wait until no
        run is going (or ``WRITE_EVERY`` at most), so writing them does not compete with
        a run for the client's CPU. Nobody waiting, nothing is written ``START_QUIET``
        after a run starts or ends (``_quiet_until``): in a loop of runs the next one would
        be starting."""
        last_sync = 0.0
        trim = False
        parts: list[tuple] = []
        since = 0.0  # when the oldest part in ``parts`` came
        ended: float | None = None  # when a run ended whose final state is not written yet
        size_limit = SizeLimit(self.path)  # housekeeping: results stay under the store's size limit
        while True:
            wrote = False
            wait = SYNC_EVERY
            oldest = self._first_part if not parts else since
            if oldest is not None:  # parts wait at most WRITE_EVERY, though nothing wakes this thread
                wait = max(0.0, min(wait, oldest + WRITE_EVERY - time.monotonic()))
            if ended is not None:
                wait = max(0.0, min(wait, self._quiet_until(ended, since if parts else None) - time.monotonic()))
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = ()
            items = [item]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            first, self._first_part = self._first_part, None
            while self._parts:  # after the queue: parts recorded before a flush or an end are in
                items.append(self._parts.popleft())
            now = time.monotonic()
            fresh = [i for i in items if isinstance(i, tuple) and i]
            if fresh and not parts:
                since = min(now, first if first is not None else now)
            parts += fresh
            if any(i is None for i in items):
                self._write_batch(parts, True)
                return
            flushes = [i for i in items if isinstance(i, threading.Event)]
            if _FINISHED in items and ended is None:
                ended = now
            sync = bool(flushes) or ended is not None or now - last_sync >= SYNC_EVERY
            # a run that ends gets its units written with its final state: a reader never sees
            # it done without them (while another run goes on, say)
            write = bool(flushes) or ended is not None or now - since >= WRITE_EVERY or not self._busy()
            if not flushes and now < self._quiet_until(ended, since if parts else None):
                sync = write = False
            ending = sync and ended is not None
            if sync:
                ended = None
            if parts and write:
                self._write_batch(parts, sync)
                parts = []
                trim = not self._busy()
                wrote = True
            elif sync:
                self._write_batch([], True)
            if sync:
                last_sync = now
                self._check_cancels()
            if wrote or ending:  # over the limit: the oldest runs' results go, not this kernel's
                with self._runs_lock:
                    running = list(self._runs)
                with self._guard():
                    size_limit.after_write(self._write, self.results_dir, running, self._written)
            # hold nothing written while waiting for more: a part holds its run, and a run
            # every result of it (arrays, maybe GBs)
            item = items = fresh = None
            if trim:
                give_back_free_memory()  # the payloads just written are freed
                trim = False
            for done in flushes:
                done.set()

    def _quiet_until(self, ended: float | None, oldest: float | None) -> float:
        """Until when writes wait (``START_QUIET``): a run's end ``START_QUIET`` after it
        (the next run of a loop sends its first chunks meanwhile; however many start, this
        is no later: short runs in a loop would hold their results), anything else until
        ``START_QUIET`` after the last run's start, ``WRITE_EVERY`` at most after the
        ``oldest`` part waiting came."""
        if ended is not None:
            return ended + START_QUIET
        return min(self._started + START_QUIET, (oldest or float("inf")) + WRITE_EVERY)

    def _busy(self) -> bool:
        with self._runs_lock:
            return any(not t.run.done() for t in self._runs.values())

    def _write_batch(self, parts: list[tuple], sync: bool) -> None:
        try:
            self._transaction(parts, sync)
        except (sqlite3.Error, OSError) as exc:
            if self.in_memory:
                log.exception("nbtasks: the in-memory run store failed")
            else:
                self._degrade(exc)
                try:
                    self._transaction(parts, sync)
                except Exception:
                    log.exception("nbtasks: the in-memory run store failed")
        except Exception:  # a bug here must not stop recording
            log.exception("nbtasks: recording runs failed")
        finally:
            if parts:
                with self._pending_lock:
                    for _, part, _, _ in parts:
                        if part.request.key is not None:
                            for key in (part.request.key, part.request.leaf):
                                self._pending[key] -= 1
                                if self._pending[key] <= 0:
                                    del self._pending[key]

    def _transaction(self, parts: list[tuple], sync: bool) -> None:
        with self._guard():
            conn = self._write
            try:
                with conn:
                    for run_id, part, payload, blob in parts:
                        self._write_part(conn, run_id, part, payload, blob)
                    if sync:
                        self._sync_runs(conn)
                        self._sync_clusters(conn)
            finally:
                self._blobs.clear()  # hold no outcome past its batch

    def _blob(self, conn: sqlite3.Connection, outcome: Any, payload: Pickled | None) -> int:
        """Store a chunk's outcome once, however many parts it has (``payload``: as it
        came from the engine; None: pickle it now). Its big buffers (arrays) are written
        after the pickle as they are (``Pickled.chunks``), never copied into it."""
        known = self._blobs.get(id(outcome))
        if known is not None and known[0] is outcome:
            return known[1]
        if payload is None:
            payload = split(outcome)
        chunks = payload.chunks()
        size = sum(memoryview(c).nbytes for c in chunks)
        self._written += size
        if size > LARGE and self.results_dir is not None:
            digest = hashlib.blake2b(digest_size=20)
            for c in chunks:
                digest.update(c)
            name = digest.hexdigest() + ".pkl"
            os.makedirs(self.results_dir, exist_ok=True)
            target = os.path.join(self.results_dir, name)
            if not os.path.exists(target):
                tmp = f"{target}.{os.getpid()}.tmp"
                with open(tmp, "wb") as f:
                    f.writelines(chunks)
                os.replace(tmp, target)
            blob = conn.execute("INSERT INTO blobs (size, path) VALUES (?, ?)", (size, name)).lastrowid
        else:
            data = b"".join(chunks)
            blob = conn.execute("INSERT INTO blobs (size, data) VALUES (?, ?)", (size, data)).lastrowid
        self._blobs[id(outcome)] = (outcome, blob)
        return blob

    def _write_part(self, conn: sqlite3.Connection, run_id: str, part: Any, payload: bytes | None,
                    blob: int | None) -> None:
        req, out, off = part.request, part.outcome, part.offset
        n = part.stop - part.start
        if blob is None:
            blob = self._blob(conn, part.outcome, payload)
        skip = sorted(set(part.unit_errors) | set(part.again))
        attempts = {}
        if req.tries:
            for pos in range(n):
                tries = req.tries.get(part.start + pos)
                if tries:
                    attempts[pos] = 1 + sum(tries.values())
        ends = array("d", [out.ends[off - 1] if off else 0.0])
        ends.extend(out.ends[off: off + n])
        texts: dict[int, list[str]] = {}
        for marks, which, text in ((out.out_marks, 0, out.stdout), (out.err_marks, 1, out.stderr)):
            for j, a, b in marks:
                if off <= j < off + n:
                    texts.setdefault(j - off, ["", ""])[which] = text[a:b]
        stdout, stderr, marks = [], [], []
        o = e = 0
        for pos, (so, se) in sorted(texts.items()):
            marks.append([pos, o, o + len(so), e, e + len(se)])
            stdout.append(so)
            stderr.append(se)
            o, e = o + len(so), e + len(se)
        label = req.unit if req.unit is not None and len(req.inputs) == 1 else None
        if req.key is not None:
            self._note_request(conn, run_id, req)
        conn.execute(
            "INSERT INTO parts (run, node, task, request_key, leaf_key, request_seq, start, stop, offset, label, "
            "done, skip, attempts, engine, host, pid, t0, ends, stdout, stderr, marks, blob) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, req.node.id, req.node.name, req.key or "", req.leaf, req.seq, part.start, part.stop, off, label,
             n - len(skip), json.dumps(skip), json.dumps(attempts), part.engine, out.host, out.pid, out.t0,
             ends.tobytes(), "".join(stdout), "".join(stderr), json.dumps(marks), blob))

    def _note_request(self, conn: sqlite3.Connection, run_id: str, req: Any) -> None:
        """The leaf a part ran (what it was made of, for a later run's explanation) and, for
        a request of many units, each unit's input digest (found again in a changed list);
        once per request, here on the store thread, never on a run's path."""
        leaf = self._leaves.get((run_id, req.node.id))
        if leaf is not None and (run_id, leaf.key) not in self._noted:
            conn.execute("INSERT INTO leaves (key, task, parts, seen) VALUES (?, ?, ?, ?) ON CONFLICT (key) "
                         "DO UPDATE SET seen = excluded.seen", (leaf.key, leaf.task, json.dumps(leaf.parts),
                                                                  time.time()))
            self._noted.add((run_id, leaf.key))
        if len(req.inputs) > 1 and req.leaf is not None and (run_id, req.key) not in self._noted:
            if conn.execute("SELECT 1 FROM requests WHERE key = ?", (req.key,)).fetchone() is None:
                _write_digests(conn, req)
            self._noted.add((run_id, req.key))

    def _sync_runs(self, conn: sqlite3.Connection) -> None:
        now = time.time()
        with self._runs_lock:
            tracked = list(self._runs.values())
        for t in tracked:
            run = t.run
            settled = run.settled  # before the snapshot: a run finishing in between is written next time
            state = write_run(conn, t, now)
            if state == "done" and not t.result_written and run.done():  # done(): its result is set
                self._write_result(conn, run)
                t.result_written = True
            if settled and t.written is not None and t.written[0] == state:
                with self._runs_lock:
                    self._runs.pop(run.id, None)
                for ident in [k for k in self._leaves if k[0] == run.id]:
                    del self._leaves[ident]
                self._noted -= {k for k in self._noted if k[0] == run.id}

    def _write_result(self, conn: sqlite3.Connection, run: Any) -> None:
        """The run's result, pickled like chunk outcomes, for a later kernel (``nt.runs``);
        one that cannot be pickled is kept as what says why."""
        result = run.result(0)
        try:
            payload = dump(result, f"the result of run {run.id}")
        except Exception as exc:
            path, culprit = find_unpicklable(result)
            result = UnpicklableResult(f"{type(culprit).__name__} object{f' ({path})' if path else ''} cannot be "
                                       f"pickled: {exc.__cause__ or exc}")
            payload = split(result)
        conn.execute("UPDATE runs SET result_blob = ? WHERE id = ?", (self._blob(conn, result, payload), run.id))

    def _sync_clusters(self, conn: sqlite3.Connection) -> None:
        """Engines of the clusters this kernel uses; a stopped cluster's row goes away."""
        now = time.time()
        for cluster in list(self._clusters):
            if not write_cluster(conn, cluster, now):
                self._clusters.discard(cluster)

    def _check_cancels(self) -> None:
        """Cancel the runs someone asked to cancel through the server."""
        with self._runs_lock:
            live = [t.run for t in self._runs.values() if not t.run.done()]
        if not live:
            return
        marks = ",".join("?" * len(live))
        try:
            with self._guard():
                rows = self._write.execute(
                    f"SELECT id, cancel_reason FROM runs WHERE cancel_requested IS NOT NULL AND id IN ({marks})",
                    [r.id for r in live]).fetchall()
        except sqlite3.Error:
            return
        wanted = dict(rows)
        for run in live:
            if run.id in wanted:
                run.cancel(wanted[run.id] or "cancelled from JupyterLab")


def _write_digests(conn: sqlite3.Connection, req: Any) -> None:
    """A request's unit digests, as taken at its lookup or, for inputs that cannot change,
    now, written into the row a piece at a time (``unit_digest_pieces``)."""
    if req.digests is not None or not hasattr(conn, "blobopen"):  # blobopen: Python 3.11+
        conn.execute("INSERT INTO requests (key, leaf_key, units) VALUES (?, ?, ?)",
                     (req.key, req.leaf, req.digests or unit_digests(req.inputs)))
        return
    row = conn.execute("INSERT INTO requests (key, leaf_key, units) VALUES (?, ?, zeroblob(?))",
                       (req.key, req.leaf, UNIT_DIGEST * len(req.inputs))).lastrowid
    with conn.blobopen("requests", "units", row) as blob:
        for piece in unit_digest_pieces(req.inputs):
            blob.write(piece)
