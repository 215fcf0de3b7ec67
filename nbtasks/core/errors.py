"""Errors users see: each names the task, the unit and the cause."""

from __future__ import annotations

from typing import Any, Sequence

__all__ = [
    "NbtasksError",
    "TaskDefinitionError",
    "UnitError",
    "RunFailed",
    "RemoteTraceback",
    "InvalidTransition",
    "Retry",
    "UnitTimeout",
]


class NbtasksError(Exception):
    """Base of every error nbtasks raises itself."""


class TaskDefinitionError(NbtasksError, ValueError):
    """A composition that cannot run (bad partitions, a non-task where a task goes)."""


class InvalidTransition(NbtasksError, RuntimeError):
    """A state machine was asked for a move its transition table forbids."""


class Retry(Exception):
    """Raise inside ``work()`` to hand the unit back: it runs again, on another
    engine if there is one (TaskManager's ``returnTask``)."""


class UnitTimeout(NbtasksError, TimeoutError):
    """A unit ran longer than its task's ``timeout`` and was interrupted."""


class RemoteTraceback(Exception):
    """Carries the traceback text of an exception raised on an engine.

    Set as the ``__cause__`` of the re-raised exception so Python prints the
    remote frames first, the way ``concurrent.futures.process`` does.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb.rstrip()}\n"""'


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)`` (PEP 678), also on Python 3.10, which lacks the method."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:
        exc.__notes__ = [*getattr(exc, "__notes__", ()), note]


def short_repr(value: Any, limit: int = 80) -> str:
    """A repr safe to put in an error message: bounded and never raising."""
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__} (repr failed: {exc!r})>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class UnitError(NbtasksError):
    """One work unit failed; names the task, the unit's input and where it ran.

    ``__cause__`` is the original exception (when it could be sent back), whose
    own ``__cause__`` is a :class:`RemoteTraceback` with the engine's frames.
    """

    def __init__(
        self,
        task: str,
        index: int,
        input: Any,
        error: str,
        traceback: str = "",
        engine: int | None = None,
        host: str | None = None,
        pid: int | None = None,
        exception: BaseException | None = None,
    ) -> None:
        self.task = task
        self.index = index
        self.input = input
        self.error = error
        self.traceback = traceback
        self.engine = engine
        self.host = host
        self.pid = pid
        self.exception = exception
        self.node_id: int | None = None  # the row of the run's tree it belongs to
        where = "locally" if engine is None else f"on engine {engine} ({host}, pid {pid})"
        super().__init__(
            f"task {task!r} failed on unit {index} (input {short_repr(input)}) {where}: {error}"
        )

    def __reduce__(self):
        return (
            UnitError,
            (self.task, self.index, self.input, self.error, self.traceback,
             self.engine, self.host, self.pid, None),
        )


class RunFailed(NbtasksError):
    """Several units failed (``on_error="continue"``): prints a few, counts the rest."""

    shown = 3

    def __init__(self, task: str, failures: Sequence[UnitError], total: int | None = None) -> None:
        self.task = task
        self.failures = sorted(failures, key=lambda f: (f.task, f.index))
        lines = [f"{len(self.failures)} unit(s) of {task!r} failed"
                 + (f" (of {total})" if total is not None else "")]
        lines += [f"  - {f}" for f in self.failures[: self.shown]]
        if len(self.failures) > self.shown:
            lines.append(f"  ... and {len(self.failures) - self.shown} more (see run.failures)")
        super().__init__("\n".join(lines))
