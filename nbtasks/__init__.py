"""nbtasks: define tasks in notebook cells, compose them, run them on a cluster.

Layout (dependencies point down only):
    server/   Jupyter server extension: REST over the store (for the JupyterLab sidebar)
    ui/       progress renderers (text, widgets) and forms — observe runs
    store/    persistent record of runs, units and results (SQLite); reuse after restarts
    cluster/  ipyparallel engines: start/connect, dispatch, chunking
    core/     Task and compositions, params, Run, the asynchronous driver

This module only re-exports names; the cluster layer (ipyparallel) is
imported on first use, or in the background when the main program (a notebook, a
script) imports nbtasks: the default cluster then starts at once (``_prestart.py``;
``NBTASKS_PRESTART=0`` turns that off).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from ._prestart import maybe_prestart as _maybe_prestart

# ruff: noqa: E402  (the imports below come after this on purpose)
_maybe_prestart(inspect.currentframe())  # first: a fork server starts while the rest is imported

from ._version import __version__
from .core import (
    ContainerTask,
    FunctionTask,
    MapReduceTask,
    NbtasksError,
    ParallelTask,
    Range,
    RemoteTraceback,
    Retry,
    Run,
    RunFailed,
    RunState,
    Task,
    TaskDefinitionError,
    UnitError,
    UnitState,
    UnitTimeout,
    task,
)
from .core.hooks import hooks as _hooks
from .core.progress import progress
from .core.shared import shared

__all__ = [
    "__version__",
    "task", "Task", "FunctionTask",
    "ContainerTask", "ParallelTask", "MapReduceTask",
    "Range", "Run", "RunState", "UnitState", "progress", "shared",
    "Cluster", "ClusterError",
    "NbtasksError", "TaskDefinitionError", "UnitError", "RunFailed", "RemoteTraceback",
    "Retry", "UnitTimeout", "runs",
]

_LAZY = {"Cluster": "nbtasks.cluster", "ClusterError": "nbtasks.cluster", "runs": "nbtasks.store.history"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nbtasks' has no attribute {name!r}")


def _default_cluster() -> Any:
    return importlib.import_module("nbtasks.cluster").Cluster.default()


def _wait_with_progress(run: Run, timeout: float | None) -> None:
    importlib.import_module("nbtasks.ui.text").wait_with_progress(run, timeout)


def _display(obj: Any, include: Any, exclude: Any) -> dict:
    return importlib.import_module("nbtasks.ui.display").mimebundle(obj, include, exclude)


def _form(task: Task, input: Any, cluster: Any, show: Any, values: dict) -> Any:
    return importlib.import_module("nbtasks.ui.form").TaskForm(task, input, cluster=cluster, show=show,
                                                                **values)


def _store(where: Any) -> Any:
    return importlib.import_module("nbtasks.store.recorder").Store.at(where)


_hooks.default_backend = _default_cluster
_hooks.store = _store
_hooks.wait = _wait_with_progress
_hooks.display = _display
_hooks.form = _form
