"""Chunks that do not come back as they should, and what becomes of their units.

Runs on the dispatch thread. An engine that dies keeps the units it streamed back
before dying (after a short grace for the last of them) and the rest run elsewhere,
up to each task's ``max_engine_failures``; a reply lost to a stray interrupt is found
by a probe; a cancelled run's chunks are interrupted until they come back.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any, Callable

from ..core.errors import RemoteTraceback
from ..core.evaluate import UnitRequest
from ..core.serialize import Pickled, loads, split
from ..core.unitexec import ChunkOutcome
from .engine import UNITS_KEY, probe
from .errors import EngineUnfit
from .outcomes import Outcomes
from .seams import DispatchCore
from .streams import Chunk

log = logging.getLogger("nbtasks")

__all__ = ["Recovery", "ReplyLost", "DEATH_GRACE"]

DEATH_GRACE = 0.1  # seconds to wait for the last units an engine sent before it died
PROBE_AFTER = 2.0  # seconds a chunk may be out before its engine is asked whether it lost the reply


class ReplyLost(Exception):
    """An engine will never answer this chunk (it answered a later one)."""


def _ranges(indices: list[int]) -> list[tuple[int, int]]:
    """Sorted indices as half-open ranges: [1, 2, 3, 7] -> [(1, 4), (7, 8)]."""
    out: list[tuple[int, int]] = []
    for i in indices:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def _snapshot(outcome: ChunkOutcome) -> Pickled | None:
    """The outcome pickled now, for the store: the run hands its values to the user, who
    may change them in place before the store thread writes."""
    try:
        return split(outcome).owned()
    except Exception:
        return None  # the store pickles it itself, or says why not


class Recovery:
    """Lost chunks: engine deaths, lost replies, interrupts for runs that are over."""

    def __init__(self, core: DispatchCore, outcomes: Outcomes, post: Callable[..., None]) -> None:
        self.core = core
        self.outcomes = outcomes
        self.post = post  # puts a message in the dispatcher's inbox (from ipyparallel's thread)
        #: (when, chunk, error): chunks whose engine died, handled after a short grace
        self.dying: list[tuple[float, Chunk, BaseException]] = []

    def reply_failed(self, chunk: Chunk, exc: BaseException) -> None:
        """A chunk's reply is an error instead of its outcome."""
        if getattr(exc, "ename", None) == "EngineError":
            # units the engine sent just before it died may still be on their way
            self.dying.append((time.monotonic() + DEATH_GRACE, chunk, exc))
        else:
            self.chunk_lost(chunk, exc)

    def release_dying(self) -> None:
        """Chunks of dead engines whose grace is over are dealt with."""
        now = time.monotonic()
        while self.dying and self.dying[0][0] <= now:
            _, chunk, exc = self.dying.pop(0)
            self.chunk_lost(chunk, exc)

    def chunk_lost(self, chunk: Chunk, exc: BaseException) -> None:
        """The chunk did not come back: engine died, interrupt, or it could not start."""
        evaluation = chunk.stream.evaluation
        ename = getattr(exc, "ename", type(exc).__name__)
        engine_died = ename in ("EngineError", "ReplyLost")
        sent = self._units_sent(chunk) if engine_died and not evaluation.over else None
        if sent is not None:  # what the engine finished before it died is not run again
            log.info("nbtasks: engine %s died; %d unit(s) of %r it finished are kept, the rest runs again",
                     chunk.engine, len(sent.values), chunk.stream.node.name)
            self.outcomes.apply(chunk, sent, _snapshot(sent), lambda c, r, a, b: self._run_elsewhere(c, r, a, b, ename))
            self.core.forget_if_over(evaluation)
            return
        source = chunk.unit_state
        if evaluation.over:
            for request, start, stop in chunk.parts:
                request.node.units.cancel(stop - start, source)
            self.core.forget_if_over(evaluation)
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
            self.core.forget_if_over(evaluation)
            return
        log.info("nbtasks: re-queueing %d unit(s) of %r after %s", chunk.n, chunk.stream.node.name, exc)
        for request, start, stop in reversed(chunk.parts):
            if engine_died:
                self._run_elsewhere(chunk, request, start, stop, ename)
            elif evaluation.over:
                request.node.units.cancel(stop - start, source)
            else:
                request.node.units.retry(stop - start, source)
                self.core.requeue(chunk.stream, request, start, stop)

    def interrupted_rest(self, chunk: Chunk, request: UnitRequest, start: int, stop: int) -> None:
        """Units of a chunk stopped by a signal that was not meant for this run: again."""
        request.node.units.retry(stop - start, chunk.unit_state)
        self.core.requeue(chunk.stream, request, start, stop)

    def _run_elsewhere(self, chunk: Chunk, request: UnitRequest, start: int, stop: int, ename: str) -> None:
        """Units whose engine died run again, unless it was their ``max_engine_failures``-th."""
        limit = request.node.task.max_engine_failures
        units, source = request.node.units, chunk.unit_state
        keep = []
        for index in range(start, stop):
            if chunk.stream.evaluation.over:  # the run ended on an earlier unit's failure
                units.cancel(1, source)
            elif request.tried(index, "engine") >= limit:
                self.outcomes.engine_failed_unit(chunk, request, index, limit, ename)
            else:
                keep.append(index)
        if chunk.stream.evaluation.over:
            units.cancel(len(keep), source)
            return
        units.retry(len(keep), source)
        for first, last in reversed(_ranges(keep)):
            self.core.requeue(chunk.stream, request, first, last)

    @staticmethod
    def _units_sent(chunk: Chunk) -> Any:
        """The units a chunk's engine sent back while running it (None if none)."""
        data = chunk.engine_data()
        pieces = []
        for key, blob in list(data.items()):
            if key.startswith(UNITS_KEY):
                try:
                    pieces.append((int(key[len(UNITS_KEY):]), loads(blob)))
                except Exception:
                    log.debug("nbtasks: a unit piece could not be read", exc_info=True)
        return ChunkOutcome.join(pieces)

    def give_up(self, chunk: Chunk, why: str) -> None:
        """Its reply will never come: its units go back to the queue (or are failed)."""
        chunks = self.core.flight.get(chunk.engine, [])
        head = bool(chunks) and chunks[0] is chunk
        chunks.remove(chunk)
        chunk.lost = True
        chunk.stream.in_flight -= 1
        self.core.limits.finished(chunk.stream.node.task, chunk.n)
        self.chunk_lost(chunk, ReplyLost(why))
        if head and chunks:
            self.core.started(chunks[0])

    def probe_quiet_engines(self) -> None:
        """Ask an engine whose oldest chunk has been out for ``PROBE_AFTER`` seconds to
        answer a no-op. Engines answer in order, so if the no-op comes back first the
        chunk's reply was lost (an interrupt meant for another run can hit it) and the
        run would otherwise wait for it forever."""
        now = time.monotonic()
        for engine, chunks in self.core.flight.items():
            if chunks and not chunks[0].probed and now - chunks[0].sent > PROBE_AFTER:
                chunk = chunks[0]
                chunk.probed = True
                try:
                    ar = self.core.view(engine).apply_async(probe)
                except Exception:
                    log.debug("probe failed", exc_info=True)
                    continue
                # only an answer counts: a probe that fails (its engine left) says nothing of the reply
                ar.add_done_callback(lambda f, c=chunk: f.exception() is None and self.post("probed", c))

    def on_probed(self, chunk: Chunk) -> None:
        if not chunk.lost and chunk in self.core.flight.get(chunk.engine, []):
            log.info("nbtasks: engine %s answered a probe before a chunk of %r; its reply was lost",
                     chunk.engine, chunk.stream.node.name)
            self.give_up(chunk, f"engine {chunk.engine} answered a probe sent after it")
            self.core.forget_if_over(chunk.stream.evaluation)

    def interrupt_abandoned(self, every: float = 1.0, limit: int = 5) -> None:
        """SIGINT engines whose current chunk belongs to a run that is over.

        Repeated a few times while the chunk does not come back: a signal that lands
        before the engine has started the chunk is ignored. One that lands in another
        run's chunk only sends that chunk's unfinished units back to the queue.
        """
        now = time.monotonic()
        for engine, chunks in self.core.flight.items():
            if not chunks:
                continue
            current = chunks[0]
            if (current.stream.evaluation.over and current.interrupts < limit
                    and (current.interrupts == 0 or now - current.signalled >= every)):
                current.signalled = now
                current.interrupts += 1
                try:
                    self.core.cluster.client.send_signal(signal.SIGINT, targets=[engine], block=False)
                except Exception:
                    log.debug("interrupt failed", exc_info=True)
