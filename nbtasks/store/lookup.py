"""Finding a request's units in the store, and saying why the others must run.

    request ──> its whole list ran before?   parts by request_key      (one query)
            └─> else, per unit: the same leaf's earlier requests       (8-byte digest
                (``requests``) hold each unit's input digest            per unit)
    units not found ──> why: failed before, dropped, did not finish, input new,
                        or what changed since the task's last leaf (``leaves``)

Runs on the dispatch thread, on the store's read connection.
"""

from __future__ import annotations

import bisect
import itertools
import json
import operator
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..core.explain import Reasons
from ..core.fingerprint import UNIT_DIGEST, unit_digests

assert UNIT_DIGEST == 8  # compared as 64-bit ints (memoryview.cast('Q'))

__all__ = ["Leaf", "Found", "look_up", "fresh_reason", "what_changed"]

#: the newest requests of a leaf searched unit by unit (each a few bytes per unit)
RECENT_REQUESTS = 64


@dataclass
class Leaf:
    """A task as one run's engines run it: ``digest`` (code, parameters, shared values),
    ``key`` (its hex, ``leaves.key``), the named ``parts`` it was made of, and why its
    units with new inputs run (``fresh_reason``, found once per run)."""
    digest: bytes
    key: str
    task: str
    parts: dict[str, Any]
    fresh: str | None = None


@dataclass
class Found:
    """A stretch of finished units, [start, stop) of the request looked up, whose values
    are ``outcome.values[offset:offset + stop - start]``."""
    start: int
    stop: int
    offset: int
    engine: int | None
    blob: int
    outcome: Any


_STRETCHES = ("SELECT p.start, p.stop, p.offset, p.skip, p.engine, p.blob, b.data, b.path, b.dropped "
              "FROM parts p JOIN blobs b ON b.id = p.blob WHERE p.request_key = ? ORDER BY p.id DESC")


