"""Per-task limits, the pydatatask way: how many of a task's units may be on
engines at once (``max_concurrent``) and how many may start per time window
(``rate=(n, seconds)``), across every run on the cluster. A large run then
leaves room for an interactive one, and a fragile service is not flooded.
"""

from __future__ import annotations

import collections
import time
from typing import Any

__all__ = ["Limits"]


class Limits:
    """Bookkeeping of the dispatch thread (no locking: one thread owns it)."""

    def __init__(self) -> None:
        self._in_flight: collections.Counter[Any] = collections.Counter()  # task -> units on engines
        self._starts: dict[Any, collections.deque] = {}  # task -> (time, units) sent in the window

    def allowance(self, task: Any, now: float | None = None) -> tuple[int | None, str]:
        """How many units of ``task`` may be sent now (None: no limit), and why not when 0."""
        allowed: int | None = None
        why = ""
        if task.max_concurrent is not None:
            allowed = task.max_concurrent - self._in_flight[task]
            why = f"waiting: max_concurrent={task.max_concurrent} for {task.name!r}"
        if task.rate is not None:
            count, period = task.rate
            now = time.monotonic() if now is None else now
            window = self._starts.setdefault(task, collections.deque())
            while window and window[0][0] <= now - period:
                window.popleft()
            left = count - sum(n for _, n in window)
            if allowed is None or left < allowed:
                allowed = left
                why = f"waiting: rate limit of {count} unit starts per {period:g} s for {task.name!r}"
        if allowed is None:
            return None, ""
        return max(0, allowed), why if allowed <= 0 else ""

    def sent(self, task: Any, units: int, now: float | None = None) -> None:
        if task.max_concurrent is not None:
            self._in_flight[task] += units
        if task.rate is not None:
            self._starts.setdefault(task, collections.deque()).append(
                (time.monotonic() if now is None else now, units))

    def finished(self, task: Any, units: int) -> None:
        if task.max_concurrent is not None:
            self._in_flight[task] -= units
            if self._in_flight[task] <= 0:
                del self._in_flight[task]
