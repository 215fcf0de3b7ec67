"""Checking what a request brings (ids, query parameters, the cancel body) before
it reaches the store.

Everything arrives as text; anything that does not fit the OpenAPI document
(``openapi.yaml``, whose limits are repeated here) becomes a ``BadRequest``,
so odd input is answered with a 400 and a message, never a 500 or a query.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable

from ..core.errors import short_repr
from ..store.reader import RUN_STATES, UNIT_STATES
from .errors import BadRequest

__all__ = [
    "RUN_ID", "MAX_LIMIT", "MAX_OFFSET", "MAX_NOTEBOOK", "MAX_REASON", "DEFAULT_REASON",
    "RunsQuery", "UnitsQuery", "PruneRequest", "run_id", "runs_query", "units_query", "cancel_reason",
    "prune_request", "MAX_NAME", "MAX_AGE",
]

#: run ids are 12 hex digits today; any short word of letters, digits, ``_`` and ``-`` is allowed
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000_000
MAX_NOTEBOOK = 4096
MAX_REASON = 500
MAX_NAME = 500
MAX_AGE = 100 * 365 * 86400  # seconds: a century
DEFAULT_REASON = "cancelled from JupyterLab"

_DIGITS = re.compile(r"[0-9]{1,10}")  # no sign, blanks or ``1_000``, which int() would take

#: how a handler hands over a query parameter: its value, or None when absent
Arg = Callable[[str], "str | None"]


@dataclass(frozen=True)
class RunsQuery:
    state: str | None
    notebook: str | None
    limit: int
    offset: int


@dataclass(frozen=True)
class UnitsQuery:
    state: str | None
    limit: int
    offset: int


@dataclass(frozen=True)
class PruneRequest:
    older_than: float | None  # seconds
    name: str | None


def run_id(text: str) -> str:
    """The run id from the URL, if it is one (``../x`` or ``a b`` are not)."""
    if not RUN_ID.fullmatch(text):
        raise BadRequest(f"not a run id: {_show(text)} (letters, digits, '_' and '-', at most 64)")
    return text


def _integer(arg: Arg, name: str, default: int, low: int, high: int) -> int:
    text = arg(name)
    if text is None:
        return default
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}, not {_show(text)}")
    return int(text)


def _choice(arg: Arg, name: str, choices: tuple[str, ...]) -> str | None:
    text = arg(name)
    if text is not None and text not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}, not {_show(text)}")
    return text


def runs_query(arg: Arg) -> RunsQuery:
    """``state``, ``notebook``, ``limit`` (default 100) and ``offset`` of ``GET runs``."""
    notebook = arg("notebook")
    if notebook is not None and len(notebook) > MAX_NOTEBOOK:
        raise BadRequest(f"notebook is longer than {MAX_NOTEBOOK} characters")
    return RunsQuery(state=_choice(arg, "state", RUN_STATES), notebook=notebook,
                     limit=_integer(arg, "limit", 100, 1, MAX_LIMIT),
                     offset=_integer(arg, "offset", 0, 0, MAX_OFFSET))


def units_query(arg: Arg) -> UnitsQuery:
    """``state``, ``limit`` (default 50) and ``offset`` of ``GET runs/<id>/units``."""
    return UnitsQuery(state=_choice(arg, "state", UNIT_STATES),
                      limit=_integer(arg, "limit", 50, 1, MAX_LIMIT),
                      offset=_integer(arg, "offset", 0, 0, MAX_OFFSET))


def cancel_reason(body: bytes) -> str:
    """The reason from an optional ``{"reason": "..."}`` body; an empty body gives the default."""
    if not body.strip():
        return DEFAULT_REASON
    model = _json_object(body, '{"reason": "..."}')
    extra = sorted(set(model) - {"reason"})
    if extra:
        raise BadRequest(f"unknown field(s) in the body: {', '.join(map(_show, extra))} (only reason)")
    reason = model.get("reason")
    if reason is None:
        return DEFAULT_REASON
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise BadRequest(f"reason must be a text of at most {MAX_REASON} characters")
    return reason.strip() or DEFAULT_REASON


def _json_object(body: bytes, example: str) -> dict:
    try:
        model = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise BadRequest(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    if not isinstance(model, dict):
        raise BadRequest(f"the body must be a JSON object like {example}")
    return model


def prune_request(body: bytes) -> PruneRequest:
    """``{"older_than": seconds, "name": "task"}`` of ``POST store/prune``: at least one of them."""
    example = '{"older_than": 2592000} or {"name": "parallel(simulate)"}'
    model = _json_object(body, example) if body.strip() else {}
    extra = sorted(set(model) - {"older_than", "name"})
    if extra:
        raise BadRequest(f"unknown field(s) in the body: {', '.join(map(_show, extra))} (only older_than, name)")
    if not model:
        raise BadRequest(f"say which runs to remove: {example}")
    older_than, name = model.get("older_than"), model.get("name")
    if "older_than" in model and (isinstance(older_than, bool) or not isinstance(older_than, (int, float))
                                  or not 0 <= older_than <= MAX_AGE):
        raise BadRequest(f"older_than must be a number of seconds from 0 to {MAX_AGE}")
    if "name" in model and (not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME):
        raise BadRequest(f"name must be a task's name, a text of 1 to {MAX_NAME} characters")
    return PruneRequest(None if older_than is None else float(older_than), name)


def _show(text: str) -> str:
    """Quote user text for a message, shortened, so a huge or odd value cannot flood a reply."""
    return short_repr(text, limit=43)  # some 40 characters of it, quoted
