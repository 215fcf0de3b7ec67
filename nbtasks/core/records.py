"""Per-unit records, kept per chunk so 100,000 units cost a few hundred objects.

A ``UnitRecord`` is made only when someone asks (``run.units()``,
``run.as_completed()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .states import UnitState

__all__ = ["UnitRecord", "ChunkRecord"]


@dataclass(frozen=True)
class UnitRecord:
    task: str
    tag: str
    index: int
    input: Any
    state: UnitState
    result: Any = None
    engine: int | None = None
    host: str | None = None
    pid: int | None = None
    start: float | None = None
    end: float | None = None
    stdout: str = ""
    stderr: str = ""
    error: BaseException | None = None

    @property
    def duration(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start


def _slices(text: str, marks: list) -> dict[int, str]:
    return {i: text[a:b] for i, a, b in marks}


class ChunkRecord:
    """What one finished chunk did: which units, where, when, what they printed."""

    __slots__ = ("request", "start", "stop", "engine", "outcome", "offset", "unit_errors", "again")

    def __init__(self, request: Any, start: int, stop: int, engine: int | None, outcome: Any,
                 offset: int, unit_errors: dict[int, BaseException], again: set[int] = frozenset()) -> None:
        self.request = request
        self.start, self.stop = start, stop  # units [start, stop) of the request
        self.engine = engine
        self.outcome = outcome               # shared by every slice of one chunk
        self.offset = offset                 # where this slice starts within the chunk
        self.unit_errors = unit_errors       # position within the slice -> UnitError
        self.again = again                   # positions that raised and run again elsewhere

    def units(self) -> list[UnitRecord]:
        req, out = self.request, self.outcome
        outs, errs = _slices(out.stdout, out.out_marks), _slices(out.stderr, out.err_marks)
        records = []
        previous = out.ends[self.offset - 1] if self.offset else 0.0
        for i in range(self.stop - self.start):
            j = self.offset + i
            end = out.ends[j]
            if i in self.again:  # this attempt does not count; a later record has the unit
                previous = end
                continue
            error = self.unit_errors.get(i)
            index = self.start + i
            records.append(UnitRecord(
                task=req.node.name, tag=req.node.task.tag, index=req.label(index), input=req.inputs[index],
                state=UnitState.FAILED if error else UnitState.DONE,
                result=None if error else req.results[index],
                engine=self.engine, host=out.host, pid=out.pid,
                start=out.t0 + previous, end=out.t0 + end,
                stdout=outs.get(j, ""), stderr=errs.get(j, ""), error=error))
            previous = end
        return records
