"""The HTTP side of the REST API: thin handlers that check a request, call the
``RunService`` and write JSON.

Every method is ``@web.authenticated`` (no user: 403, since API handlers never
redirect to the login page) and ``@authorized`` on the ``nbtasks`` resource
(so a server's Authorizer can allow or deny it like any Jupyter API). POSTs
also pass jupyter_server's XSRF check unless the request carries the token.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from . import openapi, query
from .errors import ApiError, NotFound
from .service import RunService

__all__ = ["AUTH_RESOURCE", "API_PATH", "handlers"]

#: the resource name an Authorizer sees for every nbtasks request
AUTH_RESOURCE = "nbtasks"
#: where the API lives, under the server's base URL
API_PATH = "nbtasks/api"

_ID = r"(?P<run_id>[^/]+)"  # matched loosely so a bad id gets a 400 that says why, not a bare 404


class _JsonError(web.HTTPError):
    """An ``ApiError`` on its way out; the message goes in the log as an argument,
    so a ``%`` in user input cannot break the log line."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.status, "%s", error.message)
        self.message = error.message


class NbtasksHandler(APIHandler):
    """Base of the nbtasks handlers: the service, JSON replies and JSON errors."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, service: RunService) -> None:
        self.service = service

    def arg(self, name: str) -> str | None:
        """A query parameter exactly as sent (not stripped), or None."""
        return self.get_query_argument(name, None, strip=False)

    async def answer(self, work: Any, status: int = 200) -> None:
        """Await ``work`` (a service call) and reply with its result as JSON."""
        try:
            model = await work
        except ApiError as exc:
            raise _JsonError(exc) from None
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(model))

    def check(self, fn: Any, *args: Any) -> Any:
        """Run a request check from ``query``; its ``BadRequest`` becomes a 400 reply."""
        try:
            return fn(*args)
        except ApiError as exc:
            raise _JsonError(exc) from None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 405:  # RFC 9110: say which methods there are
            self.set_header("Allow", ", ".join(_allowed(type(self))))
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, _JsonError):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"message": exc.message, "reason": None}))
        else:
            super().write_error(status_code, **kwargs)


def _allowed(cls: type) -> list[str]:
    """The methods ``cls`` answers (tornado's defaults answer 405)."""
    return [m for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
            if getattr(cls, m.lower()) is not getattr(web.RequestHandler, m.lower())]


class ApiRootHandler(NbtasksHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        await self.answer(self.service.info())


class OpenApiHandler(NbtasksHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        document = openapi.document()
        document["servers"][0]["variables"]["base_url"]["default"] = self.base_url  # this server's
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(document))


class RunsHandler(NbtasksHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        await self.answer(self.service.runs(self.check(query.runs_query, self.arg)))


class RunHandler(NbtasksHandler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        await self.answer(self.service.run(self.check(query.run_id, run_id)))


class UnitsHandler(NbtasksHandler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        run_id = self.check(query.run_id, run_id)
        await self.answer(self.service.units(run_id, self.check(query.units_query, self.arg)))


class CancelHandler(NbtasksHandler):
    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        run_id = self.check(query.run_id, run_id)
        reason = self.check(query.cancel_reason, self.request.body)
        await self.answer(self.service.cancel(run_id, reason), status=202)


class EnginesHandler(NbtasksHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        await self.answer(self.service.clusters())


class StoreHandler(NbtasksHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        await self.answer(self.service.usage())


class PruneHandler(NbtasksHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        await self.answer(self.service.prune(self.check(query.prune_request, self.request.body)))


class NotFoundHandler(NbtasksHandler):
    """Any other path under the API: a JSON 404 (after the same authentication)."""

    async def _missing(self, *args: Any) -> None:
        raise _JsonError(NotFound(f"no such nbtasks endpoint: {self.request.path}"))

    # one wrapper per method: ``authorized`` remembers the action of its first call
    get = web.authenticated(authorized(_missing))
    post = web.authenticated(authorized(_missing))
    put = web.authenticated(authorized(_missing))
    patch = web.authenticated(authorized(_missing))
    delete = web.authenticated(authorized(_missing))


def handlers(base_url: str, service: RunService) -> list[tuple[str, type, dict[str, Any]]]:
    """The URL table for ``web_app.add_handlers``."""
    root = re.escape(url_path_join(base_url, API_PATH))
    kwargs = {"service": service}
    table = [
        (r"/?", ApiRootHandler),
        (r"/openapi\.json", OpenApiHandler),
        (r"/runs", RunsHandler),
        (rf"/runs/{_ID}", RunHandler),
        (rf"/runs/{_ID}/units", UnitsHandler),
        (rf"/runs/{_ID}/cancel", CancelHandler),
        (r"/engines", EnginesHandler),
        (r"/store", StoreHandler),
        (r"/store/prune", PruneHandler),
        (r"/.*", NotFoundHandler),
    ]
    return [(root + pattern, cls, kwargs) for pattern, cls in table]
