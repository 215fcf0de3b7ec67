"""An engine's end of a lane: chunks straight from the client, one after the other.

A chunk sent by ``apply`` costs an ipykernel engine ~2.5-4 ms between two chunks
(the reply, output flushes, status messages, its event loop taking the next
request), idle although the next chunk waits: 3-4 points of every core on 50 ms
units. A lane is one ``apply`` of ``run_lane`` that connects to the client's socket
(``lanes.py``) and runs the chunks that arrive there, the next one read the moment
the last one's outcome is sent. Units still run on the engine's main thread, so
SIGINT (a cancel) and SIGALRM (a unit's timeout) work as they do for ``run_chunk``;
outside a chunk a SIGINT is ignored, as one landing between two applies is.

The client ends a lane (``close``) when it has had no work for the engine a moment,
or wants the engine for an ``apply`` of its own. The engine ends it by itself between
two chunks once the client's connection drops (a killed kernel), or after ``quiet``
seconds without a word: an engine in a lane does not check its controller's
heartbeats, so it must come back to its kernel's loop to notice that one is gone.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
import traceback
from typing import Any

from ..core.serialize import Pickled
from .engine import STREAM_EVERY, execute
from .lanewire import Wire

__all__ = ["run_lane", "HELLO_WAIT"]

HELLO_WAIT = 3.0  # seconds for the client to answer; no answer: it is out of reach, use applies
SETTLE_WAIT = 0.1  # seconds a long chunk's outcome may take to leave before the next chunk starts


def run_lane(address: str, identity: bytes, key: bytes, quiet: float) -> int:
    """Run the chunks the client at ``address`` sends until it says ``close`` or is
    quiet for ``quiet`` seconds; returns how many ran (-1: the client was out of reach)."""
    import zmq

    wire = Wire(key)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity)
    sock.linger = 5000  # the last outcome and the "bye" still leave if the client is slow
    monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    sock.connect(address)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    ran = 0
    try:
        sock.send_multipart(wire.pack("hello"))
        if not sock.poll(int(HELLO_WAIT * 1000)):
            return -1
        lane = _Lane(sock, monitor, wire)
        while lane.take(block=quiet):
            while lane.queue and not lane.gone:
                lane.run(*lane.queue.popleft())
                ran += 1
                lane.take(block=0)
        if not lane.gone:
            sock.send_multipart(wire.pack("bye", ran))
        return ran
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close()
        if main:
            signal.signal(signal.SIGINT, previous)


class _Lane:
    def __init__(self, sock: Any, monitor: Any, wire: Wire) -> None:
        import zmq

        self.sock = sock
        self.monitor = monitor
        self.wire = wire
        self.queue: collections.deque = collections.deque()  # (chunk id, args, payload)
        self.closing = False
        self.gone = False  # the client's connection dropped: nothing sent gets anywhere
        self.poller = zmq.Poller()
        self.poller.register(sock, zmq.POLLIN)
        self.poller.register(monitor, zmq.POLLIN)

    def take(self, block: float) -> bool:
        """Read what has arrived (waiting up to ``block`` seconds for something if the
        queue is empty); False once the lane is over."""
        import zmq

        wait = block if not self.queue and not self.closing else 0
        ready = dict(self.poller.poll(int(wait * 1000)))
        if self.monitor in ready:
            self.gone = True
            self.sock.linger = 0
            return False
        if wait and not ready:
            return False  # the client went quiet
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            message = self.wire.unpack([f.buffer for f in frames])
            if message is None:
                continue
            if message.kind == "chunk":
                self.queue.append((message.args, message.payload))
            elif message.kind == "drop":
                dropped = set(message.args[0])
                for item in [i for i in self.queue if i[0][0] in dropped]:
                    self.queue.remove(item)
                    self.send("aborted", item[0][0])
            elif message.kind == "close":
                self.closing = True
        return bool(self.queue) or not self.closing

    def run(self, args: tuple, payload: list) -> None:
        chunk_id, token, blob, first_index, budget = args
        started = time.monotonic()
        try:
            outcome = execute(token, blob, first_index, budget, Pickled(bytes(payload[0]), payload[1:]),
                              lambda data: self.send("data", chunk_id, data))
        except BaseException as exc:  # the task could not even start here: the client says so
            self.send("failed", chunk_id, type(exc).__name__, str(exc), traceback.format_exc())
            return
        # a chunk that took EVERY or longer is out of the process before the next one starts:
        # its units are then never run again if the engine dies (README, "When things go
        # wrong"); zmq sends from a thread of its own, ~0.1 ms later, a moment a kill can hit
        settle = time.monotonic() - started >= STREAM_EVERY
        self.send("outcome", chunk_id, head=outcome.head, buffers=outcome.buffers, settle=settle)

    def send(self, kind: str, *args: Any, head: bytes | None = None, buffers: Any = (),
             settle: bool = False) -> None:
        frames = self.wire.pack(kind, *args, head=head, buffers=buffers)
        if not settle:
            self.sock.send_multipart(frames, copy=Wire.copy(frames))
            return
        import zmq

        tracker = self.sock.send_multipart(frames, copy=False, track=True)
        try:
            tracker.wait(SETTLE_WAIT)
        except zmq.NotDone:  # the client is slow to take it: it goes when it can
            pass
