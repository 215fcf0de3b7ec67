"""The dispatch thread: cuts unit requests into chunks and keeps engines busy.

    Run ──start_run──> inbox ──> [dispatch thread] ── Evaluation (core)
                                   │   UnitRequest ─> Stream (per run × leaf)
                                   │   Stream ─cut─> Chunk ─lane (or apply_async)─> engine k
    engine's outcome ─lane─> [dispatch thread]  ─> ("done", chunk) ─> Outcomes / Recovery
    apply reply ─ipyparallel IO thread─> inbox ─┘

Messages (``run``, ``cancel``, ``done``, ``reused``, ``probed``, ``hold``,
``lane_returned``, ``stop``) go to the handlers in ``Dispatcher._handlers``; the
lanes' own messages to ``lanes.Lanes``, read by this thread too (``inbox.py``). One
thread owns all mutable dispatch state (streams, chunks in flight, counters), so
nothing here takes a lock; other threads only put messages in the inbox. What comes
back is applied by ``outcomes.Outcomes``; chunks that do not come back are
``recovery.Recovery``'s (see ``seams.py``).
Chunks go to a chosen engine (not through ipyparallel's task scheduler): we know
where every unit is, which is what cancel and engine loss need, and a small
per-engine queue (``depth``) hides the round trip. They go down the engine's lane
(``lanes.py``) when it has one, else as an ``apply`` through a DirectView.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import threading
import time
from typing import Any, Callable

from ..core.evaluate import Evaluation, UnitRequest
from ..core.freeing import give_back_free_memory
from ..core.run import Run
from ..core.serialize import Pickled, dump, dumps
from .engine import PROGRESS_KEY, run_chunk
from .errors import ClusterStopped
from .inbox import Inbox
from .batching import UnitTimes
from .lanes import OPEN_BEHIND, Lanes
from .limits import Limits
from .outcomes import Outcomes
from .recovery import DEATH_GRACE, Recovery
from .seams import EnginePool
from .streams import Chunk, Stream

log = logging.getLogger("nbtasks")

HOLD_SLACK = 0.001  # seconds an engine may be later than another and still get the next chunk

__all__ = ["Dispatcher", "EnginePool"]


class Dispatcher:
    depth = 2  # chunks queued per engine: one running, one ready to start

    def __init__(self, cluster: EnginePool) -> None:
        self.cluster = cluster
        self.inbox = Inbox()
        self.streams: collections.deque[Stream] = collections.deque()
        self.stream_of: dict[tuple[str, int], Stream] = {}
        self.evaluations: dict[str, Evaluation] = {}
        self.flight: dict[int, list[Chunk]] = collections.defaultdict(list)  # engine -> chunks, oldest first
        self.limits = Limits()
        self.unit_times = UnitTimes()  # a task run again sizes its first chunks from its last run
        self.outcomes = Outcomes(self)
        self.recovery = Recovery(self, self.outcomes, self.post_from_engine)
        self._ids = itertools.count()
        self._views: dict[int, Any] = {}
        self._handlers: dict[str, Callable[..., None]] = {
            "run": self._on_run, "cancel": self._on_cancel, "done": self._on_done,
            "reused": self._on_reused, "probed": self.recovery.on_probed,
            "lane_returned": self._on_lane_returned, "hold": self._on_hold,
        }
        self.lanes: Lanes | None = None
        self._lanes_tried = False
        self._trim_due = False  # a run ended: give freed memory back when the dispatcher is idle
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

    def post_from_engine(self, *message: Any) -> None:
        """A message from ipyparallel's IO thread (a reply): delivered even while stopping."""
        self.inbox.put(message)

    @contextlib.contextmanager
    def engines_wanted(self, engines: list[int]):
        """While the client sends ``engines`` an apply of its own, their lanes close (the
        apply would wait behind them) and their chunks go by apply, in order behind it."""
        holding = self._thread is not None and not self._stopped
        if holding:
            self.inbox.put(("hold", list(engines), 1))
        try:
            yield
        finally:
            if holding:
                self.inbox.put(("hold", list(engines), -1))

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None and not self._stopped:
            self.inbox.put(("stop",))
            self._thread.join(timeout)
        self._stopped = True

    # -- the thread ---------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            dying = bool(self.recovery.dying) or (self.lanes is not None and self.lanes.dying)
            waiting = (bool(self.streams) or bool(self.outcomes.delayed) or dying or any(self.flight.values())
                       or (self.lanes is not None and self.lanes.any))
            messages = self._take()
            if not messages:
                # idle, it still wakes now and then: dead engines get replaced
                self.inbox.wait((DEATH_GRACE if dying else 0.25) if waiting else 1.0)
                messages = self._take()  # all of them, so a burst of replies schedules once
                if not messages and self._trim_due and not self.evaluations:
                    # the last run's memory goes back once nothing came for a moment, not at its
                    # end: the next submit (a loop of runs) would wait ~1-2 ms for the trim
                    self._trim_due = False
                    give_back_free_memory()
            for kind, *args in messages:
                if kind == "stop":
                    self._shutdown()
                    return
                try:
                    self._handlers[kind](*args)
                except Exception:  # a bug here must not kill the thread and hang every run
                    log.exception("nbtasks dispatcher failed handling %s", kind)
            # hold no message while waiting for the next: a "done" holds its chunk, hence its
            # run and every result of it (arrays, maybe GBs), and an idle wait may last long
            messages = args = None
            try:
                self.recovery.interrupt_abandoned()
                self.recovery.probe_quiet_engines()
                self._poll_progress()
                self.recovery.release_dying()
                self.outcomes.release_delayed()
                if self.lanes is not None:
                    self.lanes.tidy()
                lost = self.cluster.lost()
                if lost is not None:
                    self._cluster_lost(lost)
                self.cluster.keep_size()
                self._schedule()
            except Exception:
                log.exception("nbtasks dispatcher failed scheduling")

    def _take(self) -> list:
        """What the lanes brought (applied here: their outcomes post "done"s), then the inbox."""
        if self.lanes is not None:
            self.lanes.receive()
        return self.inbox.take()

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
        self.forget_if_over(evaluation)

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
            # an engine answers in order: chunks sent to it before this one, the same way, that
            # are still waiting will never be answered (an interrupt can hit an apply's reply).
            # Not across ways: a lane's outcome, straight from the engine, can overtake the
            # reply to an apply the engine ran before it, which comes through the controller
            lane = Lanes.carries(chunk)
            for older in chunks[: chunks.index(chunk)]:
                if Lanes.carries(older) == lane:
                    self.recovery.give_up(older, f"engine {chunk.engine} answered a later chunk first")
            chunks.remove(chunk)
            if chunks:
                self.started(chunks[0])  # the engine moves on to the chunk queued behind
        chunk.stream.in_flight -= 1
        self.limits.finished(chunk.stream.node.task, chunk.n)
        evaluation = chunk.stream.evaluation
        try:
            reply = Pickled.from_wire(chunk.ar.get(0))
        except Exception as exc:
            self.recovery.reply_failed(chunk, exc)
            return
        finally:
            self._forget_message(chunk)
        outcome = reply.loads()
        # its arrays are views of the reply's frames, and the run hands them out as they
        # are: the store writes a copy, not what the user may since have changed in place
        payload = reply.owned() if evaluation.run.store is not None else None
        units = min(len(outcome.values), len(outcome.ends))
        stream = chunk.stream
        stream.sizer.observe(units, outcome.busy)
        stream.sizer.observe_bytes(units, back=reply.nbytes)
        self.unit_times.learned(stream.node.task, stream.mode, stream.sizer)
        self.outcomes.apply(chunk, outcome, payload, self._unreached if outcome.cut else self.recovery.interrupted_rest)
        self.forget_if_over(evaluation)

    # -- helpers ------------------------------------------------------------------
    def _enqueue(self, request: UnitRequest) -> None:
        if request.remaining == 0:  # every unit came from the store: complete it next round
            self.inbox.put(("reused", request))
            return
        key = (request.run.id, request.node.id)
        stream = self.stream_of.get(key)
        if stream is None:
            sizer = self.unit_times.sizer(request.node.task, request.mode)
            stream = self.stream_of[key] = Stream(request.evaluation, request, sizer)
        if stream.pending == 0:
            self.streams.append(stream)
        for start, stop in request.todo or [(0, len(request.inputs))]:
            stream.add(request, start, stop)

    def _unreached(self, chunk: Chunk, request: UnitRequest, start: int, stop: int) -> None:
        """Units after a probe's time budget ran out wait for the next chunk."""
        request.node.units.unreached(stop - start, chunk.unit_state)
        self.requeue(chunk.stream, request, start, stop)

    def _on_reused(self, request: UnitRequest) -> None:
        evaluation = request.evaluation
        if not evaluation.over:
            evaluation.request_done(request)
        self.forget_if_over(evaluation)

    def _on_lane_returned(self, lane: Any) -> None:
        if self.lanes is not None:
            self.lanes.on_returned(lane)

    def _on_hold(self, engines: list[int], delta: int) -> None:
        if self.lanes is not None:
            self.lanes.hold(engines, delta)

    def _route(self, engine: int) -> Any:
        """How the next chunk goes to ``engine``: a lane, True (apply), False (not now) or
        ``OPEN_BEHIND`` (apply, and a lane opened behind it)."""
        if self.lanes is None and not self._lanes_tried:
            self._lanes_tried = True
            hosts = self.cluster.lane_hosts() if os.environ.get("NBTASKS_LANES", "1") != "0" else None
            if hosts is not None:
                try:
                    self.lanes = Lanes(*hosts, self.post_from_engine)
                    self.inbox.watch(self.lanes.socket)
                except Exception:
                    log.info("nbtasks: no lanes (chunks go by apply)", exc_info=True)
        if self.lanes is None:
            return True
        return self.lanes.route(engine)

    @staticmethod
    def _later(mine: float | None, soonest: float | None) -> bool:
        """Whether an engine done with what it has at ``mine`` is later than another (done at
        ``soonest``): the next chunk waits for that one. Queued on the first engine with
        room, the last units of 40 x 50 ms once went 21 to 19, and one engine idled 100 ms."""
        return mine is not None and soonest is not None and mine > soonest + HOLD_SLACK

    def _free_at(self, engine: int) -> float | None:
        """When ``engine`` should be done with its chunks, by their streams' time per unit
        (None: a probe's time is not known yet)."""
        now = free = time.monotonic()
        for chunk in self.flight.get(engine, ()):
            per_unit = chunk.stream.sizer.per_unit
            if per_unit is None:
                return None
            if chunk.started:  # running since it began (about: its engine then took it)
                free = max(now, chunk.began + chunk.n * per_unit)
            else:
                free += chunk.n * per_unit
        return free

    @staticmethod
    def started(chunk: Chunk) -> None:
        """Its units count as running once the engine gets to the chunk, not when it is
        queued there behind another: ``running`` stays about one chunk per engine."""
        if not chunk.started:
            chunk.started = True
            chunk.began = time.monotonic()
            for request, start, stop in chunk.parts:
                request.node.units.start(stop - start)

    def requeue(self, stream: Stream, request: UnitRequest, start: int, stop: int,
                 avoid: int | None = None) -> None:
        if stream.pending == 0:
            self.streams.append(stream)
        stream.add(request, start, stop, avoid, first=True)

    def _stop_run(self, run: Run, reason: str) -> None:
        """Drop a run's queued units and interrupt its running ones."""
        for key in [k for k in self.stream_of if k[0] == run.id]:
            stream = self.stream_of.pop(key)
            for request, start, stop, _ in stream.segments:
                request.node.units.cancel(stop - start)
            stream.segments.clear()
            stream.pending = 0
        self.streams = collections.deque(s for s in self.streams if s.evaluation.run is not run)
        self.outcomes.cancel_delayed(run)
        for engine, chunks in self.flight.items():
            mine = [c for c in chunks if c.stream.evaluation.run is run]
            if not mine:
                continue
            queued = [c for c in mine if c is not chunks[0]]
            if self.lanes is not None:
                self.lanes.drop([c for c in queued if self.lanes.carries(c)])
            queued_ids = [c.ar.msg_ids[0] for c in queued if not Lanes.carries(c)]
            if queued_ids:
                try:
                    self.view(engine).abort(jobs=queued_ids)
                except Exception:
                    log.debug("abort failed", exc_info=True)
        self.recovery.interrupt_abandoned()

    def forget_if_over(self, evaluation: Evaluation) -> None:
        run = evaluation.run
        if evaluation.over and not any(c.stream.evaluation is evaluation
                                       for cs in self.flight.values() for c in cs):
            self.evaluations.pop(run.id, None)
            for key in [k for k in self.stream_of if k[0] == run.id]:
                del self.stream_of[key]
            if not self.evaluations:  # the last run is over: its replies and chunks are freed
                self._trim_due = True

    def _poll_progress(self) -> None:
        """Copy what running units said with ``nt.progress`` onto their runs."""
        for chunks in self.flight.values():
            if not chunks:
                continue
            chunk = chunks[0]
            report = chunk.engine_data().get(PROGRESS_KEY)
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
                         "units_done": self.outcomes.units_done.get(engine, 0)}
                for engine, chunks in list(self.flight.items())}

    def view(self, engine: int) -> Any:
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
        engines = self.cluster.usable_engines()  # also when idle: engines that joined get checked
        if not self.streams or not engines:
            return
        for engine in list(self.flight):
            if engine not in engines and not self.flight[engine]:
                del self.flight[engine]
        if all(len(self.flight[engine]) >= self.depth for engine in engines):
            return  # every queue is full (a streamed piece, a progress report came)
        # when each engine that can take a chunk now will be done with what it has
        free = {engine: self._free_at(engine) for engine in engines if self._route(engine) is not False}
        soonest = _soonest(free)
        for _ in range(self.depth):  # breadth first: every engine gets one before any gets two
            for engine in engines:
                if not self.streams:
                    return
                if len(self.flight[engine]) < self.depth and not self._later(free.get(engine), soonest):
                    route = self._route(engine)
                    if route is OPEN_BEHIND:
                        self._send_one(engine, len(engines), True)
                        self.lanes.open(engine, self.view(engine))
                    elif route is not False:
                        self._send_one(engine, len(engines), route)
                    if engine in free:
                        free[engine] = self._free_at(engine)
                        soonest = _soonest(free)

    def _send_one(self, engine: int, n_engines: int, route: Any) -> None:
        """Send the next stream's chunk to ``engine`` (down ``route``, a lane, or by apply
        if True); streams that cannot send now (probing, limited, avoiding this engine)
        let the next one go instead."""
        for _ in range(len(self.streams)):
            stream = self.streams.popleft()
            if self._send_from(stream, engine, n_engines, route):
                return

    def _send_from(self, stream: Stream, engine: int, n_engines: int, route: Any = True) -> bool:
        probing = stream.sizer.probing
        if probing and stream.in_flight >= n_engines * self.depth:
            self.streams.append(stream)  # still probing: wait for a measurement
            return False
        size = stream.sizer.size(stream.pending, n_engines)
        if size > 1 and (probing or not stream.sizer.bytes_in):  # inputs of unknown size: look
            limit = stream.sizer.probe_bytes if probing else stream.sizer.max_bytes
            size = min(size, max(1, limit // max(1, stream.next_input_bytes())))
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
            pickled = dump(inputs, f"the input of task {stream.node.name!r}")
        except Exception as exc:
            self._unpicklable_input(stream, parts, exc)
            return False
        chunk = Chunk(next(self._ids), stream, parts, engine)
        stream.sizer.observe_bytes(chunk.n, sent=pickled.nbytes)
        self.limits.sent(task, chunk.n)
        # big buffers (arrays) in the inputs go as zmq frames of their own, not copied
        budget = stream.sizer.probe_budget(chunk.n)
        if route is True:
            chunk.ar = self.view(engine).apply_async(run_chunk, stream.token, stream.blob, parts[0][1],
                                                     budget, *pickled.wire())
        else:
            chunk.ar = self.lanes.send(route, chunk, stream.token, stream.blob, parts[0][1], budget, pickled)
            chunk.probed = True  # a lane loses no reply to a stray interrupt: nothing to probe
        stream.in_flight += 1
        self.flight[engine].append(chunk)
        if len(self.flight[engine]) == 1:
            self.started(chunk)
        chunk.ar.add_done_callback(lambda _f, c=chunk: self.post_from_engine("done", c))
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

    def _cluster_lost(self, error: Exception) -> None:
        """Nothing sent will come back: every run fails with ``error`` now, and the units
        that were out on engines count as cancelled (first: a run's error is final)."""
        for chunks in self.flight.values():
            for chunk in chunks:
                chunk.lost = True  # should a reply come after all, it changes nothing
                for request, start, stop in chunk.parts:
                    request.node.units.cancel(stop - start, chunk.unit_state)
                chunk.stream.in_flight -= 1
                self.limits.finished(chunk.stream.node.task, chunk.n)
            chunks.clear()
        for evaluation in list(self.evaluations.values()):
            if not evaluation.over:
                evaluation.fail(error)
            self.forget_if_over(evaluation)

    def _shutdown(self) -> None:
        for evaluation in list(self.evaluations.values()):
            if not evaluation.over:
                evaluation.fail(ClusterStopped(f"{self.cluster!r} was stopped"))
        if self.lanes is not None:
            self.lanes.close()
        self._stopped = True
        self.inbox.close()


def _soonest(free: dict[int, float | None]) -> float | None:
    return min((when for when in free.values() if when is not None), default=None)
