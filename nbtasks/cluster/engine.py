"""Entry points that run on engines. Imported there by reference, so the
engines need nbtasks installed (checked when a cluster is connected).

Inputs, results and shared values travel as ``Pickled.wire()`` items: their big
buffers (NumPy arrays) are zmq frames of their own, and the arrays a unit gets
are built on those frames' memory, writable, without a copy (``core/serialize.py``).
"""

from __future__ import annotations

import collections
import functools
import logging
import time
from typing import Any, Callable

import cloudpickle

from ..core import progress as _progress
from ..core import shared as _shared
from ..core.serialize import Pickled, split
from ..core.unitexec import ChunkOutcome, UnitFailure, execute_chunk

PROGRESS_KEY = "nbtasks.progress"
UNITS_KEY = "nbtasks.units."  # + the position of the piece's first unit
_PROGRESS_EVERY = 0.1  # seconds between two reports from one engine (the last one always goes)
_last_report = [0.0]
#: seconds between two sends of finished units while a chunk goes on (``_Streamer``)
STREAM_EVERY = 0.2
#: frames a reply may have: ipyparallel pickles a result tuple of 64 items or more whole
REPLY_FRAMES = 60

__all__ = ["run_chunk", "probe", "store_shared", "drop_shared", "install_packages"]

# pickled task per stream, so a chunk does not unpickle the task again
_tasks: "collections.OrderedDict[str, tuple]" = collections.OrderedDict()
_CACHE = 32


def _task_for(token: str, blob: bytes) -> tuple:
    entry = _tasks.get(token)
    if entry is None:
        entry = _tasks[token] = cloudpickle.loads(blob)
        entry[-1].install()  # the lines of notebook cells and of files this host lacks
        while len(_tasks) > _CACHE:
            _tasks.popitem(last=False)
    return entry


def _sendable(outcome: ChunkOutcome, task_name: str) -> Pickled:
    """Pickle the outcome; a value or error that cannot travel fails its unit only."""
    try:
        return split(outcome)
    except Exception:
        pass
    for i, value in enumerate(outcome.values):
        try:
            split(value)
        except Exception as exc:
            outcome.values[i] = None
            outcome.errors[i] = UnitFailure(
                f"PicklingError: the result of task {task_name!r} ({type(value).__name__}) cannot be "
                f"pickled to send it back: {exc}", "")
    for i, failure in list(outcome.errors.items()):
        try:
            cloudpickle.dumps(failure.exception)
        except Exception:
            outcome.errors[i] = failure.without_exception()
    return split(outcome)


def _publish_data(data: dict) -> None:
    """Send ``data`` to the client through ipyparallel's data channel (a chunk sent by apply)."""
    from ipyparallel.engine.datapub import publish_data

    publish_data(data)


#: where a chunk's progress and finished units go: ipyparallel's data channel, or a lane's socket
Publish = Callable[[dict], None]


def _progress_reporter(publish: Publish) -> Callable[[int, float, str], None]:
    def report(position: int, fraction: float, message: str) -> None:
        """Send a unit's progress to the client, at most every ``_PROGRESS_EVERY`` seconds."""
        now = time.monotonic()
        if fraction < 1.0 and now - _last_report[0] < _PROGRESS_EVERY:
            return
        _last_report[0] = now
        publish({PROGRESS_KEY: (position, fraction, message)})

    return report


