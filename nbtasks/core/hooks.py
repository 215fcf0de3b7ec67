"""Where the upper layers plug into core, so that core never imports them.

``nbtasks/__init__.py`` fills these in with functions that import the
cluster and ui layers on first use; core looks them up at call time.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["hooks"]


class _Hooks:
    #: ``() -> backend`` for ``submit()`` without ``cluster=`` (the default cluster)
    default_backend: Callable[[], Any] | None = None
    #: ``(run, timeout) -> None``: show progress while a caller blocks on a run
    wait: Callable[[Any, float | None], None] | None = None
    #: ``(obj, include, exclude) -> mimebundle``: how runs and clusters show in a notebook
    display: Callable[[Any, Any, Any], dict] | None = None
    #: ``(task, input, cluster, show, values) -> form``: ``task.form()``
    form: Callable[..., Any] | None = None
    #: ``(where) -> store``: the run store at a path (None: the default one), see nbtasks.store
    store: Callable[[Any], Any] | None = None


hooks = _Hooks()
