"""The persistent record of runs, units and results (embedded SQLite, WAL).

The kernel writes through ``Store`` (on its own thread, off the dispatch
path); the Jupyter server and tools read through ``StoreReader``.
"""

from .location import ENV, MEMORY, default_path
from .reader import RUN_STATES, UNIT_STATES, StoreReader

__all__ = ["ENV", "MEMORY", "default_path", "StoreReader", "RUN_STATES", "UNIT_STATES"]
