"""Running units on ipyparallel engines: start/connect, dispatch, chunking.

The names below load on first use, so that ``nbtasks.cluster.forks`` can start a fork
server while ``import nbtasks`` is still under way (``nbtasks/_prestart.py``).
"""

import importlib
from typing import Any

__all__ = ["Cluster", "ClusterError", "ClusterState", "ClusterStopped", "ControllerLost", "EngineUnfit"]

_WHERE = {"Cluster": ".cluster", "ClusterState": ".cluster", "ClusterError": ".errors",
          "ClusterStopped": ".errors", "ControllerLost": ".errors", "EngineUnfit": ".errors"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
