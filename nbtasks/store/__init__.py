"""The persistent record of runs, units and results (embedded SQLite, WAL).

The kernel writes through ``Store`` (on its own thread, off the dispatch
path); the Jupyter server and tools read through ``StoreReader``.
Housekeeping (``housekeeping.py``): the results stay under a size limit
(``set_size_limit``, ``$NBTASKS_STORE_LIMIT``), ``prune`` removes whole runs,
``usage`` says what the store holds; ``python -m nbtasks.store`` does both.
"""

from .housekeeping import LIMIT_ENV, Pruned, Usage, prune, set_size_limit, size_limit, usage
from .location import ENV, MEMORY, default_path
from .reader import RUN_STATES, UNIT_STATES, StoreReader

__all__ = ["ENV", "MEMORY", "default_path", "StoreReader", "RUN_STATES", "UNIT_STATES",
           "LIMIT_ENV", "prune", "usage", "size_limit", "set_size_limit", "Pruned", "Usage"]
