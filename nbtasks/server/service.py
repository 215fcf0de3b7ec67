"""What the REST API does, without HTTP: reads the store off the event loop and
applies the API's rules (404 for unknown runs, 409 for cancelling a finished one).

It never imports jupyter_server or tornado, so it can be used and tested
alone; the handlers only translate requests into these calls and back.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
from typing import Any, Callable

from .._version import __version__
from ..store.housekeeping import prune, usage
from ..store.reader import LIVE_RUN_STATES, StoreReader
from .errors import Conflict, NotFound, StoreUnavailable
from .query import PruneRequest, RunsQuery, UnitsQuery

__all__ = ["RunService", "LIVE_STATES"]

#: the only states in which a kernel still listens for a cancel request (the store's)
LIVE_STATES = LIVE_RUN_STATES


class RunService:
    """The API's operations over one store file (``None``: the user's default store)."""

    def __init__(self, store: "str | os.PathLike[str] | None" = None) -> None:
        self.reader = StoreReader(store)

    @property
    def store_path(self) -> str:
        return self.reader.path

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # sqlite blocks (up to its busy timeout while a kernel writes): keep it off the
        # server's event loop, in the loop's default thread pool
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"the run store {self.store_path} cannot be read now: {exc}") from exc

    async def info(self) -> dict[str, Any]:
        """The version and where the runs are read from."""
        exists = await self._call(os.path.exists, self.store_path)
        return {"version": __version__, "store": self.store_path, "store_exists": exists,
                "openapi": "openapi.json"}

    async def runs(self, query: RunsQuery) -> dict[str, Any]:
        """A page of runs, newest first."""
        return await self._call(self.reader.runs, state=query.state, notebook=query.notebook,
                                limit=query.limit, offset=query.offset)

    async def run(self, run_id: str) -> dict[str, Any]:
        """One run with its task tree and parameters."""
        run = await self._call(self.reader.run, run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r} in the store")
        return run

    async def units(self, run_id: str, query: UnitsQuery) -> dict[str, Any]:
        """A page of a run's finished units, failed ones first."""
        page = await self._call(self.reader.units, run_id, state=query.state, offset=query.offset,
                                limit=query.limit)
        if page is None:
            raise NotFound(f"no run {run_id!r} in the store")
        return page

    async def cancel(self, run_id: str, reason: str) -> dict[str, Any]:
        """Ask the run's kernel to cancel it (it does within about a second).

        Asking twice is harmless; asking for a finished or lost run (its kernel
        gone, so nobody would act) is a ``Conflict``.
        """
        run = await self.run(run_id)
        if run["state"] not in LIVE_STATES:
            raise Conflict(_finished(run))
        run = await self._call(self.reader.request_cancel, run_id, reason)
        if run is None:
            raise NotFound(f"no run {run_id!r} in the store")
        if not run["cancel_requested"]:  # it finished between the two reads
            raise Conflict(_finished(run))
        return run

    async def clusters(self) -> dict[str, Any]:
        """The clusters kernels reported, with their engines."""
        return {"clusters": await self._call(self.reader.clusters)}

    async def usage(self) -> dict[str, Any]:
        """How much the store holds (bytes of results, runs) and its size limit."""
        try:
            held = await self._call(usage, self.store_path)
        except ValueError as exc:  # not a store of ours, or a bad $NBTASKS_STORE_LIMIT in the server's environment
            raise StoreUnavailable(str(exc)) from None
        return {"store": held.path, "runs": held.runs, "results": held.results, "database": held.database,
                "limit": held.limit}

    async def prune(self, request: PruneRequest) -> dict[str, Any]:
        """Remove whole runs by age and/or task name; live runs stay."""
        try:
            pruned = await self._call(prune, older_than=request.older_than, name=request.name,
                                      store=self.store_path)
        except ValueError as exc:  # the store cannot be pruned: in memory, or not a store of ours
            raise Conflict(str(exc)) from None
        return {"runs": list(pruned.runs), "bytes": pruned.bytes, "live": pruned.live}


def _finished(run: dict[str, Any]) -> str:
    why = f": {run['note']}" if run["state"] == "lost" and run.get("note") else ""
    return f"run {run['id']!r} is {run['state']}{why}; only {' or '.join(LIVE_STATES)} runs can be cancelled"
