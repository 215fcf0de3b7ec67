"""Running one chunk of units: the code that executes on an engine.

It never raises for a unit's own error: each failure is recorded with its
traceback so the rest of the chunk goes on, and the client decides what a
failure means. Whatever a unit raises, ``SystemExit`` and its own
``KeyboardInterrupt`` included, fails that unit only. Only the interrupt
nbtasks sends (SIGINT, a cancel) stops the chunk, which then returns what is
done so far. The signals nbtasks uses raise exceptions that derive from
``BaseException`` alone, so a unit's ``except Exception`` cannot swallow its
own timeout or a cancel.
"""

from __future__ import annotations

import io
import os
from array import array
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from . import progress as _progress
from .compose import map_unit, reduce_items
from .errors import UnitTimeout
from .sources import CodeOrigins
from .task import Task

__all__ = ["execute_chunk", "ChunkOutcome", "UnitFailure"]


@dataclass
class UnitFailure:
    """Why one unit failed on its engine."""

    summary: str  # one line: "ValueError: three is bad"
    traceback: str  # the user's frames only, "" when there are none
    exception: BaseException | None = None  # None when it could not travel back

    def without_exception(self) -> "UnitFailure":
        return UnitFailure(self.summary, self.traceback, None)


class _Expired(BaseException):
    """Raised into a unit by SIGALRM when it runs past its task's ``timeout``."""


class _Cancelled(BaseException):
    """Raised into a unit by the SIGINT nbtasks sends to interrupt a chunk."""


class ChunkOutcome:
    """What a chunk sends back. Plain attributes so it pickles small."""

    __slots__ = ("values", "errors", "ends", "t0", "stdout", "stderr", "out_marks", "err_marks",
                 "host", "pid", "busy", "cut")

    def __init__(self) -> None:
        self.values: list = []
        self.errors: dict[int, UnitFailure] = {}  # by position in the chunk
        self.ends = array("d")  # per unit, seconds since t0 (an array: pickles as one buffer)
        self.t0 = time.time()
        self.stdout = self.stderr = ""
        self.out_marks: list[tuple[int, int, int]] = []  # (unit, start, end) in stdout
        self.err_marks: list[tuple[int, int, int]] = []
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.busy = 0.0  # seconds spent in units (for chunk sizing)
        self.cut = False  # stopped at its time budget: the units after ``values`` were not run

    def __getstate__(self):
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state):
        self.cut = False  # outcomes stored before it existed
        for s, v in zip(self.__slots__, state):
            setattr(self, s, v)

    def piece(self, a: int, b: int, stdout: str, stderr: str) -> "ChunkOutcome":
        """Units ``a..b-1`` alone (positions from 0), sent while the chunk goes on, so
        that an engine dying later does not lose them. Errors travel as text only."""
        out = ChunkOutcome()
        out.t0, out.host, out.pid = self.t0, self.host, self.pid
        out.values = self.values[a:b]
        out.ends = self.ends[a:b]
        out.errors = {i - a: f.without_exception() for i, f in self.errors.items() if a <= i < b}
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
            out.ends.extend(piece.ends)
            out.busy = piece.busy
        return out


def _rebase(marks: list[tuple[int, int, int]], text: str, a: int, b: int) -> tuple[str, list]:
    """The output of units ``a..b-1`` and their marks within it."""
    inside = [(i, x, y) for i, x, y in marks if a <= i < b]
    if not inside:
        return "", []
    base = inside[0][1]
    return text[base: inside[-1][2]], [(i - a, x - base, y - base) for i, x, y in inside]


def _unit_fn(task: Task, mode: str, params: Mapping[str, Any], extra: tuple) -> Callable[[Any, int], Any]:
    """What runs one unit: ``fn(input, index)``."""
    if mode == "map":
        combiner, cparams = extra
        return lambda unit, i: map_unit(task, unit, params, i, combiner, cparams)
    if mode == "reduce":
        return lambda items, i: reduce_items(task, items, params)
    call = task.unit_caller(params)
    return lambda unit, i: call(unit)


