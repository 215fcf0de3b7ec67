"""A chunk's units coming back: results, failures, retries and their records.

Runs on the dispatch thread. A unit that raised runs again when its task allows
(``retries``, after a doubling backoff; ``nt.Retry``, on another engine), else it
fails with an ``nt.UnitError`` naming the task, the unit, its input and its engine.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import time
from typing import Any, Callable

from ..core.errors import RemoteTraceback, Retry, UnitError
from ..core.evaluate import UnitRequest
from ..core.records import ChunkRecord
from ..core.run import Run
from ..core.serialize import Pickled
from ..core.unitexec import ChunkOutcome, UnitFailure
from .seams import DispatchCore
from .streams import Chunk, Stream

__all__ = ["Outcomes", "Rest"]

HANDBACKS = 10  # times a unit may hand itself back with nt.Retry before it counts as failed
BACKOFF = 0.1  # seconds before the first re-run of a unit that raised; doubles each time
MAX_BACKOFF = 30.0

#: what to do with the units of a chunk that it did not reach: (chunk, request, start, stop)
Rest = Callable[[Chunk, UnitRequest, int, int], None]


class Outcomes:
    """Applies what chunks bring back, and holds the units waiting out a backoff."""

    def __init__(self, core: DispatchCore) -> None:
        self.core = core
        #: heap of (ready time, seq, stream, request, index): units waiting out a backoff
        self.delayed: list[tuple[float, int, Stream, UnitRequest, int]] = []
        self.units_done: collections.Counter[int] = collections.Counter()  # per engine, for display
        self._seq = itertools.count()

    def apply(self, chunk: Chunk, outcome: Any, payload: Pickled | None,
               rest: Rest) -> None:
        """Take a chunk's finished units (results, failures, re-runs, records; ``payload``:
        the outcome as the store keeps it); ``rest(chunk, request, start, stop)`` deals
        with the units it did not reach."""
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
            raised = {at - offset: item for at, item in outcome.errors.items() if 0 <= at - offset < finished}
            before = {i: request.results[start + i] for i in raised}  # a unit that raised keeps its slot
            # one slice, not a Python step per unit: 100,000 units a second come through here
            request.results[start: start + finished] = outcome.values[offset: offset + finished]
            for i, item in raised.items():
                request.results[start + i] = before[i]
                if self._run_again(chunk, request, start + i, item.exception):
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
            evaluation.units_back(request, errors.values())
        if payload is not None or evaluation.run.store is None:  # the store needs no values of it
            outcome.values = []  # they are in the requests' results; records keep the rest

    def _run_again(self, chunk: Chunk, request: UnitRequest, index: int, exc: BaseException | None) -> bool:
        """Whether a unit that raised runs again: handed back (nt.Retry, on another
        engine if there is one) or within its task's ``retries`` (after a backoff)."""
        task = request.node.task
        if isinstance(exc, Retry):
            if request.tried(index, "handback") > HANDBACKS:
                return False
            self.core.requeue(chunk.stream, request, index, index + 1, avoid=chunk.engine)
            return True
        if not task.retries or request.tried(index, "error") > task.retries:
            return False
        delay = min(MAX_BACKOFF, BACKOFF * 2 ** (request.tries[index]["error"] - 1))
        heapq.heappush(self.delayed, (time.monotonic() + delay, next(self._seq), chunk.stream, request, index))
        return True

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

    def engine_failed_unit(self, chunk: Chunk, request: UnitRequest, index: int, limit: int,
                            ename: str) -> None:
        """A unit whose engine died ``limit`` times fails instead of looping."""
        evaluation = chunk.stream.evaluation
        where = self.core.cluster.engine_info.get(chunk.engine, {})  # the dead engine, as it was checked in
        error = UnitError(request.node.name, request.label(index), request.inputs[index],
                          f"{ename}: the engine running this unit died {limit} times "
                          f"(max_engine_failures={limit})", "", chunk.engine, where.get("host"), where.get("pid"))
        error.node_id = request.node.id
        request.node.units.fail(1, chunk.unit_state)
        request.failed += 1
        request.remaining -= 1
        evaluation.run.report_unit_failure(error)
        evaluation.units_back(request, [error])

    def release_delayed(self) -> None:
        """Units whose backoff is over wait for an engine again."""
        now = time.monotonic()
        while self.delayed and self.delayed[0][0] <= now:
            _, _, stream, request, index = heapq.heappop(self.delayed)
            if not stream.evaluation.over:
                self.core.requeue(stream, request, index, index + 1)

    def cancel_delayed(self, run: Run) -> None:
        """A stopped run's units waiting out a backoff are cancelled."""
        waiting = [d for d in self.delayed if d[2].evaluation.run is run]
        if waiting:
            for _, _, _, request, _ in waiting:
                request.node.units.cancel(1)
            self.delayed = [d for d in self.delayed if d[2].evaluation.run is not run]
            heapq.heapify(self.delayed)
