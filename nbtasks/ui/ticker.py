"""One background thread that refreshes every live view at a fixed pace.

Why a plain thread: widget updates sent from it keep flowing while the
kernel's main thread runs other cells, where updates scheduled on the
kernel's event loop would stall until the busy cell ended. Why a fixed
pace: a 100,000-unit run must cost a bounded number of messages, not one
per unit.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

__all__ = ["Refreshing", "watch", "PERIOD"]

log = logging.getLogger("nbtasks")

PERIOD = 0.5  # seconds between two refreshes of one view


class Refreshing(Protocol):
    def refresh(self) -> bool:
        """Redraw; True once the view is final and needs no more refreshes."""


_views: list[Refreshing] = []
_lock = threading.Lock()
_thread: threading.Thread | None = None


def watch(view: Refreshing) -> None:
    global _thread
    with _lock:
        if view not in _views:
            _views.append(view)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_loop, name="nbtasks-ui", daemon=True)
            _thread.start()


def _loop() -> None:
    while True:
        time.sleep(PERIOD)
        with _lock:
            views = list(_views)
            if not views:
                return
        for view in views:
            try:
                final = view.refresh()
            except Exception:  # a broken view must not stop the others
                log.exception("nbtasks: refreshing a progress view failed")
                final = True
            if final:
                with _lock:
                    if view in _views:
                        _views.remove(view)
