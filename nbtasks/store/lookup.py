"""Finding a request's units in the store, and saying why the others must run.

    request ──> its whole list ran before?   parts by request_key      (one query)
            └─> else, per unit: the same leaf's earlier requests       (8-byte digest
                (``requests``) hold each unit's input digest            per unit)
    units not found ──> why: failed before, dropped, did not finish, input new,
                        or what changed since the task's last leaf (``leaves``)

Runs on the dispatch thread, on the store's read connection.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable

from ..core.explain import Reasons
from ..core.fingerprint import UNIT_DIGEST, unit_digests

__all__ = ["Leaf", "Found", "look_up", "what_changed"]

#: the newest requests of a leaf searched unit by unit (each a few bytes per unit)
RECENT_REQUESTS = 64


@dataclass
class Leaf:
    """A task as one run's engines run it: ``digest`` (code, parameters, shared values),
    ``key`` (its hex, ``leaves.key``), and the named ``parts`` it was made of."""
    digest: bytes
    key: str
    task: str
    parts: dict[str, Any]


@dataclass
class Found:
    """A stretch of finished units, [start, stop) of the request looked up, taken from a
    stored outcome at ``offset``."""
    start: int
    stop: int
    offset: int
    skip: frozenset
    engine: int | None
    blob: int
    outcome: Any


_STRETCHES = ("SELECT p.start, p.stop, p.offset, p.skip, p.engine, p.blob, b.data, b.path, b.dropped "
              "FROM parts p JOIN blobs b ON b.id = p.blob WHERE p.request_key = ? ORDER BY p.id DESC")


class _Units:
    """What the lookup knows of each unit of the request."""

    def __init__(self, n: int) -> None:
        self.slot: list[tuple[int, int, int | None] | None] = [None] * n  # (blob, offset, engine)
        self.why: list[str | None] = [None] * n  # why a unit seen before is not taken

    def take(self, conn: sqlite3.Connection, key: str, where: dict[int, list[int]] | None,
             blobs: dict[int, tuple]) -> None:
        """Take the stretches stored under ``key``; ``where[pos]``: the units of this request
        with the input at ``pos`` there (None: the same position)."""
        for start, stop, offset, skip, engine, blob, data, path, dropped in conn.execute(_STRETCHES, (key,)):
            skipped = frozenset(json.loads(skip))
            for pos in range(start, stop):
                units = [pos] if where is None else where.get(pos, ())
                for i in units:
                    if i >= len(self.slot) or self.slot[i] is not None:
                        continue
                    if pos - start in skipped:
                        if self.why[i] in (None, Reasons.NOT_FINISHED):
                            self.why[i] = Reasons.FAILED_BEFORE
                    elif dropped is not None:
                        self.why[i] = Reasons.DROPPED
                    else:
                        self.slot[i] = (blob, offset + pos - start, engine)
                        blobs.setdefault(blob, (data, path))


def look_up(conn: sqlite3.Connection, request: Any, leaf: Leaf,
            load: Callable[[bytes | None, str | None], Any]) -> tuple[list[Found], dict[str, int]]:
    """The stretches of ``request`` an earlier run finished, and why the rest must run."""
    n = len(request.inputs)
    units = _Units(n)
    blobs: dict[int, tuple] = {}
    units.take(conn, request.key, None, blobs)
    exact = any(units.slot) or any(units.why)
    if not exact:
        exact = conn.execute("SELECT 1 FROM parts WHERE request_key = ? LIMIT 1", (request.key,)).fetchone()
    if n > 1 and None in units.slot:
        _by_unit(conn, request, leaf, units, blobs)
    outcomes = {blob: load(*where) for blob, where in blobs.items()}
    found = _stretches(units, outcomes)
    why: dict[str, int] = {}
    fresh = 0  # units whose input no earlier run of this leaf had
    for i, slot in enumerate(units.slot):
        if slot is not None and outcomes[slot[0]] is not None:
            continue
        reason = units.why[i] or (Reasons.UNREADABLE if slot is not None else
                                  Reasons.NOT_FINISHED if exact else None)
        if reason is None:
            fresh += 1
        else:
            why[reason] = why.get(reason, 0) + 1
    if fresh:
        reason = Reasons.INPUT_NEW if _known(conn, leaf) else what_changed(conn, leaf)
        why[reason] = why.get(reason, 0) + fresh
    return found, why


def _by_unit(conn: sqlite3.Connection, request: Any, leaf: Leaf, units: _Units, blobs: dict) -> None:
    """Units whose own input an earlier request of the same leaf had (a list grown,
    shrunk or reordered)."""
    rows = conn.execute("SELECT key, units FROM requests WHERE leaf_key = ? AND key != ? "
                        "ORDER BY rowid DESC LIMIT ?", (leaf.key, request.key, RECENT_REQUESTS)).fetchall()
    if not rows:
        return
    mine = unit_digests(request.inputs)
    wanted: dict[bytes, list[int]] = {}
    for i, slot in enumerate(units.slot):
        if slot is None:
            wanted.setdefault(mine[i * UNIT_DIGEST:(i + 1) * UNIT_DIGEST], []).append(i)
    for key, digests in rows:  # newest first
        if not wanted:
            break
        here: dict[int, list[int]] = {}
        for pos in range(len(digests) // UNIT_DIGEST):
            hit = wanted.get(digests[pos * UNIT_DIGEST:(pos + 1) * UNIT_DIGEST])
            if hit is not None:
                here[pos] = hit
        if here:
            for i in (i for hit in here.values() for i in hit):
                units.why[i] = units.why[i] or Reasons.NOT_FINISHED  # seen; taken below if it finished
            units.take(conn, key, here, blobs)
            wanted = {d: left for d, hit in wanted.items() if (left := [i for i in hit if units.slot[i] is None])}


def _stretches(units: _Units, outcomes: dict[int, Any]) -> list[Found]:
    """Runs of units that sit one after another in one stored outcome."""
    found: list[Found] = []
    current: Found | None = None
    for i, slot in enumerate(units.slot):
        if slot is None or outcomes[slot[0]] is None:
            current = None
            continue
        blob, offset, engine = slot
        if current is not None and current.blob == blob and current.offset + (i - current.start) == offset:
            current.stop = i + 1
        else:
            current = Found(i, i + 1, offset, frozenset(), engine, blob, outcomes[blob])
            found.append(current)
    return found


def _known(conn: sqlite3.Connection, leaf: Leaf) -> bool:
    return conn.execute("SELECT 1 FROM leaves WHERE key = ?", (leaf.key,)).fetchone() is not None


def what_changed(conn: sqlite3.Connection, leaf: Leaf) -> str:
    """Since the last leaf of the same task the store has: which parameters, functions,
    modules and shared values differ ("no earlier run" when it has none)."""
    row = conn.execute("SELECT parts FROM leaves WHERE task = ? AND key != ? ORDER BY seen DESC LIMIT 1",
                       (leaf.task, leaf.key)).fetchone()
    if row is None:
        return Reasons.NO_EARLIER_RUN
    return changes(json.loads(row[0]), leaf.parts)


def changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The differences between two leaves' parts, as a person says them."""
    out = []
    for name in _differ(old.get("params", {}), new.get("params", {})):
        out.append(f"parameter {name} changed")
    calls = new.get("calls", {})
    for label in _differ(old.get("code", {}), new.get("code", {})):
        if label == "settings":
            out.append("task settings changed")
            continue
        name = label.split(" ", 1)[-1]
        caller = calls.get(name) or old.get("calls", {}).get(name)
        gone = label not in new.get("code", {})
        out.append(f"{label} {'no longer used' if gone else 'changed'}" + (f" (called by {caller})" if caller else ""))
    for name in _differ(old.get("shared", {}), new.get("shared", {})):
        out.append(f"shared value {name} changed")
    if old.get("mode") != new.get("mode") and not out:
        out.append("task used another way")
    return ", ".join(out) or "task changed"


def _differ(old: dict[str, str], new: dict[str, str]) -> list[str]:
    return sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))
