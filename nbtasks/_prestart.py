"""Start the default cluster as soon as the main program imports nbtasks.

A local cluster takes most of a second to start; started in the background when a
notebook (or a script) imports nbtasks, it is usually up before the first ``submit``.
It starts only where someone is about to use it: nbtasks imported by the main program
(a notebook cell, a script, ``python -c``, the interactive prompt), and not

- on an engine (engines import nbtasks to run units; so does nbtasks' fork server),
- where another module imports it (the Jupyter server extension, pytest's test modules,
  a library), or ``python -m nbtasks.<tool>``,
- when ``$NBTASKS_PRESTART`` is ``0`` (or ``false``, ``no``, ``off``).

Importing stays instant: this module looks at the importing frame and starts a fork
server (``cluster/forks.py``: a few milliseconds), a thread does the rest. A failed start
is raised by the first use of the default cluster.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from types import FrameType

__all__ = ["OFF", "maybe_prestart", "wanted"]

OFF = ("0", "false", "no", "off")
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def wanted(frame: FrameType | None) -> bool:
    """Whether importing nbtasks from ``frame`` (the frame that runs nbtasks' ``__init__``)
    should start the default cluster."""
    if os.environ.get("NBTASKS_PRESTART", "").strip().lower() in OFF:
        return False
    if "ipyparallel.engine" in sys.modules:  # an engine, or the fork server that makes them
        return False
    importer = _importer(frame)
    return importer is not None and importer.f_globals.get("__name__") == "__main__"


def _importer(frame: FrameType | None) -> FrameType | None:
    """The first frame above ``frame`` that is neither the import machinery nor nbtasks."""
    frame = frame.f_back if frame is not None else None
    while frame is not None:
        filename = frame.f_code.co_filename
        module = frame.f_globals.get("__name__") or ""
        if not (filename.startswith("<frozen importlib") or module == "importlib"
                or os.path.abspath(filename).startswith(_PACKAGE + os.sep)):
            return frame
        frame = frame.f_back
    return None


def maybe_prestart(frame: FrameType | None) -> bool:
    """If ``wanted``: start a fork server at once (a few milliseconds; it imports ipyparallel
    while nbtasks is still being imported), and the rest of the default cluster in a
    background thread. Never blocks."""
    if not wanted(frame):
        return False
    try:
        from .cluster import forks

        if forks.SUPPORTED:
            forks.start_spare()
    except Exception:  # the cluster starts without a head start
        pass
    threading.Thread(target=_prestart, name="nbtasks-prestart", daemon=True).start()
    return True


def _prestart() -> None:
    try:
        importlib.import_module("nbtasks")  # waits for the import under way to finish
        from .cluster import Cluster
    except Exception:
        return  # importing nbtasks failed: that error is for whoever imported it
    Cluster.prestart()
