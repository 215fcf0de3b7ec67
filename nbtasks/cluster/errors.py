"""Failures of the cluster as a whole, as opposed to one unit's (``nt.UnitError``)."""

from __future__ import annotations

from ..core.errors import NbtasksError

__all__ = ["ClusterError", "ClusterStopped", "ControllerLost", "EngineUnfit"]


class ClusterError(NbtasksError, RuntimeError):
    """The cluster cannot run nbtasks work (not reachable, engines unfit)."""


class ClusterStopped(ClusterError):
    """The cluster was stopped: it takes no new runs, and runs still going on it fail."""


class ControllerLost(ClusterError):
    """The cluster's controller died: runs on it fail at once, and it takes no new ones
    (their finished units are in the store for a run on another cluster)."""


class EngineUnfit(ClusterError):
    """An engine could not even start a task's chunk (a module the task imports is missing
    there, say): running it on another engine would fail the same way."""
