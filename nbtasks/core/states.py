"""Named states and the only moves allowed between them."""

from __future__ import annotations

import enum

from .errors import InvalidTransition

__all__ = ["RunState", "UnitState", "check_transition"]


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


def check_transition(current: RunState, new: RunState) -> None:
    if new not in _RUN_MOVES[current]:
        raise InvalidTransition(f"a run cannot go from {current.value} to {new.value}")
