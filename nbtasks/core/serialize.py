"""Serialization for engines (cloudpickle), with errors that name the culprit.

cloudpickle sends lambdas, closures and classes defined in notebook cells by
value. When something cannot be pickled, its own message rarely says where
the object hides; ``find_unpicklable`` walks the object to name it.

Big buffers travel beside the pickle, not inside it (``dump`` → ``Pickled``):

    obj ──pickle protocol 5──> head (small) + buffers >= OUT_OF_BAND (views of the arrays)
        wire():     head, layout, *frames    ipyparallel sends each frame as its own zmq
                                             frame, without copying it (apply arguments, results)
        chunks():   MAGIC, sizes, head, buffers   bytes, for the run store and the data channel
    loads(): pickle.loads(head, buffers=...)  arrays rebuilt on the frames' memory, no copy

NumPy arrays (and whatever pickles a ``pickle.PickleBuffer``: pandas' blocks, a
``PickleBuffer`` of your own) pickle this way; object arrays, non-contiguous
views and small buffers go inside the pickle as before. A rebuilt array is
writable exactly when its original was: a read-only buffer (bytes read back from
the store, say) is copied first, so a unit may change its input in place.
"""

from __future__ import annotations

import pickle
import struct
import types
from typing import Any, Callable, Sequence

import cloudpickle

from .travel import mark_local_modules

__all__ = ["dumps", "dump", "split", "loads", "Pickled", "find_unpicklable", "UnpicklableError", "OUT_OF_BAND"]

#: buffers this big or bigger travel out of band; it is jupyter_client's ``copy_threshold``:
#: zmq copies smaller frames anyway, and a frame costs more than copying a few KiB
OUT_OF_BAND = 64 * 1024
#: framed bytes start so; a plain pickle (protocol 2 and up) starts with b"\x80"
MAGIC = b"\x00NBF1"
_COUNT = struct.Struct("<I")


def _writable(buffer: Any) -> memoryview:
    """The buffer itself if it can be written to, else a writable copy: pickle makes the
    buffers of read-only originals read-only by itself, so rebuilt objects are writable
    exactly when the originals were."""
    view = memoryview(buffer)
    return memoryview(bytearray(view)) if view.readonly else view


class Pickled:
    """A protocol-5 pickle (``head``) and the buffers it left out, in pickle order."""

    __slots__ = ("head", "buffers")

    def __init__(self, head: bytes, buffers: Sequence[Any] = ()) -> None:
        self.head = head
        self.buffers: tuple[memoryview, ...] = tuple(memoryview(b) for b in buffers)

    def __repr__(self) -> str:
        return f"<Pickled {len(self.head)} bytes + {len(self.buffers)} buffers of {self.nbytes - len(self.head)}>"

    @property
    def nbytes(self) -> int:
        """Bytes in all (as ``chunks`` would write them, framing aside)."""
        return len(self.head) + sum(b.nbytes for b in self.buffers)

    def loads(self) -> Any:
        return pickle.loads(self.head, buffers=[_writable(b) for b in self.buffers])

    def owned(self) -> "Pickled":
        """A copy that no later change to the originals reaches (the buffers are views of
        them): what a store or a late engine must get is the value as it was now."""
        if not self.buffers:
            return self
        return Pickled(self.head, [bytes(b) for b in self.buffers])

    # -- as zmq frames (ipyparallel apply arguments and results) --------------------------
    def wire(self, limit: int | None = None) -> tuple:
        """``(head, layout, *frames)``: ipyparallel sends each frame zero-copy. With more
        than ``limit`` buffers (a result tuple of 64 items or more is pickled whole by
        ipyparallel) the smallest are joined into one frame; ``layout`` then says where
        each buffer is, else it is None."""
        buffers = self.buffers
        if limit is None or len(buffers) <= limit:
            return (self.head, None, *buffers)
        largest = sorted(range(len(buffers)), key=lambda i: buffers[i].nbytes, reverse=True)[: limit - 1]
        alone = {i: n for n, i in enumerate(sorted(largest))}
        joined = bytearray()
        layout = []
        for i, buffer in enumerate(buffers):
            if i in alone:
                layout.append((alone[i], 0, buffer.nbytes))
            else:
                layout.append((len(alone), len(joined), len(joined) + buffer.nbytes))
                joined += buffer
        frames = [buffers[i] for i in sorted(alone)] + [memoryview(joined)]
        return (self.head, layout, *frames)

    @classmethod
    def from_wire(cls, items: Sequence[Any]) -> "Pickled":
        head, layout, *frames = items
        if layout is None:
            return cls(bytes(head), frames)
        views = [memoryview(f) for f in frames]
        return cls(bytes(head), [views[f][a:b] for f, a, b in layout])

    # -- as bytes (the run store, ipyparallel's data channel) -------------------------------
    def chunks(self) -> list:
        """Pieces whose concatenation ``from_bytes`` reads: the pickle alone when nothing
        was left out (a plain pickle, as older stores hold), else a small header first."""
        if not self.buffers:
            return [self.head]
        sizes = [len(self.head)] + [b.nbytes for b in self.buffers]
        header = MAGIC + _COUNT.pack(len(self.buffers)) + struct.pack(f"<{len(sizes)}Q", *sizes)
        return [header, self.head, *self.buffers]

    def to_bytes(self) -> bytes:
        return b"".join(self.chunks())

    @classmethod
    def from_bytes(cls, data: Any) -> "Pickled":
        """Read what ``chunks`` wrote (or a plain pickle); buffers are views of ``data``."""
        view = memoryview(data)
        if view[: len(MAGIC)] != MAGIC:
            return cls(data if isinstance(data, bytes) else bytes(view))
        at = len(MAGIC)
        (count,) = _COUNT.unpack_from(view, at)
        at += _COUNT.size
        sizes = struct.unpack_from(f"<{count + 1}Q", view, at)
        at += 8 * (count + 1)
        parts = []
        for size in sizes:
            parts.append(view[at: at + size])
            at += size
        if at != len(view):
            raise pickle.UnpicklingError(f"framed pickle of {len(view)} bytes holds {at}")
        return cls(bytes(parts[0]), parts[1:])


