"""Running one chunk of units: the code that executes on an engine.

It never raises for a unit's own error: each failure is recorded with its
traceback so the rest of the chunk goes on, and the client decides what a
failure means. An interrupt (cancel) stops the chunk and returns what is
done so far.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any, Callable, Mapping

from . import progress as _progress
from .compose import map_unit, reduce_items
from .errors import UnitTimeout
from .sources import CodeOrigins
from .task import Task

__all__ = ["execute_chunk", "ChunkOutcome"]


class ChunkOutcome:
    """What a chunk sends back. Plain attributes so it pickles small."""

    __slots__ = ("values", "errors", "ends", "t0", "stdout", "stderr", "out_marks", "err_marks",
                 "interrupted", "host", "pid", "busy")

    def __init__(self) -> None:
        self.values: list = []
        self.errors: dict[int, tuple[str, str, Any]] = {}  # index -> (summary, traceback, exc)
        self.ends: list[float] = []   # per unit, seconds since t0
        self.t0 = time.time()
        self.stdout = self.stderr = ""
        self.out_marks: list[tuple[int, int, int]] = []  # (unit, start, end) in stdout
        self.err_marks: list[tuple[int, int, int]] = []
        self.interrupted = False
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.busy = 0.0  # seconds spent in units (for chunk sizing)

    def __getstate__(self):
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state):
        for s, v in zip(self.__slots__, state):
            setattr(self, s, v)

    def piece(self, a: int, b: int, stdout: str, stderr: str) -> "ChunkOutcome":
        """Units ``a..b-1`` alone (positions from 0), sent while the chunk goes on, so
        that an engine dying later does not lose them. Errors travel as text only."""
        out = ChunkOutcome()
        out.t0, out.host, out.pid = self.t0, self.host, self.pid
        out.values = self.values[a:b]
        out.ends = self.ends[a:b]
        out.errors = {i - a: (s, tb, None) for i, (s, tb, _) in self.errors.items() if a <= i < b}
        out.stdout, out.out_marks = _rebase(self.out_marks, stdout, a, b)
        out.stderr, out.err_marks = _rebase(self.err_marks, stderr, a, b)
        out.busy = self.ends[b - 1] if b else 0.0
        return out

    @classmethod
    def join(cls, pieces: list[tuple[int, "ChunkOutcome"]]) -> "ChunkOutcome | None":
        """The units of ``(position, piece)`` pieces that run on from position 0 (None if none)."""
        pieces = sorted(pieces, key=lambda p: p[0])
        if not pieces or pieces[0][0] != 0:
            return None
        out = cls()
        first = pieces[0][1]
        out.t0, out.host, out.pid = first.t0, first.host, first.pid
        for at, piece in pieces:
            if at != len(out.values):
                break
            out.errors.update({at + i: e for i, e in piece.errors.items()})
            out.out_marks += [(at + i, len(out.stdout) + x, len(out.stdout) + y) for i, x, y in piece.out_marks]
            out.err_marks += [(at + i, len(out.stderr) + x, len(out.stderr) + y) for i, x, y in piece.err_marks]
            out.stdout += piece.stdout
            out.stderr += piece.stderr
            out.values += piece.values
            out.ends += piece.ends
            out.busy = piece.busy
        return out


def _rebase(marks: list[tuple[int, int, int]], text: str, a: int, b: int) -> tuple[str, list]:
    """The output of units ``a..b-1`` and their marks within it."""
    inside = [(i, x, y) for i, x, y in marks if a <= i < b]
    if not inside:
        return "", []
    base = inside[0][1]
    return text[base: inside[-1][2]], [(i - a, x - base, y - base) for i, x, y in inside]


def _unit_fn(task: Task, mode: str, params: Mapping[str, Any], extra: tuple):
    if mode == "map":
        combiner, cparams = extra
        return lambda unit, i: map_unit(task, unit, params, i, combiner, cparams)
    if mode == "reduce":
        return lambda items, i: reduce_items(task, items, params)
    call = task._call
    return lambda unit, i: call(unit, params)


_OWN = os.path.dirname(os.path.abspath(__file__))


def _describe(exc: BaseException, origins: CodeOrigins | None = None) -> tuple[str, str]:
    """One-line summary and the traceback without nbtasks' own frames above user code,
    shipped code under its original file names (``origins``)."""
    tb = exc.__traceback__
    frames = origins.frames(tb) if origins is not None else traceback.extract_tb(tb)
    frames = [f for f in frames if not os.path.abspath(f.filename).startswith(_OWN)]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return f"{type(exc).__name__}: {exc}", "".join(lines)


class _Timer:
    """Interrupts a unit that runs past ``timeout`` with ``UnitTimeout`` (SIGALRM,
    so only where units run on the main thread, as on an engine)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout if threading.current_thread() is threading.main_thread() else None
        self.saved: Any = None

    def _expired(self, signum: int, frame: Any) -> None:
        raise UnitTimeout(f"the unit ran longer than its timeout of {self.timeout:g} s")

    def __enter__(self) -> "_Timer":
        if self.timeout:
            self.saved = signal.signal(signal.SIGALRM, self._expired)
        return self

    def arm(self) -> None:
        if self.timeout:
            signal.setitimer(signal.ITIMER_REAL, self.timeout)

    def disarm(self) -> None:
        if self.timeout:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def __exit__(self, *exc: Any) -> None:
        if self.timeout:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.saved)


def execute_chunk(task: Task, mode: str, params: Mapping[str, Any], inputs: list,
                  extra: tuple = (), first_index: int = 0,
                  on_unit: Callable[[ChunkOutcome, int, io.StringIO, io.StringIO], None] | None = None,
                  origins: CodeOrigins | None = None) -> ChunkOutcome:
    """Run ``inputs`` one after the other; ``on_unit(outcome, i, out, err)`` after each.
    Tracebacks name shipped code by its ``origins``."""
    out = ChunkOutcome()
    fn = _unit_fn(task, mode, params, extra)
    timer = _Timer(getattr(task, "timeout", None))
    values, ends, errors = out.values, out.ends, out.errors
    out_buf, err_buf = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out_buf, err_buf
    o_pos = e_pos = 0
    start = time.perf_counter()
    clock = time.perf_counter
    try:
        timer.__enter__()
        for i, unit in enumerate(inputs):
            _progress.current = i
            try:
                timer.arm()
                value = fn(unit, first_index + i)
                timer.disarm()
                values.append(value)
            except Exception as exc:
                timer.disarm()
                values.append(None)
                summary, text = _describe(exc, origins)
                errors[i] = (summary, text, exc)
            ends.append(clock() - start)
            if out_buf.tell() != o_pos:
                out.out_marks.append((i, o_pos, out_buf.tell()))
                o_pos = out_buf.tell()
            if err_buf.tell() != e_pos:
                out.err_marks.append((i, e_pos, err_buf.tell()))
                e_pos = err_buf.tell()
            if on_unit is not None:
                on_unit(out, i, out_buf, err_buf)
    except KeyboardInterrupt:
        out.interrupted = True  # cancelled: keep the units finished before the signal
    finally:
        timer.__exit__()
        sys.stdout, sys.stderr = saved
        out.busy = clock() - start
    out.stdout, out.stderr = out_buf.getvalue(), err_buf.getvalue()
    return out
