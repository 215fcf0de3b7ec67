"""Loading the REST API into a running Jupyter server, with its one setting.

``c.NbtasksExtension.store = "/path/to/runs.db"`` points the API at a store
file; left unset it reads the store kernels write to by default
(``$NBTASKS_STORE``, else ``<jupyter data dir>/nbtasks/runs.db``).
"""

from __future__ import annotations

from typing import Any

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from .handlers import API_PATH, handlers
from .service import RunService

__all__ = ["NbtasksExtension", "SETTINGS_KEY", "load"]


class NbtasksExtension(LoggingConfigurable):
    """Settings of the nbtasks server extension."""

    store = Unicode(
        None,
        allow_none=True,
        config=True,
        help="The run store (SQLite file) to read; unset: $NBTASKS_STORE or "
             "<jupyter data dir>/nbtasks/runs.db, the file kernels write to by default.",
    )


#: where the loaded service is kept in the tornado settings (for other server code, and
#: so that enabling both ``nbtasks`` and ``nbtasks.server`` loads it once)
SETTINGS_KEY = "nbtasks_service"


def load(serverapp: Any) -> RunService:
    """Add the API's handlers to ``serverapp``; returns the service they share."""
    web_app = serverapp.web_app
    if SETTINGS_KEY in web_app.settings:
        return web_app.settings[SETTINGS_KEY]
    settings = NbtasksExtension(parent=serverapp)
    service = web_app.settings[SETTINGS_KEY] = RunService(settings.store)
    base_url = web_app.settings["base_url"]
    web_app.add_handlers(".*$", handlers(base_url, service))
    serverapp.log.info("nbtasks: REST API at %s%s/ reading %s", base_url, API_PATH, service.store_path)
    return service