class _Streamer:
    """Sends finished units to the client while the chunk goes on (ipyparallel's data
    channel), so an engine that dies mid-chunk loses little: what finished goes at least
    every ``EVERY`` seconds (a unit that took that long goes as it ends), and only the
    units of the last ``EVERY`` seconds before a death run again. Each message costs the
    engine, the controller and the client CPU the engines could use, so not one per unit
    (at one per 5 ms unit, 2 engines ran 400 units at ~86 % efficiency, not ~95 %).
    Results sent so travel twice (the reply has them all): units whose big buffers would
    take longer to send again (at ``RESEND_RATE``) than they took to run are held back, to
    run again should the engine die."""

    EVERY = STREAM_EVERY
    RESEND_RATE = 100e6  # bytes/s: about a 1 Gb/s network (loopback is ~10x faster)

    def __init__(self, units: int, publish: Publish) -> None:
        self.units = units
        self.publish = publish
        self.sent = 0

    def __call__(self, out: ChunkOutcome, i: int, stdout: Any, stderr: Any) -> None:
        if i == self.units - 1:
            return  # the chunk's reply follows at once
        piece = out.piece(self.sent, i + 1, stdout.getvalue(), stderr.getvalue())
        try:
            pickled = split(piece)
        except Exception:
            return  # the reply will say what could not be pickled
        if pickled.buffers and pickled.nbytes > self.RESEND_RATE * (out.ends[i] - _start_of(out, self.sent)):
            return  # cheaper to run again than to send twice
        self.publish({f"{UNITS_KEY}{self.sent}": pickled.to_bytes()})
        self.sent = i + 1


def _start_of(out: ChunkOutcome, position: int) -> float:
    """When the unit at ``position`` started (seconds since the chunk's t0)."""
    return out.ends[position - 1] if position else 0.0


def _drop_unread_debug_logs() -> None:
    """ipyparallel leaves its engine kernel's logger at DEBUG while every handler takes
    INFO or above: each message built about ten debug records only to throw them away,
    ~13 % of what an engine spends per chunk. Raise the logger to what its handlers take
    (the same records are written; none is built in vain)."""
    from ipykernel.kernelbase import Kernel

    if not Kernel.initialized():
        return
    logger = getattr(Kernel.instance(), "log", None)
    if not isinstance(logger, logging.Logger) or logger.level == logging.NOTSET:
        return
    taken, current = [], logger
    while current is not None:
        taken += [h.level for h in current.handlers]
        current = current.parent if current.propagate else None
    if taken and min(taken) > logger.level:
        logger.setLevel(min(taken))


@functools.cache
def _settle() -> None:
    """Once per engine, at its first chunk."""
    _drop_unread_debug_logs()


def run_chunk(token: str, task_blob: bytes, first_index: int, budget: float | None, *inputs_wire: Any) -> tuple:
    """Run a chunk's units; ``inputs_wire``: their inputs as ``Pickled.wire()`` items;
    ``budget``: seconds after which to stop (a probe's). Returns the outcome the same way."""
    outcome = execute(token, task_blob, first_index, budget, Pickled.from_wire(inputs_wire), _publish_data)
    return outcome.wire(REPLY_FRAMES)


def execute(token: str, task_blob: bytes, first_index: int, budget: float | None,
            inputs: Pickled, publish: Publish) -> Pickled:
    """A chunk's units run here, whichever way the chunk came (``run_chunk``, a lane);
    progress and finished units go out through ``publish`` meanwhile."""
    _settle()
    _progress.set_reporter(_progress_reporter(publish))
    task, mode, params, extra, origins = _task_for(token, task_blob)
    values = inputs.loads()
    outcome = execute_chunk(task, mode, params, values, extra, first_index,
                            on_unit=_Streamer(len(values), publish), origins=origins, every=_Streamer.EVERY,
                            budget=budget)
    return _sendable(outcome, task.name)


def probe() -> None:
    """A no-op the dispatcher sends to learn whether an engine lost a chunk's reply."""


def store_shared(layout: list[tuple[str, bytes, int]], *buffers: Any) -> list[str]:
    """Unpickle shared values into this engine's registry; returns what it now holds.
    ``layout``: per value its name, pickle and how many of ``buffers`` are its."""
    at = 0
    for name, head, count in layout:
        _shared.put(name, Pickled(head, buffers[at: at + count]).loads())
        at += count
    return _shared.names()


def drop_shared(names: list[str]) -> list[str]:
    for name in names:
        _shared.remove(name)
    return _shared.names()


def install_packages(packages: list) -> list[str]:
    """Install task packages (dependencies first, as the client orders them)."""
    from .packages import install

    entries: list[str] = []
    for package in packages:
        entries += install(package)
    return entries

