"""Waiting in tests for something that happens on another thread, process or host."""

from __future__ import annotations

import time
from typing import Callable


def wait_until(condition: Callable[[], object], timeout: float, what: str, every: float = 0.05) -> None:
    """Poll ``condition`` until it is true; after ``timeout`` seconds fail, saying ``what`` never happened."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        time.sleep(every)
