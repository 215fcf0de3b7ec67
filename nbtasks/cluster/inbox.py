"""The dispatch thread's inbox: messages from any thread, and one wait for them and for
the sockets the dispatch thread reads itself (its lanes, ``lanes.py``).

A queue holds the messages; each ``put`` also writes a byte to a socket pair whose read end a
zmq poller watches beside those sockets, so an engine's outcome on a lane wakes the dispatch
thread directly, with no thread in between to hand it over (each hand-over is a thread
woken on a core the engines need).
"""

from __future__ import annotations

import queue
import socket
from typing import Any

__all__ = ["Inbox"]


class Inbox:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        # a socket pair, not a pipe: once closed, a late put fails instead of writing to
        # whatever file reused the descriptor
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._poller: Any = None  # made on the dispatch thread, when it first waits

    def _poll(self) -> Any:
        if self._poller is None:
            import zmq

            self._poller = zmq.Poller()
            self._poller.register(self._read.fileno(), zmq.POLLIN)
        return self._poller

    def put(self, message: Any) -> None:
        """From any thread."""
        self._queue.put(message)
        try:
            self._write.send(b"\0")
        except OSError:  # full (the thread is woken already) or closed (it stopped)
            pass

    def watch(self, sock: Any) -> None:
        """Wake ``wait`` when zmq socket ``sock`` (the dispatch thread's own) has a message."""
        import zmq

        self._poll().register(sock, zmq.POLLIN)

    def take(self) -> list:
        """Every message there is now, oldest first."""
        messages = []
        while True:
            try:
                messages.append(self._queue.get_nowait())
            except queue.Empty:
                return messages

    def wait(self, timeout: float) -> None:
        """Until a message or a watched socket's message comes, or ``timeout`` seconds."""
        if self._queue.empty():
            self._poll().poll(int(timeout * 1000))
        try:
            while self._read.recv(65536):
                pass
        except OSError:  # drained
            pass

    def close(self) -> None:
        self._read.close()
        self._write.close()