class _Units:
    """What the lookup knows of each unit of the request: taken (``have``; ``taken``: the
    stretches, ``[start, stop, offset, blob, engine]``), or why not (``why``, sparse)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.have = bytearray(n)
        self.why: dict[int, str] = {}
        self.taken: list[list] = []
        self.blobs: dict[int, tuple] = {}  # blob -> (data, path), to load once

    def _not(self, i: int, reason: str) -> None:
        if self.why.get(i, Reasons.NOT_FINISHED) == Reasons.NOT_FINISHED:
            self.why[i] = reason

    def _take(self, start: int, stop: int, offset: int, row: tuple) -> None:
        self.have[start:stop] = b"\1" * (stop - start)
        self.taken.append([start, stop, offset, row[5], row[4]])
        self.blobs.setdefault(row[5], (row[6], row[7]))

    def take_same(self, rows: list[tuple]) -> None:
        """Stored stretches of the very same list: unit ``pos`` there is unit ``pos`` here."""
        for row in rows:
            start, stop, offset, skip, _, _, _, _, dropped = row
            stop = min(stop, self.n)
            skipped = json.loads(skip)
            if dropped is None and not skipped and start < stop and self.have.find(1, start, stop) == -1:
                self._take(start, stop, offset, row)  # the usual case: a whole stretch at once
                continue
            bad = set(skipped)
            for pos in range(start, stop):
                if self.have[pos]:
                    continue
                if pos - start in bad:
                    self._not(pos, Reasons.FAILED_BEFORE)
                elif dropped is not None:
                    self._not(pos, Reasons.DROPPED)
                else:
                    self._take(pos, pos + 1, offset + pos - start, row)

    def take_moved(self, rows: list[tuple], positions: list[int]) -> None:
        """Stored stretches of another list of the same leaf; ``positions[i]``: where unit
        ``i``'s input sits in it (-1: not there). Taken a run of consecutive positions at a
        time (a list grown or shrunk is one or two runs), cut where a stored row ends."""
        size = max((row[1] for row in rows), default=0)
        owner: list[int | None] = [None] * size  # stored position -> the newest row that finished it
        bad: dict[int, str] = {}
        cuts = {size}  # stored positions where the owner may change
        for r in range(len(rows) - 1, -1, -1):  # oldest first: newer rows overwrite
            start, stop, _, skip, _, _, _, _, dropped = rows[r]
            cuts.update((start, stop))
            if dropped is not None:
                bad.update((pos, Reasons.DROPPED) for pos in range(start, stop) if owner[pos] is None)
                continue
            before = owner[start:stop]
            owner[start:stop] = [r] * (stop - start)
            for s in json.loads(skip):
                owner[start + s] = before[s]
                cuts.update((start + s, start + s + 1))
                if before[s] is None:
                    bad[start + s] = Reasons.FAILED_BEFORE
        edges = sorted(cuts)
        for i, j, first in _runs(positions):
            at = bisect.bisect_right(edges, first)
            while i < j:  # pieces of the run with one owner each
                end = min(j, i + edges[at] - first) if at < len(edges) else j
                at += 1
                self._take_piece(i, end, first, owner, bad, rows, size)
                first += end - i
                i = end

    def _take_piece(self, i: int, j: int, first: int, owner: list, bad: dict, rows: list, size: int) -> None:
        """Units ``i..j-1`` here are stored positions ``first..``, all of one row (or none)."""
        r = owner[first] if first < size else None
        if r is not None and self.have.find(1, i, j) == -1:
            row = rows[r]
            self._take(i, j, row[2] + first - row[0], row)
            return
        for k in range(j - i):  # a row that failed or was dropped, or units already had
            if self.have[i + k]:
                continue
            if r is None:
                self._not(i + k, bad.get(first + k, Reasons.NOT_FINISHED))
            else:
                row = rows[r]
                self._take(i + k, i + k + 1, row[2] + first + k - row[0], row)


def _runs(positions: list[int]) -> Iterator[tuple[int, int, int]]:
    """``(i, j, first)``: ``positions[i:j]`` is ``first, first + 1, ...``, a maximal run,
    none of them -1; found with C loops (``bytes.find``), not a Python step per unit."""
    n = len(positions)
    found = bytes(map((-1).__ne__, positions))
    steps = bytes(map((1).__eq__, map(operator.sub, positions[1:], positions[:-1])))
    at = 0
    while (i := found.find(1, at)) != -1:
        end = found.find(0, i)
        end = n if end == -1 else end
        while i < end:
            brk = steps.find(0, i, end - 1)  # steps[k]: positions[k + 1] follows positions[k]
            j = end if brk == -1 else brk + 1
            yield i, j, positions[i]
            i = j
        at = end


def look_up(conn: sqlite3.Connection, request: Any, leaf: Leaf,
            load: Callable[[bytes | None, str | None], Any]) -> tuple[list[Found], dict[str, int], int]:
    """The stretches of ``request`` an earlier run finished, why some others must run, and
    how many units no earlier run of this leaf had (``fresh_reason`` says why those run)."""
    n = len(request.inputs)
    units = _Units(n)
    rows = conn.execute(_STRETCHES, (request.key,)).fetchall()
    units.take_same(rows)
    exact = bool(rows) or conn.execute("SELECT 1 FROM parts WHERE request_key = ? LIMIT 1",
                                       (request.key,)).fetchone() is not None
    if n > 1 and units.have.count(0):
        _by_unit(conn, request, leaf, units)
    outcomes = {blob: load(*where) for blob, where in units.blobs.items()}
    found, why = [], {}
    for start, stop, offset, blob, engine in units.taken:
        outcome = outcomes[blob]
        if outcome is None or offset + stop - start > len(outcome.values):  # gone, or not what was written
            why[Reasons.UNREADABLE] = why.get(Reasons.UNREADABLE, 0) + stop - start
        else:
            found.append(Found(start, stop, offset, engine, blob, outcome))
    for reason in units.why.values():
        why[reason] = why.get(reason, 0) + 1
    left = units.have.count(0) - len(units.why)
    if exact and left:
        why[Reasons.NOT_FINISHED] = why.get(Reasons.NOT_FINISHED, 0) + left
        left = 0
    return found, why, left


def _by_unit(conn: sqlite3.Connection, request: Any, leaf: Leaf, units: _Units) -> None:
    """Units whose own input an earlier request of the same leaf had (a list grown,
    shrunk or reordered); digests compared as 64-bit ints, dict and map doing the work."""
    requests = conn.execute("SELECT key, units FROM requests WHERE leaf_key = ? AND key != ? "
                            "ORDER BY rowid DESC LIMIT ?", (leaf.key, request.key, RECENT_REQUESTS)).fetchall()
    if not requests:
        return
    mine = memoryview(request.digests or unit_digests(request.inputs)).cast("Q").tolist()
    for key, digests in requests:  # newest first
        stored = memoryview(digests).cast("Q").tolist()
        index = dict(zip(stored, range(len(stored))))
        positions = list(map(index.get, mine, itertools.repeat(-1)))
        if positions.count(-1) < len(positions):
            units.take_moved(conn.execute(_STRETCHES, (key,)).fetchall(), positions)
            if not units.have.count(0):
                break


def fresh_reason(conn: sqlite3.Connection, leaf: Leaf) -> str:
    """Why units whose input no earlier run of ``leaf`` had run: their input is new (the
    leaf ran before), or what changed in the task since it last ran."""
    if conn.execute("SELECT 1 FROM leaves WHERE key = ?", (leaf.key,)).fetchone() is not None:
        return Reasons.INPUT_NEW
    return what_changed(conn, leaf)


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
