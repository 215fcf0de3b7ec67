"""The units waiting for engines (``Stream``) and those on their way (``Chunk``)."""

from __future__ import annotations

import collections
import time
import uuid
from typing import Any

from ..core.evaluate import Evaluation, UnitRequest
from ..core.serialize import UnpicklableError, dumps, split
from ..core.sources import code_origins
from ..core.states import UnitState
from ..core.arrivals import Arrivals
from ..core.travel import mark_local_modules, survey
from .batching import ChunkSizer
from .requirements import Checked

__all__ = ["Stream", "Chunk"]


class Stream:
    """Units of one leaf node of one run that wait for an engine."""

    def __init__(self, evaluation: Evaluation, request: UnitRequest, sizer: ChunkSizer | None = None) -> None:
        self.evaluation = evaluation
        self.node = request.node
        self.mode = request.mode
        self.token = uuid.uuid4().hex
        self.blob = _task_blob(request)
        #: [request, next, stop, avoid]: units next..stop-1 of request; avoid an engine id
        #: (a unit handed back with nt.Retry runs elsewhere if it can)
        self.segments: collections.deque[list] = collections.deque()
        self.pending = 0
        self.sizer = sizer or ChunkSizer()
        self.in_flight = 0

    def add(self, request: UnitRequest, start: int = 0, stop: int | None = None,
            avoid: int | None = None, first: bool = False) -> None:
        stop = len(request.inputs) if stop is None else stop
        if stop > start:
            segment = [request, start, stop, avoid]
            if first:
                self.segments.appendleft(segment)
            else:
                self.segments.append(segment)
            self.pending += stop - start

    def next_input_bytes(self) -> int:
        """Pickled size of the next unit's input (0 if none waits or it cannot be pickled)."""
        if not self.segments:
            return 0
        request, start = self.segments[0][0], self.segments[0][1]
        try:
            return split(request.inputs[start]).nbytes
        except Exception:
            return 0

    def cut(self, size: int, engine: int | None = None, engines: int = 1) -> list[tuple[UnitRequest, int, int]]:
        """Up to ``size`` units for ``engine``, skipping units that avoid it while
        another engine could take them."""
        parts = []
        i = 0
        while size > 0 and i < len(self.segments):
            seg = self.segments[i]
            request, start, stop, avoid = seg
            if avoid is not None and avoid == engine and engines > 1:
                i += 1
                continue
            take = min(size, stop - start)
            parts.append((request, start, start + take))
            seg[1] = start + take
            if seg[1] == stop:
                del self.segments[i]
            size -= take
            self.pending -= take
        return parts


def _task_blob(request: UnitRequest) -> bytes:
    """The task as engines unpickle it: what it needs installed is checked first, then it
    loads, then the local modules it brings are put in place (``core/travel.py``,
    ``core/arrivals.py``).

    The engine's side of this shape is ``engine.run_chunk``: (task, mode, params, extra,
    origins); the wrappers unpickle as the task and the origins."""
    task = request.node.task
    roots = (getattr(task, "fn", None), type(task), *_combiner(request.extra))
    origins = code_origins(*roots)
    found = survey(roots, (*request.params.values(), *_combiner_params(request.extra), *request.inputs[:1]))
    head = Checked(found.needs(), task)
    what = f"task {task.name!r}"
    mark_local_modules()
    try:
        brought = Arrivals(origins, found.members, found.modules)
        return dumps((head, request.mode, request.params, request.extra, brought), what)
    except UnpicklableError:
        # something only reached by name (an attribute that shares a global's name, say):
        # the task can go without it; its local modules then just stay out of sys.modules
        return dumps((head, request.mode, request.params, request.extra, origins), what)


def _combiner_params(extra: tuple) -> tuple:
    params = extra[1] if len(extra) > 1 else None
    return tuple(params.values()) if isinstance(params, dict) else ()


def _combiner(extra: tuple) -> tuple:
    """A map unit's combiner task (``extra`` of a map request), whose code travels too."""
    combiner = extra[0] if extra else None
    return () if combiner is None else (getattr(combiner, "fn", None), type(combiner))


class Chunk:
    __slots__ = ("id", "stream", "parts", "engine", "ar", "n", "signalled", "started", "began",
                 "interrupts", "lost", "sent", "probed")

    def __init__(self, id: int, stream: Stream, parts: list, engine: int) -> None:
        self.id = id
        self.stream = stream
        self.parts = parts
        self.engine = engine
        self.n = sum(stop - start for _, start, stop in parts)
        self.ar: Any = None
        self.signalled = 0.0  # when we last sent SIGINT for it
        self.started = False  # first in its engine's queue: its units count as running
        self.began = 0.0  # when it became first in its engine's queue (monotonic)
        self.interrupts = 0  # SIGINTs sent for it (its run is over)
        self.lost = False  # given up: its engine answered a later chunk
        self.sent = time.monotonic()
        self.probed = False  # its engine was asked whether it lost the reply

    def engine_data(self) -> dict:
        """What the engine published while running this chunk (progress, finished units).

        The AsyncResult keeps its own reference to the message's metadata, which the
        client drops from ``client.metadata`` once the reply is in; we need it after
        that too (an engine that died)."""
        try:
            return self.ar.metadata.get("data") or {}
        except (AttributeError, IndexError, TypeError):
            return {}

    @property
    def unit_state(self) -> UnitState:
        """Where its units are counted: running once its engine got to it, queued before."""
        return UnitState.RUNNING if self.started else UnitState.QUEUED
