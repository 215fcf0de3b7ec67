"""Lanes: the client's end of a socket of our own to each engine, for chunks.

    dispatch thread ─ROUTER─> engine (``engine_lane.run_lane``): chunks, drop, close
    dispatch thread <─ROUTER─ engine: hello, data, outcome, aborted, failed, bye
    (the dispatch thread's inbox wakes for the ROUTER too: ``inbox.py``)

Why: a chunk sent by ``apply`` leaves its engine idle ~2.5-4 ms before the next one
starts, although that one is already there (``engine_lane.py``); at 7-8 chunks a
second that was 3-4 points of each core. On a lane the next chunk starts the moment
the last one's outcome is sent, and neither goes through the controller.

ipyparallel still does the rest: the lane itself is an ``apply`` (``run_lane``), so an
engine that dies fails it with an ``EngineError`` as it fails a chunk's, and the units
its engine streamed back before (``data`` messages, kept on the chunk's ``LaneReply``
as ipyparallel keeps them on an ``AsyncResult``) are kept as they are then. SIGINT
still cancels; a queued chunk is dropped with a ``drop`` message instead of an abort.

A lane opens when the dispatcher has work for an engine and closes after ``IDLE``
seconds without any, or when the client wants the engine for an ``apply`` of its own
(shared values, packages: ``hold``), which would otherwise wait behind the lane. An
engine that cannot reach the client's socket (``engine_lane.HELLO_WAIT``) gets its
chunks by ``apply`` as before.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any, Callable

from ..core.serialize import Pickled
from .engine_lane import run_lane
from .lanewire import Message, Wire
from .recovery import DEATH_GRACE
from .streams import Chunk

log = logging.getLogger("nbtasks")

__all__ = ["Lanes", "LaneReply", "LaneFailure", "OPEN_BEHIND"]

IDLE = 0.5  # seconds a lane stays open without work
QUIET = 3.0  # seconds an engine waits for a word from the client before it ends the lane itself
BYE_WAIT = 1.0  # seconds to wait for a lane's last messages once its apply returned
OPEN_BEHIND = "open behind"  # ``Lanes.route``: send by apply, then open a lane


class LaneFailure(Exception):
    """A chunk sent down a lane came back without an outcome (named like ipyparallel's
    errors, which ``recovery`` tells apart by ``ename``)."""

    def __init__(self, ename: str, evalue: str, traceback: str = "") -> None:
        super().__init__(f"{ename}: {evalue}")
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback


class LaneReply:
    """What the dispatcher reads of a chunk sent down a lane, shaped like the
    ``AsyncResult`` of one sent by ``apply``: ``get``, done callbacks, and what the
    engine published meanwhile in ``metadata["data"]``. Set on the dispatch thread."""

    __slots__ = ("metadata", "_value", "_error", "_done", "_callbacks")

    def __init__(self) -> None:
        self.metadata: dict[str, Any] = {"data": {}}
        self._value: Any = None
        self._error: BaseException | None = None
        self._done = False
        self._callbacks: list[Callable[[Any], None]] = []

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self._done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def get(self, timeout: float | None = None) -> Any:
        if not self._done:
            raise TimeoutError("the chunk's outcome has not come yet")
        if self._error is not None:
            raise self._error
        return self._value

    def set(self, value: Any = None, error: BaseException | None = None) -> None:
        if self._done:
            return
        self._value, self._error, self._done = value, error, True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)


def _unread(lane: "Lane") -> LaneFailure:
    """For chunks still on a lane that ended: the engine never read them, they run again."""
    return LaneFailure("TaskAborted", f"engine {lane.engine} ended its lane before it read the chunk")


class Lane:
    """One engine's lane, from the ``apply`` that opens it to its ``bye``."""

    OPENING, OPEN, CLOSING, DYING = "opening", "open", "closing", "dying"

    def __init__(self, engine: int) -> None:
        self.engine = engine
        self.identity = uuid.uuid4().hex.encode()
        self.state = self.OPENING
        self.chunks: dict[int, Chunk] = {}  # sent down it, not answered yet
        self.last_used = time.monotonic()
        self.returned: float | None = None  # when its apply returned (its "bye" may still come)
        self.died: tuple[float, BaseException] | None = None  # when its engine died, and the error
        self.ar: Any = None


