"""The units waiting for engines (``Stream``) and those on their way (``Chunk``)."""

from __future__ import annotations

import collections
import time
import uuid
from typing import Any

from ..core.evaluate import Evaluation, UnitRequest
from ..core.serialize import dumps
from .batching import ChunkSizer

__all__ = ["Stream", "Chunk"]


class Stream:
    """Units of one leaf node of one run that wait for an engine."""

    def __init__(self, evaluation: Evaluation, request: UnitRequest) -> None:
        self.evaluation = evaluation
        self.node = request.node
        self.token = uuid.uuid4().hex
        task = request.node.task
        self.blob = dumps((task, request.mode, request.params, request.extra), f"task {task.name!r}")
        self.segments: collections.deque[list] = collections.deque()  # [request, next, stop]
        self.pending = 0
        self.sizer = ChunkSizer()
        self.in_flight = 0

    def add(self, request: UnitRequest, start: int = 0, stop: int | None = None) -> None:
        stop = len(request.inputs) if stop is None else stop
        if stop > start:
            self.segments.append([request, start, stop])
            self.pending += stop - start

    def cut(self, size: int) -> list[tuple[UnitRequest, int, int]]:
        parts = []
        while size > 0 and self.segments:
            seg = self.segments[0]
            request, start, stop = seg
            take = min(size, stop - start)
            parts.append((request, start, start + take))
            seg[1] = start + take
            if seg[1] == stop:
                self.segments.popleft()
            size -= take
            self.pending -= take
        return parts


class Chunk:
    __slots__ = ("id", "stream", "parts", "engine", "ar", "n", "attempts", "sent", "signalled", "started",
                 "interrupts", "lost")

    def __init__(self, id: int, stream: Stream, parts: list, engine: int, attempts: int = 0) -> None:
        self.id = id
        self.stream = stream
        self.parts = parts
        self.engine = engine
        self.n = sum(stop - start for _, start, stop in parts)
        self.attempts = attempts
        self.ar: Any = None
        self.sent = time.monotonic()
        self.signalled = 0.0  # when we last sent SIGINT for it
        self.started = False  # first in its engine's queue: its units count as running
        self.interrupts = 0  # SIGINTs sent for it (its run is over)
        self.lost = False  # given up: its engine answered a later chunk
