"""Adaptive chunk sizes, so a user never tunes one.

A chunk should be long enough to amortize its round trip (a few ms of
client and network work) yet short enough that every engine stays busy
and the tail is short. The first chunks of a stream are probes: up to
``probe_units`` units that their engine runs for ``floor`` seconds at most,
sending back the units it did not get to. Then we know the time per unit on
the engines and use guided self-scheduling: a chunk is a share of what is left, bounded
between ``floor`` and ``target`` seconds of work, and by ``max_bytes`` of
inputs and results: an engine starts a chunk only once all of it arrived, so
while one big chunk travels no unit of it runs (64 arrays of 16 MiB summed on
2 engines went in chunks of ~26 arrays, ~400 MiB each, by time alone).

A task run again (a loop of runs, a cell run again) starts from the time per unit
its last run measured (``UnitTimes``) instead of probing: 40 units of 50 ms on 2
engines went in ~5.5 chunks per engine, not ~7.5. A guess that is wrong costs
little: until a chunk is measured it only caps chunks (at ``target`` seconds), which
are still shares of what is left; a chunk it sized stops at twice the time it said
(``probe_budget``), and the first one measured replaces it.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

__all__ = ["ChunkSizer", "UnitTimes"]


class ChunkSizer:
    target = 0.4   # seconds of work per chunk, at most: each chunk costs an engine ~3-5 ms here
                   # (0.1 left 50 ms units at ~91% efficiency, 0.2 at ~94%, 0.4 at ~95.5%)
    floor = 0.02   # seconds of work per chunk, at least (while enough is left)
    share = 2      # chunks per engine over what is left: the tail shrinks geometrically
    max_bytes = 8 << 20  # inputs and results per chunk, beyond its first unit: ~8 ms on
                         # loopback, ~70 ms at 1 Gb/s, against ~3-5 ms a chunk costs anyway

    #: units a probe may carry: the engine runs them for ``floor`` seconds and sends back the
    #: rest, so tiny units are measured over many in one round trip and long ones over one
    probe_units = 256
    probe_bytes = 256 << 10  # inputs a probe may carry (the rest of it may travel back unrun)

    @property
    def probing(self) -> bool:
        return self.per_unit is None

    def probe_budget(self, units: int = 1) -> float | None:
        """Seconds the next chunk (of ``units``) may run before its engine stops it (None: no
        limit): a probe's ``floor``; a chunk sized by the last run's time per unit twice what
        that says, so units much slower now come back unrun after the first and the rest go
        in chunks sized by it (40 x 50 ms after 4 x 1 ms took ~1.020 s, not ~1.010 s)."""
        if self.per_unit is None:
            return self.floor
        if not self.samples:
            return max(self.floor, 2 * units * self.per_unit)
        return None

    def __init__(self, prior: float | None = None) -> None:
        self.per_unit: float | None = prior  # seconds, exponentially averaged (at first: ``prior``)
        self.samples = 0  # chunks measured here (the prior is not one)
        self.bytes_in = 0.0   # pickled input bytes per unit, of the last chunk sent
        self.bytes_out = 0.0  # pickled result bytes per unit, of the last chunk back

    def observe_bytes(self, units: int, sent: int | None = None, back: int | None = None) -> None:
        """A chunk of ``units`` went out as ``sent`` bytes, or came back as ``back``."""
        if units > 0:
            if sent is not None:
                self.bytes_in = sent / units
            if back is not None:
                self.bytes_out = back / units

    def observe(self, units: int, busy: float) -> None:
        if units <= 0:
            return
        per = max(busy / units, 1e-9)
        # weight by units so one odd tiny chunk does not swing a well-measured estimate
        weight = min(1.0, units / (4 * self.samples)) if self.samples else 1.0
        self.per_unit = per if self.per_unit is None else (1 - weight) * self.per_unit + weight * per
        self.samples += 1

    def size(self, pending: int, engines: int) -> int:
        """How many of ``pending`` units to put in the next chunk."""
        if pending <= 0:
            return 0
        if self.per_unit is None:  # a probe, run for ``floor`` seconds at most (see ``probe``)
            return max(1, min(self.probe_units, pending // (2 * max(engines, 1) * self.share)))
        guided = math.ceil(pending / (max(engines, 1) * self.share))
        # a guess from the last run sets no floor: units much slower now would fill few big chunks
        lo = max(1, int(self.floor / self.per_unit)) if self.samples else 1
        hi = max(1, int(self.target / self.per_unit))
        per_unit_bytes = self.bytes_in + self.bytes_out
        if per_unit_bytes * hi > self.max_bytes:
            hi = max(1, int(self.max_bytes / per_unit_bytes))
            lo = min(lo, hi)
        return max(1, min(pending, hi, max(lo, guided)))


class UnitTimes:
    """The time per unit each task's units took when it last ran (per mode: a map unit is
    not a reduce unit), kept while the task lives: the prior of its next run's sizer."""

    def __init__(self) -> None:
        self._times: "weakref.WeakKeyDictionary[Any, dict[str, float]]" = weakref.WeakKeyDictionary()

    def sizer(self, task: Any, mode: str) -> ChunkSizer:
        return ChunkSizer(self._times.get(task, {}).get(mode))

    def learned(self, task: Any, mode: str, sizer: ChunkSizer) -> None:
        if sizer.samples:
            self._times.setdefault(task, {})[mode] = sizer.per_unit
