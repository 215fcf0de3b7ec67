"""The errors the API answers with: a status and a message a person can act on.

They are plain exceptions, so the service and the request checks stay free of
tornado and jupyter_server; the handlers turn them into JSON replies.
"""

from __future__ import annotations

__all__ = ["ApiError", "BadRequest", "NotFound", "Conflict", "StoreUnavailable"]


class ApiError(Exception):
    """A request the API refuses: ``status`` is the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    """A parameter, id or body that does not fit the API."""

    status = 400


class NotFound(ApiError):
    """No such run in the store."""

    status = 404


class Conflict(ApiError):
    """The run is in a state that does not allow the request (cancelling a finished run)."""

    status = 409


class StoreUnavailable(ApiError):
    """The store file cannot be read just now (locked too long, unreadable)."""

    status = 503
