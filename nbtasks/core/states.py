"""Named states and the only moves allowed between them: runs, and the units of a node.

Units are counted, not tracked one by one (a run may have millions): a node's
:class:`UnitCounts` holds how many of its units are in each state and changes only
through the named moves of ``UNIT_MOVES``, which refuse a move from a state that
does not hold enough units. "Total", "finished" and "live" are defined here once.
"""

from __future__ import annotations

import enum
from typing import Mapping

from .errors import InvalidTransition

__all__ = ["RunState", "UnitState", "UnitCounts", "UNIT_MOVES", "COUNTS", "LIVE", "check_transition",
           "total", "finished"]


class RunState(str, enum.Enum):
    PENDING = "pending"      # submitted; waiting for the cluster or for engines
    RUNNING = "running"      # units are being dispatched
    DONE = "done"            # finished with a result
    FAILED = "failed"        # finished with an error
    CANCELLED = "cancelled"  # stopped by cancel()

    @property
    def finished(self) -> bool:
        return self in (RunState.DONE, RunState.FAILED, RunState.CANCELLED)


class UnitState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


_RUN_MOVES = {
    RunState.PENDING: {RunState.RUNNING, RunState.DONE, RunState.FAILED, RunState.CANCELLED},
    RunState.RUNNING: {RunState.DONE, RunState.FAILED, RunState.CANCELLED},
    RunState.DONE: set(),
    RunState.FAILED: set(),
    RunState.CANCELLED: set(),
}


def check_transition(current: enum.Enum, new: enum.Enum, moves: Mapping = _RUN_MOVES, what: str = "a run") -> None:
    """Refuse a move that ``moves`` (state -> the states it may go to) does not list."""
    if new not in moves[current]:
        raise InvalidTransition(f"{what} cannot go from {current.value} to {new.value}")


U = UnitState
#: move -> (the states it may take units from, the state it puts them in); None: not
#: counted (units enter a run by ``queue`` and may leave it by ``withdraw`` before dispatch)
UNIT_MOVES: dict[str, tuple[frozenset, UnitState | None]] = {
    "queue": (frozenset({None}), U.QUEUED),
    "withdraw": (frozenset({U.QUEUED}), None),  # counted at submit, counted again when dispatched
    "start": (frozenset({U.QUEUED}), U.RUNNING),
    "reuse": (frozenset({U.QUEUED}), U.DONE),  # taken from the store instead of running
    "finish": (frozenset({U.RUNNING, U.QUEUED}), U.DONE),
    "fail": (frozenset({U.RUNNING, U.QUEUED}), U.FAILED),
    "retry": (frozenset({U.RUNNING, U.QUEUED}), U.QUEUED),  # counted in ``retried`` too
    "unreached": (frozenset({U.RUNNING, U.QUEUED}), U.QUEUED),  # its chunk stopped first: they wait again
    "cancel": (frozenset({U.RUNNING, U.QUEUED}), U.CANCELLED),
}
#: the keys of a counts dict: every unit state, and ``retried`` (how many moves were retries)
COUNTS = ("queued", "running", "done", "failed", "retried", "cancelled")
LIVE = (U.QUEUED, U.RUNNING)  # units that may still finish


def total(counts: Mapping[str, int]) -> int:
    """Units of a counts dict in any state (``retried`` counts moves, not units)."""
    return sum(counts[state.value] for state in UnitState)


def finished(counts: Mapping[str, int]) -> int:
    """Units that ran to an end: done or failed."""
    return counts["done"] + counts["failed"]


class UnitCounts:
    """How many of one node's units are in each state. Written by one thread (the
    backend's dispatch thread); read from any, as plain ints."""

    __slots__ = COUNTS

    def __init__(self) -> None:
        for name in COUNTS:
            setattr(self, name, 0)

    def _move(self, move: str, n: int, source: UnitState | None) -> None:
        if n == 0:
            return
        sources, target = UNIT_MOVES[move]
        if n < 0 or source not in sources:
            raise InvalidTransition(f"cannot {move} {n} unit(s) from {getattr(source, 'value', 'nowhere')}")
        if source is not None:
            held = getattr(self, source.value)
            if held < n:
                raise InvalidTransition(f"cannot {move} {n} {source.value} unit(s): only {held} are")
            setattr(self, source.value, held - n)
        if target is not None:
            setattr(self, target.value, getattr(self, target.value) + n)
        if move == "retry":
            self.retried += n

    def queue(self, n: int) -> None:
        self._move("queue", n, None)

    def withdraw(self, n: int) -> None:
        self._move("withdraw", n, U.QUEUED)

    def start(self, n: int) -> None:
        self._move("start", n, U.QUEUED)

    def reuse(self, n: int) -> None:
        self._move("reuse", n, U.QUEUED)

    def finish(self, n: int, source: UnitState = U.RUNNING) -> None:
        self._move("finish", n, source)

    def fail(self, n: int, source: UnitState = U.RUNNING) -> None:
        self._move("fail", n, source)

    def retry(self, n: int, source: UnitState = U.RUNNING) -> None:
        self._move("retry", n, source)

    def unreached(self, n: int, source: UnitState = U.RUNNING) -> None:
        self._move("unreached", n, source)

    def cancel(self, n: int, source: UnitState = U.QUEUED) -> None:
        self._move("cancel", n, source)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTS}