def loads(data: Any) -> Any:
    """Unpickle what ``Pickled.chunks`` wrote, or a plain pickle."""
    return Pickled.from_bytes(data).loads()


class UnpicklableError(pickle.PicklingError, TypeError):
    """Something that must travel to an engine cannot be pickled."""


def _picklable(obj: Any) -> bool:
    try:
        cloudpickle.dumps(obj)
        return True
    except Exception:
        return False


def _parts(obj: Any) -> list[tuple[str, Any]]:
    """Named pieces of ``obj`` that pickling it would also pickle."""
    if isinstance(obj, types.FunctionType):
        parts = []
        code = obj.__code__
        for name in code.co_names:
            if name in obj.__globals__:
                parts.append((f"global {name!r} of {obj.__qualname__}", obj.__globals__[name]))
        for name, cell in zip(code.co_freevars, obj.__closure__ or ()):
            try:
                parts.append((f"variable {name!r} captured by {obj.__qualname__}", cell.cell_contents))
            except ValueError:
                pass
        parts += [(f"default {i} of {obj.__qualname__}", d) for i, d in enumerate(obj.__defaults__ or ())]
        return parts
    if isinstance(obj, types.MethodType):
        return [("its instance", obj.__self__), ("its function", obj.__func__)]
    if isinstance(obj, dict):
        return [(f"[{k!r}]", v) for k, v in obj.items()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [(f"[{i}]", v) for i, v in enumerate(obj)]
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict):
        return [(f".{k}", v) for k, v in state.items()]
    return []


def find_unpicklable(obj: Any, depth: int = 6) -> tuple[str, Any]:
    """A path to the innermost part of ``obj`` that cannot be pickled, and that part."""
    path, current = [], obj
    seen = {id(obj)}
    for _ in range(depth):
        for label, part in _parts(current):
            if id(part) in seen or _picklable(part):
                continue
            seen.add(id(part))
            path.append(label)
            current = part
            break
        else:
            break
    return " → ".join(path), current


def dumps(obj: Any, what: str) -> bytes:
    """Pickle ``obj`` for an engine; on failure name ``what`` and the culprit."""
    mark_local_modules()  # local modules' code goes by value (travel.py)
    try:
        return cloudpickle.dumps(obj)
    except Exception as exc:
        raise _unpicklable(obj, what, exc) from exc


def split(obj: Any, pickler: Callable[..., bytes] = cloudpickle.dumps) -> Pickled:
    """Pickle ``obj`` with its buffers of ``OUT_OF_BAND`` bytes or more left out
    (``pickler``: ``pickle.dumps`` where cloudpickle's by-value code is not wanted)."""
    buffers: list[memoryview] = []

    def keep_large(buffer: pickle.PickleBuffer) -> bool:  # True: inside the pickle
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: pickle copies it in
            return True
        if raw.nbytes < OUT_OF_BAND:
            return True
        buffers.append(raw)
        return False

    return Pickled(pickler(obj, protocol=5, buffer_callback=keep_large), buffers)


def dump(obj: Any, what: str) -> Pickled:
    """``dumps`` with big buffers left out of the pickle (views of them: see ``owned``)."""
    mark_local_modules()
    try:
        return split(obj)
    except Exception as exc:
        raise _unpicklable(obj, what, exc) from exc


def _unpicklable(obj: Any, what: str, exc: Exception) -> UnpicklableError:
    path, culprit = find_unpicklable(obj)
    where = f" ({path})" if path else ""
    return UnpicklableError(f"{what} cannot be sent to engines: {type(culprit).__name__} object{where} "
                            f"cannot be pickled: {exc}")
