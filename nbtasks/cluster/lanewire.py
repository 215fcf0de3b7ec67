"""The messages of a lane (``lanes.py`` on the client, ``engine_lane.py`` on an engine).

    frames: [signature, meta, *payload]
        meta       pickle of (kind, args): small
        payload    none, or a pickle's head (signed) then its out-of-band buffers (not signed)
        signature  HMAC-SHA256 under the lane key of meta and the head

The key is random per client and reaches engines inside the ``apply`` that opens a
lane, over ipyparallel's own signed channel: a message anyone else sends to the port
fails the check and is dropped before anything in it is unpickled. Buffers are left
out of the signature, as Jupyter leaves them out of its messages': they are raw bytes
that only a signed head can give a meaning to.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
from typing import Any, Sequence

__all__ = ["Wire", "Message"]

#: payload frames smaller than this go copied (zmq copies small frames anyway, cheaper)
_ZERO_COPY = 64 * 1024


class Message:
    """One lane message as read: its ``kind``, ``args`` and ``payload`` frames."""

    __slots__ = ("kind", "args", "payload")

    def __init__(self, kind: str, args: tuple, payload: list) -> None:
        self.kind = kind
        self.args = args
        self.payload = payload


class Wire:
    """Packs and checks lane messages under one key."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def _signature(self, meta: Any, signed: Sequence[Any]) -> bytes:
        mac = hmac.new(self.key, meta, hashlib.sha256)
        for frame in signed:
            mac.update(frame)
        return mac.digest()

    def pack(self, kind: str, *args: Any, head: bytes | None = None, buffers: Sequence[Any] = ()) -> list:
        """Frames of a message; ``head`` (a pickle) is signed, its ``buffers`` are not."""
        assert head is not None or not buffers, "buffers go with the head that reads them"
        meta = pickle.dumps((kind, args), protocol=pickle.HIGHEST_PROTOCOL)
        signed = [] if head is None else [head]
        return [self._signature(meta, signed), meta, *signed, *buffers]

    @staticmethod
    def copy(frames: Sequence[Any]) -> bool:
        """Whether zmq should copy ``frames`` (all small) rather than hold them."""
        return all(memoryview(f).nbytes < _ZERO_COPY for f in frames)

    def unpack(self, frames: Sequence[Any]) -> Message | None:
        """The message in ``frames``, or None when it is not one of ours."""
        if len(frames) < 2:
            return None
        signature, meta, *payload = frames
        if not hmac.compare_digest(bytes(signature), self._signature(meta, payload[:1])):
            return None
        kind, args = pickle.loads(meta)
        return Message(kind, args, payload)
