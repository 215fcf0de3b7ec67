"""The bench's arithmetic, apart from any measuring: efficiencies, spreads, memory growth,
process trees, and the order in which fresh-process measurements run.

Pure functions of plain values, so ``tests/bench/test_metrics.py`` pins them without timing
anything.
"""

from __future__ import annotations

import statistics
from typing import Iterable, Mapping, Sequence


def efficiency(serial_s: float, wall_s: float, workers: int) -> float:
    """The share of ``workers`` cores that did the work: serial time / (workers x wall time)."""
    if serial_s < 0 or wall_s <= 0 or workers < 1:
        raise ValueError(f"efficiency needs serial >= 0, wall > 0 and workers >= 1: {serial_s}, {wall_s}, {workers}")
    return serial_s / (workers * wall_s)


def spread(times: Sequence[float]) -> dict[str, float]:
    """Best, median and 90th percentile of some timings (a single timing is all three)."""
    if not times:
        raise ValueError("spread of no timings")
    ordered = sorted(times)
    p90 = ordered[0] if len(ordered) == 1 else statistics.quantiles(ordered, n=10, method="inclusive")[8]
    return {"best": ordered[0], "median": statistics.median(ordered), "p90": p90}


def growth(before: float, after: Iterable[float]) -> float:
    """How far memory rose above ``before`` at its highest reading ``after`` (0 if it never rose)."""
    readings = list(after)
    if not readings:
        raise ValueError("growth needs at least one reading after")
    return max(0.0, max(readings) - before)


def descendants(root: int, parents: Mapping[int, int]) -> list[int]:
    """``root`` and every process below it, from a snapshot ``parents``: pid -> parent pid."""
    if root not in parents:
        raise KeyError(f"process {root} is not in the snapshot")
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        if pid != ppid:
            children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.append(pid)
        todo += children.get(pid, [])
    return found


def interleave(plan: Sequence[str], rounds: Mapping[str, int]) -> list[str]:
    """``plan`` with every name of ``rounds`` run that many times, round by round.

    Names in ``rounds`` are measurements that need a fresh process per repeat (cold starts):
    each block of them that follows one another in the plan runs as a b c a b c ..., so a
    noisy moment of the machine falls on every peer alike. A name whose rounds are spent
    drops out of the later rounds.
    """
    out: list[str] = []
    block: list[str] = []
    for name in [*plan, None]:
        if name is not None and name in rounds:
            block.append(name)
            continue
        for i in range(max((rounds[b] for b in block), default=0)):
            out += [b for b in block if i < rounds[b]]
        block = []
        if name is not None:
            out.append(name)
    return out


def parse_size(text: str) -> tuple[int, float]:
    """``"40x50"`` -> (40 units, 0.05 s each): a CPU-bound size as the command line gives it."""
    units, sep, ms = text.lower().partition("x")
    try:
        n, seconds = int(units), float(ms) / 1000
    except ValueError:
        n = seconds = 0
    if not sep or n < 1 or seconds <= 0:
        raise ValueError(f"a CPU-bound size is UNITSxMILLISECONDS, e.g. 40x50, not {text!r}")
    return n, seconds


def size_label(units: int, seconds: float) -> str:
    return f"{units} x {seconds * 1000:g} ms"


def thin(readings: Sequence[tuple[float, ...]], most: int) -> list[tuple[float, ...]]:
    """At most ``most`` readings, evenly spaced, always the first and the last."""
    if most < 2:
        raise ValueError("thin keeps at least the first and the last reading")
    if len(readings) <= most:
        return list(readings)
    step = (len(readings) - 1) / (most - 1)
    return [readings[round(i * step)] for i in range(most)]
