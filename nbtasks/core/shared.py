"""Shared data (ScientificPython TaskManager's ``storeData``/``retrieveData``):
values sent once to every engine with ``cluster.share(name=value)`` and read
inside tasks with ``nt.shared("name")``, instead of travelling with every unit.

The same registry lives in every process: on engines the cluster layer fills
it; in the notebook ``cluster.share`` fills it too, so calling a task locally
sees the same values.
"""

from __future__ import annotations

from typing import Any

__all__ = ["shared", "put", "remove", "names"]

_values: dict[str, Any] = {}


def shared(name: str) -> Any:
    """The value shared under ``name`` (``cluster.share(name=value)``)."""
    try:
        return _values[name]
    except KeyError:
        known = sorted(_values)
        raise KeyError(f"no shared value named {name!r} here "
                       f"({'shared: ' + ', '.join(known) if known else 'nothing is shared'}); "
                       f"share it first with cluster.share({name}=...)") from None


def put(name: str, value: Any) -> None:
    _values[name] = value


def remove(name: str) -> None:
    _values.pop(name, None)


def names() -> list[str]:
    return sorted(_values)
