"""What the progress widget shows, computed in one place: rows, rates, ETAs, failures, output.

The model reads the run as it goes (its nodes' live counts, its failures and
output) and keeps the little history that rates need; the widget only draws.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from typing import Any

from ..core import states
from ..core.errors import short_repr

__all__ = ["RunModel", "Row", "format_duration"]

SHOWN_FAILURES = 20  # per task; the rest are counted
SHOWN_OUTPUT_LINES = 200


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}:{sec:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}"


@dataclass
class Row:
    """One task of the composition as a renderer draws it."""

    id: int
    name: str
    kind: str
    depth: int
    counts: dict[str, int]
    total: int
    finished: int
    rate: float | None          # units per second, recent
    eta: float | None           # seconds left at that rate
    unit_note: str = ""         # the latest ``nt.progress`` of a running unit
    failures: list[dict[str, Any]] = field(default_factory=list)
    more_failures: int = 0

    @property
    def fraction(self) -> float:
        return self.finished / self.total if self.total else 0.0


class RunModel:
    """Rows for a run's tree, with rates over the last few seconds."""

    window = 5.0  # seconds of history for the rate

    def __init__(self, run: Any) -> None:
        self.run = run
        self._history: dict[int, list[tuple[float, int]]] = {}
        self._seen_chunks = 0
        self._output: list[str] = []

    def rows(self) -> list[Row]:
        now = time.monotonic()
        failures = self._failures_by_node()
        out = []
        for node in self.run.nodes:
            counts = node.counts()
            finished, total = states.finished(counts), states.total(counts)
            rate = self._rate(node.id, now, finished)
            eta = None
            if rate and total > finished:
                eta = (total - finished) / rate
            elif total and total == finished:
                eta = 0.0
            note = ""
            report = self.run.unit_progress.get(node.id)
            if report is not None and counts["running"]:
                index, fraction, message = report
                note = f"unit {index}: {fraction:.0%}" + (f" {message}" if message else "")
            node_failures = failures.get(node.id, [])
            out.append(Row(node.id, node.name, node.kind, node.depth, counts, total, finished, rate, eta,
                           note, node_failures[:SHOWN_FAILURES],
                           max(0, len(node_failures) - SHOWN_FAILURES)))
        return out

    def _rate(self, node_id: int, now: float, finished: int) -> float | None:
        history = self._history.setdefault(node_id, [])
        if not history or history[-1][1] != finished or now - history[-1][0] > 1.0:
            history.append((now, finished))
        while len(history) > 2 and now - history[0][0] > self.window:
            history.pop(0)
        (t0, n0), (t1, n1) = history[0], history[-1]
        if t1 - t0 <= 0 or n1 - n0 < 2:  # one unit makes no rate
            return None
        return (n1 - n0) / (t1 - t0)

    def _failures_by_node(self) -> dict[int, list[dict[str, Any]]]:
        grouped: dict[int, list[dict[str, Any]]] = {}
        for f in self.run.failures:
            grouped.setdefault(f.node_id if f.node_id is not None else -1, []).append({
                "index": f.index, "input": short_repr(f.input), "engine": f.engine, "host": f.host,
                "error": f.error, "traceback": f.traceback})
        return grouped

    def output(self) -> str:
        """What units printed (stdout and stderr), newest last, bounded."""
        for chunk in self.run.chunks_since(self._seen_chunks):
            self._seen_chunks += 1
            outcome = chunk.outcome
            if chunk.offset == 0 and (outcome.stdout or outcome.stderr):  # once per chunk
                text = outcome.stdout + outcome.stderr
                self._output.extend(text.splitlines())
        if len(self._output) > SHOWN_OUTPUT_LINES:
            del self._output[: len(self._output) - SHOWN_OUTPUT_LINES]
        return "\n".join(self._output)

    def headline(self) -> dict[str, Any]:
        run = self.run
        counts = run.counts()
        return {"name": run.task.name, "state": run.state.value, "note": run.status_note,
                "elapsed": run.elapsed, "counts": counts, "done": run.done(),
                "error": None if run.error is None else (str(run.error).splitlines() or [repr(run.error)])[0],
                "cancel_reason": run.cancel_reason, "reused": run.reused}


def escape(text: Any) -> str:
    return html.escape(str(text), quote=True)
