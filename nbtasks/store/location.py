"""Where the run store lives, so a kernel and the Jupyter server find the same one.

``$NBTASKS_STORE`` names the database file (``:memory:`` keeps nothing);
otherwise it is ``runs.db`` in the user's Jupyter data directory
(``jupyter --data-dir``), which the server and every kernel of that user share.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

__all__ = ["ENV", "MEMORY", "default_path", "resolve"]

ENV = "NBTASKS_STORE"
MEMORY = ":memory:"


def default_path() -> str:
    """The store for this user: ``$NBTASKS_STORE`` or ``<jupyter data dir>/nbtasks/runs.db``."""
    env = os.environ.get(ENV)
    if env:
        return env if env == MEMORY else str(Path(env).expanduser())
    return _in_data_dir(*(os.environ.get(name) for name in _DATA_DIR_ENV))


#: what ``jupyter_data_dir()`` depends on: the path is worked out again only when one changes
_DATA_DIR_ENV = ("JUPYTER_DATA_DIR", "JUPYTER_PLATFORM_DIRS", "XDG_DATA_HOME", "HOME", "APPDATA")


@functools.lru_cache(maxsize=8)
def _in_data_dir(*environment: str | None) -> str:
    """(asked at every submit: jupyter_core's lookup costs ~0.1 ms of a 4 ms round trip)"""
    from jupyter_core.paths import jupyter_data_dir

    return str(Path(jupyter_data_dir()) / "nbtasks" / "runs.db")


def resolve(store: "str | os.PathLike[str] | None") -> str:
    """An explicit ``store=`` argument wins over the environment and the default."""
    if store is None:
        return default_path()
    text = os.fspath(store)
    return text if text == MEMORY else str(Path(text).expanduser())
