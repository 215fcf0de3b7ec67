"""Jupyter server extension: an authenticated REST API over the run store.

    handlers.py   HTTP: authentication, routes, JSON replies (thin)
    query.py      checks ids, query parameters and bodies; ``errors.py`` the refusals
    service.py    the operations over the store, run off the event loop
    extension.py  the setting (``c.NbtasksExtension.store``) and loading
    openapi.yaml  the API's OpenAPI 3 document, which ``openapi.py`` serves

Importing this package loads neither ipyparallel nor the kernel side of
nbtasks; jupyter_server itself is imported only when the server loads it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["_jupyter_server_extension_points", "_load_jupyter_server_extension"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Where jupyter_server finds the extension (``jpserver_extensions``)."""
    return [{"module": "nbtasks.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Called by jupyter_server once, at start-up."""
    from .extension import load

    load(serverapp)
