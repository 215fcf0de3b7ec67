"""Progress reported from inside a unit, as Pydra's tasks did:
``nt.progress(0.5, "halfway")`` in ``work()``.

On an engine the cluster layer installs a reporter that sends the latest
value to the client (shown on the task's row); in a plain local call it is
a no-op, so the same code runs anywhere.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["progress", "set_reporter"]

#: ``(position in chunk, fraction, message)``; None when nobody listens
_reporter: Callable[[int, float, str], None] | None = None
#: position of the unit now running within its chunk (set by unitexec)
current = -1


def set_reporter(reporter: Callable[[int, float, str], None] | None) -> None:
    global _reporter
    _reporter = reporter


def progress(fraction: float, message: str = "") -> None:
    """Report how far the current unit has got (``0 <= fraction <= 1``)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"nt.progress(fraction, ...) takes a number from 0 to 1, got {fraction!r}")
    if _reporter is not None:
        _reporter(current, float(fraction), str(message))