class _Output(io.StringIO):
    """A chunk's prints, and which unit printed what: ``marks`` of (unit, start, end),
    one per unit that printed. Kept as they are written, so a unit that prints nothing
    costs nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[tuple[int, int, int]] = []

    def write(self, text: str) -> int:
        start = self.tell()
        n = super().write(text)
        unit = _progress.current
        marks = self.marks
        if marks and marks[-1][0] == unit:
            marks[-1] = (unit, marks[-1][1], start + n)
        else:
            marks.append((unit, start, start + n))
        return n


_OWN = os.path.dirname(os.path.abspath(__file__))


def _failure(exc: BaseException, origins: CodeOrigins | None, shown: BaseException | None = None) -> UnitFailure:
    """The failure ``exc`` stands for (reported as ``shown`` when given): its traceback
    without nbtasks' own frames above user code, shipped code under its original file
    names (``origins``). Plain text: no terminal colours."""
    shown = exc if shown is None else shown
    tb = exc.__traceback__
    frames = origins.frames(tb) if origins is not None else traceback.extract_tb(tb)
    frames = [f for f in frames if not os.path.abspath(f.filename).startswith(_OWN)]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(shown), shown)
    return UnitFailure(f"{type(shown).__name__}: {shown}", "".join(lines), shown)


class _Signals:
    """While a chunk runs: SIGALRM ends a unit past ``timeout`` (``_Expired``) and SIGINT
    stops the chunk (``_Cancelled``). Only on the main thread, as on an engine."""

    def __init__(self, timeout: float | None) -> None:
        main = threading.current_thread() is threading.main_thread()
        self.main = main
        self.timeout = timeout if main else None
        self.saved: dict[int, Any] = {}

    def _expired(self, signum: int, frame: Any) -> None:
        raise _Expired()

    def _interrupted(self, signum: int, frame: Any) -> None:
        raise _Cancelled()

    def expired_error(self) -> UnitTimeout:
        return UnitTimeout(f"the unit ran longer than its timeout of {self.timeout:g} s")

    def __enter__(self) -> "_Signals":
        if self.main:
            self.saved[signal.SIGINT] = signal.signal(signal.SIGINT, self._interrupted)
        if self.timeout:
            self.saved[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._expired)
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
        for number, handler in self.saved.items():
            signal.signal(number, handler)


def execute_chunk(task: Task, mode: str, params: Mapping[str, Any], inputs: list,
                  extra: tuple = (), first_index: int = 0,
                  on_unit: Callable[[ChunkOutcome, int, io.StringIO, io.StringIO], None] | None = None,
                  origins: CodeOrigins | None = None, every: float = 0.0,
                  budget: float | None = None) -> ChunkOutcome:
    """Run ``inputs`` one after the other; ``on_unit(outcome, i, out, err)`` after a unit
    that ends ``every`` seconds or more after the last call (after each with 0). With a
    ``budget`` (seconds), stop after the unit that reaches it (``cut``): the rest is not run.
    Tracebacks name shipped code by its ``origins``.

    The loop is what a no-op unit costs (millions of units a second go through it): it
    calls the unit, appends its end time, and does nothing else it can skip."""
    out = ChunkOutcome()
    fn = _unit_fn(task, mode, params, extra)
    timer = _Signals(getattr(task, "timeout", None))
    timed = bool(timer.timeout)
    values, ends, errors = out.values, out.ends, out.errors
    out_buf, err_buf = _Output(), _Output()
    out.out_marks, out.err_marks = out_buf.marks, err_buf.marks  # filled as units print
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out_buf, err_buf
    clock = time.perf_counter
    due = every if on_unit is not None else float("inf")
    stop_at = float("inf") if budget is None else budget
    last = first_index + len(inputs) - 1
    start = clock()
    try:
        timer.__enter__()
        for i, unit in enumerate(inputs, first_index):
            _progress.current = i - first_index
            try:
                if timed:
                    timer.arm()
                values.append(fn(unit, i))
                if timed:
                    timer.disarm()
            except _Cancelled:
                raise
            except _Expired as exc:
                values.append(None)
                errors[i - first_index] = _failure(exc, origins, timer.expired_error())
            except BaseException as exc:  # SystemExit, the unit's own KeyboardInterrupt: its failure
                timer.disarm()
                values.append(None)
                errors[i - first_index] = _failure(exc, origins)
            end = clock() - start
            ends.append(end)
            if end >= due:
                on_unit(out, i - first_index, out_buf, err_buf)
                due = end + every
            if end >= stop_at and i != last:
                out.cut = True
                break
    except _Cancelled:
        pass  # cancelled: the units finished before the signal go back
    finally:
        timer.__exit__()
        sys.stdout, sys.stderr = saved
        out.busy = clock() - start
    out.stdout, out.stderr = out_buf.getvalue(), err_buf.getvalue()
    return out
