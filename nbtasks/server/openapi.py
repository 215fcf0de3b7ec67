"""The OpenAPI document of the REST API (``openapi.yaml`` beside this module).

Served at ``<base_url>nbtasks/api/openapi.json`` for clients, and checked
against the real server by the tests.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Any

__all__ = ["document"]


@functools.lru_cache(maxsize=1)
def _load() -> dict[str, Any]:
    import yaml  # comes with jupyter_server (through jupyter_events)

    text = resources.files(__package__).joinpath("openapi.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def document() -> dict[str, Any]:
    """The OpenAPI 3 document as a dict (a copy: callers may change it)."""
    return copy.deepcopy(_load())