class Lanes:
    """Every lane of one dispatcher, and their socket: used on the dispatch thread only."""

    def __init__(self, bind: str, connect: str, post: Callable[..., None]) -> None:
        import zmq

        self.post = post  # into the dispatcher's inbox (from ipyparallel's thread: a lane's apply returned)
        self.wire = Wire(os.urandom(32))
        self.socket = zmq.Context.instance().socket(zmq.ROUTER)
        self.socket.linger = 1000
        port = self.socket.bind_to_random_port(f"tcp://{bind}")
        self.address = f"tcp://{connect}:{port}"
        self.lanes: dict[bytes, Lane] = {}  # by identity
        self.of_engine: dict[int, Lane] = {}
        self.apply_only: set[int] = set()  # engines that could not open a lane
        self.held: dict[int, int] = {}  # engine -> holds: it takes applies for now

    # -- routing ------------------------------------------------------------------------
    def route(self, engine: int) -> Lane | bool | str:
        """How a chunk goes to ``engine`` now: its open lane; False: wait (a lane is
        opening, or closing before an apply of ours); True: by ``apply``; ``OPEN_BEHIND``:
        by apply, then ``open`` a lane behind it (the engine starts at once, every engine
        of a fresh cluster gets work, and the chunks after go down the lane)."""
        if engine in self.apply_only or self.held.get(engine):
            return True
        lane = self.of_engine.get(engine)
        if lane is None:
            return OPEN_BEHIND
        return lane if lane.state == Lane.OPEN else False

    def open(self, engine: int, view: Any) -> None:
        """Open a lane to ``engine`` (its apply queues behind what was sent there)."""
        lane = Lane(engine)
        try:
            lane.ar = view.apply_async(run_lane, self.address, lane.identity, self.wire.key, QUIET)
        except Exception:
            log.debug("nbtasks: a lane could not be opened to engine %s", engine, exc_info=True)
            self.apply_only.add(engine)
            return
        self.lanes[lane.identity] = self.of_engine[engine] = lane
        lane.ar.add_done_callback(lambda _f, lane=lane: self.post("lane_returned", lane))

    def send(self, lane: Lane, chunk: Chunk, token: str, blob: bytes, first_index: int,
             budget: float | None, inputs: Pickled) -> LaneReply:
        """Send ``chunk`` down ``lane``; returns what its outcome will be set on (``chunk.ar``)."""
        lane.chunks[chunk.id] = chunk
        lane.last_used = time.monotonic()
        self._send(lane, "chunk", chunk.id, token, blob, first_index, budget,
                   head=inputs.head, buffers=inputs.buffers)
        return LaneReply()

    def drop(self, chunks: list[Chunk]) -> None:
        """Chunks queued on their engines that should not run (their run is over)."""
        for chunk in chunks:
            lane = self._lane_of(chunk)
            if lane is not None:
                self._send(lane, "drop", [chunk.id])

    @staticmethod
    def carries(chunk: Chunk) -> bool:
        return isinstance(chunk.ar, LaneReply)

    def hold(self, engines: list[int], delta: int) -> None:
        """The client wants ``engines`` for an apply (+1) or no longer (-1): their lanes close."""
        for engine in engines:
            self.held[engine] = max(0, self.held.get(engine, 0) + delta)
            if not self.held[engine]:
                del self.held[engine]
            elif (lane := self.of_engine.get(engine)) is not None:
                self._close(lane)

    def tidy(self) -> None:
        """Close lanes idle for ``IDLE`` seconds; a lane whose apply returned long enough
        ago without its "bye" took its unanswered chunks with it."""
        now = time.monotonic()
        for lane in list(self.lanes.values()):
            if lane.state == Lane.OPEN and not lane.chunks and now - lane.last_used > IDLE:
                self._close(lane)
            elif lane.returned is not None and now - lane.returned > BYE_WAIT:
                self._end(lane, _unread(lane))
            elif lane.died is not None and now - lane.died[0] > DEATH_GRACE:
                self._end(lane, lane.died[1])

    @property
    def dying(self) -> bool:
        """Whether a lane whose engine died waits for the last of what it sent."""
        return any(lane.died is not None for lane in self.lanes.values())

    @property
    def any(self) -> bool:
        """Whether some lane is open (or opening, or closing)."""
        return bool(self.lanes)

    # -- what comes back ------------------------------------------------------------------
    def on_message(self, identity: bytes, message: Message) -> None:
        lane = self.lanes.get(identity)
        if lane is None:
            return  # a lane given up (its engine left): what it still says changes nothing
        kind, args = message.kind, message.args
        if kind == "hello":
            if lane.state == Lane.OPENING:
                lane.state = Lane.OPEN
                lane.last_used = time.monotonic()
            self._send(lane, "welcome")
            if self.held.get(lane.engine):
                self._close(lane)
        elif kind == "data":
            chunk = lane.chunks.get(args[0])
            if chunk is not None:
                chunk.ar.metadata["data"].update(args[1])
        elif kind == "outcome":
            chunk = lane.chunks.pop(args[0], None)
            if chunk is not None:
                lane.last_used = time.monotonic()
                head, *buffers = message.payload
                chunk.ar.set((head, None, *buffers))
        elif kind in ("aborted", "failed"):
            chunk = lane.chunks.pop(args[0], None)
            if chunk is not None:
                error = (LaneFailure("TaskAborted", "dropped from its engine's lane") if kind == "aborted"
                         else LaneFailure(*args[1:]))
                chunk.ar.set(error=error)
        elif kind == "bye":
            self._end(lane, _unread(lane))

    def on_returned(self, lane: Lane) -> None:
        """The lane's apply returned. Its engine died: after ``DEATH_GRACE`` for what it sent
        last (``tidy``), every chunk still on it fails with that error. Another error: at
        once. No error: its "bye" comes (or came) on the socket."""
        if self.lanes.get(lane.identity) is not lane:
            return
        try:
            ran = lane.ar.get(0)
        except Exception as exc:
            if getattr(exc, "ename", None) == "EngineError":
                # what it sent just before it died may still be on its way, and may come after
                # ipyparallel's word of the death: the lane stays to take it, then ends
                lane.state = Lane.DYING
                lane.died = (time.monotonic(), exc)
                return
            if lane.state == Lane.OPENING:
                log.info("nbtasks: engine %s could not open a lane (%s); its chunks go by apply",
                         lane.engine, exc)
                self.apply_only.add(lane.engine)
            self._end(lane, exc)
            return
        if ran == -1:
            log.info("nbtasks: engine %s cannot reach %s; its chunks go by apply", lane.engine, self.address)
            self.apply_only.add(lane.engine)
            self._end(lane, LaneFailure("TaskAborted", "its engine could not reach the client"))
        else:
            lane.returned = time.monotonic()

    def _end(self, lane: Lane, error: BaseException) -> None:
        self.lanes.pop(lane.identity, None)
        if self.of_engine.get(lane.engine) is lane:
            del self.of_engine[lane.engine]
        chunks, lane.chunks = list(lane.chunks.values()), {}
        for chunk in chunks:
            chunk.ar.set(error=error)

    def _close(self, lane: Lane) -> None:
        if lane.state == Lane.OPEN:
            lane.state = Lane.CLOSING
            self._send(lane, "close")

    def _lane_of(self, chunk: Chunk) -> Lane | None:
        lane = self.of_engine.get(chunk.engine)
        return lane if lane is not None and chunk.id in lane.chunks else None

    # -- the socket -----------------------------------------------------------------------
    def _send(self, lane: Lane, kind: str, *args: Any, head: bytes | None = None, buffers: Any = ()) -> None:
        frames = [lane.identity, *self.wire.pack(kind, *args, head=head, buffers=buffers)]
        self.socket.send_multipart(frames, copy=Wire.copy(frames))

    def receive(self) -> None:
        """Take what engines sent (checked: a message not signed with the key is dropped)."""
        import zmq

        while True:
            try:
                identity, *frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            message = self.wire.unpack([f.buffer for f in frames])
            if message is not None:
                try:
                    self.on_message(identity.bytes, message)
                except Exception:  # a bug here must not stop the dispatcher
                    log.exception("nbtasks dispatcher failed handling a lane's %s", message.kind)

    def close(self) -> None:
        """Tell every engine its lane is over, and close the socket."""
        for lane in list(self.lanes.values()):
            self._close(lane)
        self.socket.close(linger=500)
