"""The dispatch thread: cuts unit requests into chunks and keeps engines busy.

    Run ──start_run──> inbox ──> [dispatch thread] ── Evaluation (core)
                                   │   UnitRequest ─> Stream (per run × leaf)
                                   │   Stream ─cut─> Chunk ─apply_async─> engine k
    engine reply ─ipyparallel IO thread─> inbox ("done", chunk)

One thread owns all mutable dispatch state (streams, slots, counters), so
nothing here takes a lock; other threads only put messages in the inbox.
Chunks go to a chosen engine through a DirectView (not ipyparallel's task
scheduler): we know where every unit is, which is what cancel and engine
loss need, and a small per-engine queue (``depth``) hides the round trip.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import queue
import signal
import threading
import time
from typing import Any, Callable, Protocol

from ..core.errors import RemoteTraceback, Retry, UnitError
from ..core.evaluate import Evaluation, UnitRequest
from ..core.records import ChunkRecord
from ..core.run import Run
from ..core.serialize import dumps, loads
from ..core.unitexec import ChunkOutcome, UnitFailure
from .errors import ClusterStopped, EngineUnfit
from .engine import PROGRESS_KEY, UNITS_KEY, probe, run_chunk
from .limits import Limits
from .streams import Chunk, Stream


class EnginePool(Protocol):
    """What the dispatcher needs from its cluster (``Cluster`` is one)."""

    client: Any  # an ipyparallel Client
    engine_info: dict[int, dict[str, Any]]  # engine id -> host, pid

    def ensure_started(self) -> None:
        """Start the cluster if it is not (raises if it cannot)."""

    def keep_size(self) -> None:
        """Replace dead engines of a cluster nbtasks started (called every round)."""

    def usable_engines(self) -> list[int]:
        """Engines that may take chunks now (registered and checked)."""

log = logging.getLogger("nbtasks")

__all__ = ["Dispatcher"]

HANDBACKS = 10  # times a unit may hand itself back with nt.Retry before it counts as failed
BACKOFF = 0.1  # seconds before the first re-run of a unit that raised; doubles each time
MAX_BACKOFF = 30.0
DEATH_GRACE = 0.1  # seconds to wait for the last units an engine sent before it died
PROBE_AFTER = 2.0  # seconds a chunk may be out before its engine is asked whether it lost the reply


def _ranges(indices: list[int]) -> list[tuple[int, int]]:
    """Sorted indices as half-open ranges: [1, 2, 3, 7] -> [(1, 4), (7, 8)]."""
    out: list[tuple[int, int]] = []
    for i in indices:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def _engine_data(chunk: Chunk) -> dict:
    """What the engine published while running ``chunk`` (progress, finished units).

    The AsyncResult keeps its own reference to the message's metadata, which the
    client drops from ``client.metadata`` once the reply is in; we need it after
    that too (an engine that died)."""
    try:
        return chunk.ar.metadata.get("data") or {}
    except (AttributeError, IndexError, TypeError):
        return {}


class ReplyLost(Exception):
    """An engine will never answer this chunk (it answered a later one)."""


class Dispatcher:
    depth = 2  # chunks queued per engine: one running, one ready to start

    def __init__(self, cluster: EnginePool) -> None:
        self.cluster = cluster
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.streams: collections.deque[Stream] = collections.deque()
        self.stream_of: dict[tuple[str, int], Stream] = {}
        self.evaluations: dict[str, Evaluation] = {}
        self.flight: dict[int, list[Chunk]] = collections.defaultdict(list)  # engine -> chunks, oldest first
        self.limits = Limits()
        #: heap of (ready time, seq, stream, request, index): units waiting out a backoff
        self.delayed: list[tuple[float, int, Stream, UnitRequest, int]] = []
        #: (when, chunk, error): chunks whose engine died, handled after a short grace
        self.dying: list[tuple[float, Chunk, BaseException]] = []
        self._ids = itertools.count()
        self._views: dict[int, Any] = {}
        self.units_done: collections.Counter[int] = collections.Counter()  # per engine, for display
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    # -- called from any thread ---------------------------------------------------
    def start(self) -> None:
        """Start the dispatch thread (idempotent); it also keeps a local cluster's size."""
        with self._lock:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._loop, name="nbtasks-dispatch", daemon=True)
                self._thread.start()

    def post(self, *message: Any) -> None:
        if self._stopped:
            raise ClusterStopped(f"{self.cluster!r} is stopped")
        self.start()
        self.inbox.put(message)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None and not self._stopped:
            self.inbox.put(("stop",))
            self._thread.join(timeout)
        self._stopped = True

    # -- the thread ---------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            waiting = bool(self.streams) or bool(self.delayed) or bool(self.dying) or any(self.flight.values())
            try:
                # idle, it still wakes now and then: dead engines get replaced
                message = self.inbox.get(timeout=(DEATH_GRACE if self.dying else 0.25) if waiting else 1.0)
            except queue.Empty:
                message = None
            messages = [] if message is None else [message]
            while True:  # drain, so a burst of replies schedules once
                try:
                    messages.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            for message in messages:
                if message[0] == "stop":
                    self._shutdown()
                    return
                try:
                    getattr(self, "_on_" + message[0])(*message[1:])
                except Exception:  # a bug here must not kill the thread and hang every run
                    log.exception("nbtasks dispatcher failed handling %s", message[0])
            try:
                self._interrupt_abandoned()
                self._probe_quiet_engines()
                self._poll_progress()
                self._release_delayed()
                self.cluster.keep_size()
                self._schedule()
            except Exception:
                log.exception("nbtasks dispatcher failed scheduling")

    def _on_run(self, run: Run) -> None:
        if run.done():  # cancelled before it got here
            run.release_prequeued(cancelled=True)
            return
        try:
            self.cluster.ensure_started()
        except Exception as exc:
            run.release_prequeued(cancelled=True)
            run.report_error(exc)
            return
        evaluation = Evaluation(run, self._enqueue, self._stop_run)
        self.evaluations[run.id] = evaluation
        evaluation.start()
        self._forget_if_over(evaluation)

    def _on_cancel(self, run: Run, reason: str) -> None:
        evaluation = self.evaluations.get(run.id)
        if evaluation is not None:
            evaluation.over = True
        self._stop_run(run, reason)

    def _on_done(self, chunk: Chunk) -> None:
        if chunk.lost:  # its reply was given up for lost; a late one changes nothing
            return
        chunks = self.flight.get(chunk.engine, [])
        if chunk in chunks:
            # an engine answers in order: chunks sent to it before this one that are
            # still waiting will never be answered (an interrupt can hit the reply)
            for older in chunks[: chunks.index(chunk)]:
                self._give_up(older, f"engine {chunk.engine} answered a later chunk first")
            chunks.remove(chunk)
            if chunks:
                self._started(chunks[0])  # the engine moves on to the chunk queued behind
        chunk.stream.in_flight -= 1
        self.limits.finished(chunk.stream.node.task, chunk.n)
        evaluation = chunk.stream.evaluation
        try:
            payload = chunk.ar.get(0)
        except Exception as exc:
            if getattr(exc, "ename", None) == "EngineError":
                # units the engine sent just before it died may still be on their way
                self.dying.append((time.monotonic() + DEATH_GRACE, chunk, exc))
            else:
                self._chunk_lost(chunk, exc)
            return
        finally:
            self._forget_message(chunk)
        outcome = loads(payload)
        chunk.stream.sizer.observe(min(len(outcome.values), len(outcome.ends)), outcome.busy)
        self._apply(chunk, outcome, payload, self._interrupted_rest)
        self._forget_if_over(evaluation)

    def _interrupted_rest(self, chunk: Chunk, request: UnitRequest, start: int, stop: int) -> None:
        """Units of a chunk stopped by a signal that was not meant for this run: again."""
        request.node.units.retry(stop - start, chunk.unit_state)
        self._requeue(chunk.stream, request, start, stop)

    def _apply(self, chunk: Chunk, outcome: Any, payload: bytes | None,
               rest: Callable[[Chunk, UnitRequest, int, int], None]) -> None:
        """Take a chunk's finished units (results, failures, re-runs, records);
        ``rest(chunk, request, start, stop)`` deals with the units it did not reach."""
        evaluation = chunk.stream.evaluation
        done_units = min(len(outcome.values), len(outcome.ends))
        self.units_done[chunk.engine] += done_units
        source = chunk.unit_state
        offset = 0
        for request, start, stop in chunk.parts:
            node = request.node
            n = stop - start
            finished = max(0, min(n, done_units - offset))
            if evaluation.over:  # from the start, or since a failure in an earlier part
                node.units.cancel(n, source)
                offset += n
                continue
            errors: dict[int, UnitError] = {}
            again: set[int] = set()  # positions that run again (retries, nt.Retry)
            for i in range(finished):
                item = outcome.errors.get(offset + i)
                if item is None:
                    request.results[start + i] = outcome.values[offset + i]
                elif self._run_again(chunk, request, start + i, item.exception):
                    again.add(i)
                else:
                    errors[i] = self._unit_error(request, start + i, item, chunk.engine, outcome)
            node.units.finish(finished - len(errors) - len(again), source)
            node.units.fail(len(errors), source)
            node.units.retry(len(again), source)
            request.failed += len(errors)
            request.remaining -= finished - len(again)
            if finished:
                evaluation.run.report_chunk(ChunkRecord(request, start, start + finished, chunk.engine,
                                                   outcome, offset, errors, again), payload)
            if finished < n:
                rest(chunk, request, start + finished, stop)
            offset += n
            for error in errors.values():
                evaluation.unit_failed(error)
                if evaluation.over:
                    break
            if request.remaining == 0 and not evaluation.over:
                evaluation.request_done(request)

    # -- helpers ------------------------------------------------------------------
    def _enqueue(self, request: UnitRequest) -> None:
        if request.remaining == 0:  # every unit came from the store: complete it next round
            self.inbox.put(("reused", request))
            return
        key = (request.run.id, request.node.id)
        stream = self.stream_of.get(key)
        if stream is None:
            stream = self.stream_of[key] = Stream(request.evaluation, request)
        if stream.pending == 0:
            self.streams.append(stream)
        for start, stop in request.todo or [(0, len(request.inputs))]:
            stream.add(request, start, stop)

    def _on_reused(self, request: UnitRequest) -> None:
        evaluation = request.evaluation
        if not evaluation.over:
            evaluation.request_done(request)
        self._forget_if_over(evaluation)

    @staticmethod
    def _started(chunk: Chunk) -> None:
        """Its units count as running once the engine gets to the chunk, not when it is
        queued there behind another: ``running`` stays about one chunk per engine."""
        if not chunk.started:
            chunk.started = True
            for request, start, stop in chunk.parts:
                request.node.units.start(stop - start)

    def _requeue(self, stream: Stream, request: UnitRequest, start: int, stop: int,
                 avoid: int | None = None) -> None:
        if stream.pending == 0:
            self.streams.append(stream)
        stream.add(request, start, stop, avoid, first=True)

    def _run_again(self, chunk: Chunk, request: UnitRequest, index: int, exc: BaseException | None) -> bool:
        """Whether a unit that raised runs again: handed back (nt.Retry, on another
        engine if there is one) or within its task's ``retries`` (after a backoff)."""
        task = request.node.task
        if isinstance(exc, Retry):
            if request.tried(index, "handback") > HANDBACKS:
                return False
            self._requeue(chunk.stream, request, index, index + 1, avoid=chunk.engine)
            return True
        if not task.retries or request.tried(index, "error") > task.retries:
            return False
        delay = min(MAX_BACKOFF, BACKOFF * 2 ** (request.tries[index]["error"] - 1))
        heapq.heappush(self.delayed, (time.monotonic() + delay, next(self._ids), chunk.stream, request, index))
        return True

    def _release_delayed(self) -> None:
        now = time.monotonic()
        while self.dying and self.dying[0][0] <= now:
            _, chunk, exc = self.dying.pop(0)
            self._chunk_lost(chunk, exc)
        while self.delayed and self.delayed[0][0] <= now:
            _, _, stream, request, index = heapq.heappop(self.delayed)
            if not stream.evaluation.over:
                self._requeue(stream, request, index, index + 1)

    def _chunk_lost(self, chunk: Chunk, exc: BaseException) -> None:
        """The chunk did not come back: engine died, interrupt, or it could not start."""
        evaluation = chunk.stream.evaluation
        ename = getattr(exc, "ename", type(exc).__name__)
        engine_died = ename in ("EngineError", "ReplyLost")
        sent = self._units_sent(chunk) if engine_died and not evaluation.over else None
        if sent is not None:  # what the engine finished before it died is not run again
            log.info("nbtasks: engine %s died; %d unit(s) of %r it finished are kept, the rest runs again",
                     chunk.engine, len(sent.values), chunk.stream.node.name)
            self._apply(chunk, sent, None, lambda c, r, a, b: self._run_elsewhere(c, r, a, b, ename))
            self._forget_if_over(evaluation)
            return
        source = chunk.unit_state
        if evaluation.over:
            for request, start, stop in chunk.parts:
                request.node.units.cancel(stop - start, source)
            self._forget_if_over(evaluation)
            return
        if ename not in ("KeyboardInterrupt", "EngineError", "TaskAborted", "ReplyLost"):
            for request, start, stop in chunk.parts:  # they never ran, and the run fails
                request.node.units.cancel(stop - start, source)
            # the engine could not even start the chunk (e.g. a module the task needs
            # is missing there): retrying elsewhere would fail the same way
            error = EngineUnfit(f"task {chunk.stream.node.name!r} could not run on engine {chunk.engine}: "
                                 f"{ename}: {getattr(exc, 'evalue', exc)}")
            tb = getattr(exc, "traceback", None)
            if tb:
                error.__cause__ = RemoteTraceback(tb)
            evaluation.fail(error)
            self._forget_if_over(evaluation)
            return
        log.info("nbtasks: re-queueing %d unit(s) of %r after %s", chunk.n, chunk.stream.node.name, exc)
        for request, start, stop in reversed(chunk.parts):
            if engine_died:
                self._run_elsewhere(chunk, request, start, stop, ename)
            elif evaluation.over:
                request.node.units.cancel(stop - start, source)
            else:
                request.node.units.retry(stop - start, source)
                self._requeue(chunk.stream, request, start, stop)

    def _run_elsewhere(self, chunk: Chunk, request: UnitRequest, start: int, stop: int, ename: str) -> None:
        """Units whose engine died run again, unless it was their ``max_engine_failures``-th."""
        limit = request.node.task.max_engine_failures
        units, source = request.node.units, chunk.unit_state
        keep = []
        for index in range(start, stop):
            if chunk.stream.evaluation.over:  # the run ended on an earlier unit's failure
                units.cancel(1, source)
            elif request.tried(index, "engine") >= limit:
                self._engine_failed_unit(chunk, request, index, limit, ename)
            else:
                keep.append(index)
        if chunk.stream.evaluation.over:
            units.cancel(len(keep), source)
            return
        units.retry(len(keep), source)
        for first, last in reversed(_ranges(keep)):
            self._requeue(chunk.stream, request, first, last)

    @staticmethod
    def _units_sent(chunk: Chunk) -> Any:
        """The units a chunk's engine sent back while running it (None if none)."""
        data = _engine_data(chunk)
        pieces = []
        for key, blob in list(data.items()):
            if key.startswith(UNITS_KEY):
                try:
                    pieces.append((int(key[len(UNITS_KEY):]), loads(blob)))
                except Exception:
                    log.debug("nbtasks: a unit piece could not be read", exc_info=True)
        return ChunkOutcome.join(pieces)

    def _engine_failed_unit(self, chunk: Chunk, request: UnitRequest, index: int, limit: int,
                            ename: str) -> None:
        """A unit whose engine died ``limit`` times fails instead of looping."""
        evaluation = chunk.stream.evaluation
        where = self.cluster.engine_info.get(chunk.engine, {})  # the dead engine, as it was checked in
        error = UnitError(request.node.name, request.label(index), request.inputs[index],
                          f"{ename}: the engine running this unit died {limit} times "
                          f"(max_engine_failures={limit})", "", chunk.engine, where.get("host"), where.get("pid"))
        error.node_id = request.node.id
        request.node.units.fail(1, chunk.unit_state)
        request.failed += 1
        request.remaining -= 1
        evaluation.run.report_unit_failure(error)
        evaluation.unit_failed(error)
        if request.remaining == 0 and not evaluation.over:
            evaluation.request_done(request)

    def _unit_error(self, request: UnitRequest, index: int, failure: UnitFailure, engine: int,
                    outcome: ChunkOutcome) -> UnitError:
        tb, exc = failure.traceback, failure.exception
        error = UnitError(request.node.name, request.label(index), request.inputs[index], failure.summary, tb,
                          engine, outcome.host, outcome.pid, exc)
        error.node_id = request.node.id
        if exc is not None:
            if tb:
                exc.__cause__ = RemoteTraceback(tb)
            error.__cause__ = exc
        elif tb:
            error.__cause__ = RemoteTraceback(tb)
        return error

    def _stop_run(self, run: Run, reason: str) -> None:
        """Drop a run's queued units and interrupt its running ones."""
        for key in [k for k in self.stream_of if k[0] == run.id]:
            stream = self.stream_of.pop(key)
            for request, start, stop, _ in stream.segments:
                request.node.units.cancel(stop - start)
            stream.segments.clear()
            stream.pending = 0
        self.streams = collections.deque(s for s in self.streams if s.evaluation.run is not run)
        waiting = [d for d in self.delayed if d[2].evaluation.run is run]
        if waiting:
            for _, _, _, request, _ in waiting:
                request.node.units.cancel(1)
            self.delayed = [d for d in self.delayed if d[2].evaluation.run is not run]
            heapq.heapify(self.delayed)
        for engine, chunks in self.flight.items():
            mine = [c for c in chunks if c.stream.evaluation.run is run]
            if not mine:
                continue
            queued_ids = [c.ar.msg_ids[0] for c in mine if c is not chunks[0]]
            if queued_ids:
                try:
                    self._view(engine).abort(jobs=queued_ids)
                except Exception:
                    log.debug("abort failed", exc_info=True)
        self._interrupt_abandoned()

    def _give_up(self, chunk: Chunk, why: str) -> None:
        """Its reply will never come: its units go back to the queue (or are failed)."""
        chunks = self.flight.get(chunk.engine, [])
        head = bool(chunks) and chunks[0] is chunk
        chunks.remove(chunk)
        chunk.lost = True
        chunk.stream.in_flight -= 1
        self.limits.finished(chunk.stream.node.task, chunk.n)
        self._chunk_lost(chunk, ReplyLost(why))
        if head and chunks:
            self._started(chunks[0])

    def _probe_quiet_engines(self) -> None:
        """Ask an engine whose oldest chunk has been out for ``PROBE_AFTER`` seconds to
        answer a no-op. Engines answer in order, so if the no-op comes back first the
        chunk's reply was lost (an interrupt meant for another run can hit it) and the
        run would otherwise wait for it forever."""
        now = time.monotonic()
        for engine, chunks in self.flight.items():
            if chunks and not chunks[0].probed and now - chunks[0].sent > PROBE_AFTER:
                chunk = chunks[0]
                chunk.probed = True
                try:
                    ar = self._view(engine).apply_async(probe)
                except Exception:
                    log.debug("probe failed", exc_info=True)
                    continue
                ar.add_done_callback(lambda _f, c=chunk: self.inbox.put(("probed", c)))

    def _on_probed(self, chunk: Chunk) -> None:
        if not chunk.lost and chunk in self.flight.get(chunk.engine, []):
            log.info("nbtasks: engine %s answered a probe before a chunk of %r; its reply was lost",
                     chunk.engine, chunk.stream.node.name)
            self._give_up(chunk, f"engine {chunk.engine} answered a probe sent after it")
            self._forget_if_over(chunk.stream.evaluation)

    def _interrupt_abandoned(self, every: float = 1.0, limit: int = 5) -> None:
        """SIGINT engines whose current chunk belongs to a run that is over.

        Repeated a few times while the chunk does not come back: a signal that lands
        before the engine has started the chunk is ignored. One that lands in another
        run's chunk only sends that chunk's unfinished units back to the queue.
        """
        now = time.monotonic()
        for engine, chunks in self.flight.items():
            if not chunks:
                continue
            current = chunks[0]
            if (current.stream.evaluation.over and current.interrupts < limit
                    and (current.interrupts == 0 or now - current.signalled >= every)):
                current.signalled = now
                current.interrupts += 1
                try:
                    self.cluster.client.send_signal(signal.SIGINT, targets=[engine], block=False)
                except Exception:
                    log.debug("interrupt failed", exc_info=True)

    def _forget_if_over(self, evaluation: Evaluation) -> None:
        run = evaluation.run
        if evaluation.over and not any(c.stream.evaluation is evaluation
                                       for cs in self.flight.values() for c in cs):
            self.evaluations.pop(run.id, None)
            for key in [k for k in self.stream_of if k[0] == run.id]:
                del self.stream_of[key]

    def _poll_progress(self) -> None:
        """Copy what running units said with ``nt.progress`` onto their runs."""
        for chunks in self.flight.values():
            if not chunks:
                continue
            chunk = chunks[0]
            report = _engine_data(chunk).get(PROGRESS_KEY)
            if report is None:
                continue
            position, fraction, message = report
            for request, start, stop in chunk.parts:
                if position < stop - start:
                    chunk.stream.evaluation.run.report_unit_progress(request.node, start + position, fraction, message)
                    break
                position -= stop - start

    def engine_snapshot(self) -> dict[int, dict[str, Any]]:
        """Per engine: busy or idle, chunks queued there, units it finished."""
        return {engine: {"busy": bool(chunks), "in_flight": len(chunks),
                         "units_done": self.units_done.get(engine, 0)}
                for engine, chunks in list(self.flight.items())}

    def _view(self, engine: int) -> Any:
        view = self._views.get(engine)
        if view is None:
            view = self._views[engine] = self.cluster.client.direct_view(targets=engine)
            view.block = False
        return view

    def _forget_message(self, chunk: Chunk) -> None:
        # ipyparallel drops a message's results and metadata itself once its output
        # is complete (removing them earlier leaves that future pending forever,
        # holding the run); only its history lists grow without bound
        if not any(self.flight.values()):
            client = self.cluster.client
            client.history.clear()
            for view in self._views.values():
                view.history.clear()
            client.session.digest_history.clear()

    def _schedule(self) -> None:
        if not self.streams:
            return
        engines = self.cluster.usable_engines()
        if not engines:
            return
        for engine in list(self.flight):
            if engine not in engines and not self.flight[engine]:
                del self.flight[engine]
        for _ in range(self.depth):  # breadth first: every engine gets one before any gets two
            for engine in engines:
                if not self.streams:
                    return
                if len(self.flight[engine]) < self.depth:
                    self._send_one(engine, len(engines))

    def _send_one(self, engine: int, n_engines: int) -> None:
        """Send the next stream's chunk to ``engine``; streams that cannot send now
        (probing, limited, avoiding this engine) let the next one go instead."""
        for _ in range(len(self.streams)):
            stream = self.streams.popleft()
            if self._send_from(stream, engine, n_engines):
                return

    def _send_from(self, stream: Stream, engine: int, n_engines: int) -> bool:
        if stream.sizer.per_unit is None and stream.in_flight >= n_engines * self.depth:
            self.streams.append(stream)  # still probing: wait for a measurement
            return False
        size = stream.sizer.size(stream.pending, n_engines)
        task = stream.node.task
        allowed, why = self.limits.allowance(task)
        run = stream.evaluation.run
        if allowed is not None:
            if allowed == 0:
                run.status_note = why  # "why is this not running?"
                self.streams.append(stream)
                return False
            size = min(size, allowed)
        parts = stream.cut(size, engine, n_engines)
        if stream.pending:
            self.streams.append(stream)
        if not parts:  # what is left avoids this engine
            return False
        if run.status_note.startswith("waiting:"):
            run.status_note = ""
        inputs = [x for request, start, stop in parts for x in request.inputs[start:stop]]
        try:
            blob = dumps(inputs, f"the input of task {stream.node.name!r}")
        except Exception as exc:
            self._unpicklable_input(stream, parts, exc)
            return False
        chunk = Chunk(next(self._ids), stream, parts, engine)
        self.limits.sent(task, chunk.n)
        chunk.ar = self._view(engine).apply_async(run_chunk, stream.token, stream.blob, blob, parts[0][1])
        stream.in_flight += 1
        self.flight[engine].append(chunk)
        if len(self.flight[engine]) == 1:
            self._started(chunk)
        chunk.ar.add_done_callback(lambda _f, c=chunk: self.inbox.put(("done", c)))
        return True

    def _unpicklable_input(self, stream: Stream, parts: list, exc: Exception) -> None:
        evaluation = stream.evaluation
        for request, start, stop in parts:
            for index in range(start, stop):
                try:
                    dumps(request.inputs[index], f"unit {index} (input of task {stream.node.name!r})")
                except Exception as unit_exc:
                    evaluation.fail(unit_exc)
                    return
        evaluation.fail(exc)

    def _shutdown(self) -> None:
        for evaluation in list(self.evaluations.values()):
            if not evaluation.over:
                evaluation.fail(ClusterStopped(f"{self.cluster!r} was stopped"))
        self._stopped = True
