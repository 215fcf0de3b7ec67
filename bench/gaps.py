"""Where a CPU-bound run's wall time goes besides its units: ``python bench/gaps.py [runs]``.

Runs 40 units of 50 ms (a busy loop) on 2 local engines ``runs`` times (20 by default) with
the public API, each unit timing itself (it returns its own start and end), and prints medians
per engine: how long after ``submit`` the first unit starts, the time between units inside a
chunk and across chunks (finished units and chunks are the run's chunk records), how far
apart the two engines' last units end, and how long the last outcome takes to reach
``result()``. ``bench/README.md`` ("The last target") shows what changes moved these.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("NBTASKS_PRESTART", "0")  # the cluster below is the only one

import nbtasks as nt  # noqa: E402

UNITS, SECONDS = 40, 0.05


def timed_spin(seconds: float) -> tuple[float, float]:
    """A busy loop of ``seconds``; its own start and end (epoch seconds)."""
    import time

    start = time.time()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return start, time.time()


def one_run(task: nt.ParallelTask, cluster: nt.Cluster) -> dict[str, float]:
    submitted = time.time()
    run = task.submit([SECONDS] * UNITS, cluster=cluster, progress=False, cache=False)
    spans = run.result(60)
    returned = time.time()
    chunk_of, engine_of = {}, {}
    for record in run.chunks_since(0):
        for index in range(record.start, record.stop):
            chunk_of[index], engine_of[index] = id(record.outcome), record.engine
    by_engine: dict[int, list[tuple[float, float, int]]] = {}
    for index, (start, end) in enumerate(spans):
        by_engine.setdefault(engine_of[index], []).append((start, end, chunk_of[index]))
    first = within = across = chunks = 0.0
    ends = []
    for units in by_engine.values():
        units.sort()
        first += units[0][0] - submitted
        chunks += len({chunk for _, _, chunk in units})
        for (_, end, chunk), (start, _, next_chunk) in zip(units, units[1:]):
            if chunk == next_chunk:
                within += start - end
            else:
                across += start - end
        ends.append(units[-1][1])
    engines = len(by_engine)
    return {"wall": (returned - submitted) * 1000, "first unit": first / engines * 1000,
            "within chunks": within / engines * 1000, "across chunks": across / engines * 1000,
            "chunks": chunks / engines, "last units apart": (max(ends) - min(ends)) * 1000,
            "last outcome to result()": (returned - max(ends)) * 1000}


def main(runs: int) -> None:
    task = nt.ParallelTask(timed_spin)
    with nt.Cluster(n=2) as cluster:
        task.submit([0.001] * 4, cluster=cluster, progress=False, cache=False).result(60)
        rows = [one_run(task, cluster) for _ in range(runs)]
    print(f"{runs} runs of {UNITS} x {SECONDS * 1000:g} ms on 2 engines, medians (ms; chunks per engine):")
    for name in rows[0]:
        print(f"  {name:26s} {statistics.median(row[name] for row in rows):8.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
