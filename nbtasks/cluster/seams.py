"""The seams between the dispatcher's parts, as protocols a reader can follow.

    Cluster ──EnginePool──> Dispatcher (thread, messages, scheduling)
                               ├── Outcomes  (a chunk's units: results, failures, retries)
                               └── Recovery  (lost chunks: engine deaths, lost replies, interrupts)
    Outcomes and Recovery reach the dispatcher through DispatchCore only.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..core.evaluate import Evaluation, UnitRequest
from .limits import Limits
from .streams import Chunk, Stream

__all__ = ["EnginePool", "DispatchCore"]


class EnginePool(Protocol):
    """What the dispatcher needs from its cluster (``Cluster`` is one)."""

    client: Any  # an ipyparallel Client
    engine_info: dict[int, dict[str, Any]]  # engine id -> host, pid

    def ensure_started(self) -> None:
        """Start the cluster if it is not (raises if it cannot)."""

    def keep_size(self) -> None:
        """Replace dead engines of a cluster nbtasks started (called every round)."""

    def lost(self) -> Exception | None:
        """Why the cluster can run nothing any more (its controller died), else None
        (called every round)."""

    def usable_engines(self) -> list[int]:
        """Engines that may take chunks now (registered and checked)."""

    def lane_hosts(self) -> tuple[str, str] | None:
        """Where lanes listen and the address engines dial (None: chunks go by apply)."""


class DispatchCore(Protocol):
    """What the dispatcher's parts need from it (``Dispatcher`` is one)."""

    cluster: EnginePool
    flight: dict[int, list[Chunk]]  # engine -> chunks sent to it, oldest first
    limits: Limits

    def requeue(self, stream: Stream, request: UnitRequest, start: int, stop: int,
                avoid: int | None = None) -> None:
        """Units ``start..stop-1`` of ``request`` wait again, ahead of the others."""

    def started(self, chunk: Chunk) -> None:
        """Its engine got to the chunk: its units count as running."""

    def forget_if_over(self, evaluation: Evaluation) -> None:
        """Drop a finished run's bookkeeping once none of its chunks is out."""

    def view(self, engine: int) -> Any:
        """The ipyparallel view that sends to ``engine``."""
