"""Chaos: kill engines at random moments over many runs; nothing may be lost.

Each round submits a run of units that each sleep a little and return their
input, kills a random engine (SIGKILL) at a random moment while it runs, and
checks the result against the serial one. The local cluster replaces dead
engines, so it keeps its size. Prints runs completed, units lost (must be 0),
units re-queued, units that ran to completion twice (only units the killed
engine finished in its last 0.2 s, not yet sent back, should), and for each
kill how long until the cluster had its full size again.
Every round runs with ``cache=False``: the same units again, not the stored ones.

Run: ``.venv/bin/python bench/chaos.py [--rounds N]`` (not part of ``make bench``:
it is a fault drill, not a speed measurement).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import time


def unit(x: int, marks: str = "") -> int:
    time.sleep(0.01)
    with open(os.path.join(marks, str(x)), "a") as f:  # one line per completed execution
        f.write("x\n")
    return x


def finished_twice(marks: str) -> int:
    """Units that ran to completion more than once (their engine died just after)."""
    twice = 0
    for name in os.listdir(marks):
        with open(os.path.join(marks, name)) as f:
            twice += len(f.read().split()) > 1
    return twice


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--units", type=int, default=300)
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("IPYTHONDIR", tempfile.mkdtemp(prefix="nbtasks-chaos-"))
    import nbtasks as nt

    rng = random.Random(args.seed)
    completed = lost = retried = twice = 0
    recoveries: list[float] = []
    with nt.Cluster(n=args.engines) as cluster:
        for round_ in range(args.rounds):
            while len(cluster.engines) < args.engines:  # the previous kill is still being repaired
                time.sleep(0.05)
            pids = dict(zip(cluster.engines, cluster.client[cluster.engines].apply_sync(os.getpid)))
            marks = tempfile.mkdtemp(prefix="nbtasks-chaos-marks-")
            run = nt.ParallelTask(unit).submit(range(args.units), cluster=cluster, progress=False, cache=False,
                                               marks=marks)
            time.sleep(rng.uniform(0.05, args.units * 0.01 / args.engines * 0.8))
            victim = rng.choice(list(pids))
            os.kill(pids[victim], signal.SIGKILL)
            killed = time.monotonic()
            result = run.result(300)
            missing = sum(1 for i, r in enumerate(result) if r != i) + (args.units - len(result))
            lost += missing
            completed += missing == 0
            retried += run.counts()["retried"]
            again = finished_twice(marks)
            twice += again
            while len(cluster.engines) < args.engines or victim in cluster.engines:
                time.sleep(0.02)
            recoveries.append(time.monotonic() - killed)
            print(f"round {round_ + 1}: killed engine {victim}, units lost {missing}, "
                  f"re-queued {run.counts()['retried']}, finished twice {again}, "
                  f"cluster full again after {recoveries[-1]:.2f} s")
    print(f"\nruns completed correctly: {completed}/{args.rounds}; units lost: {lost}; "
          f"units re-queued: {retried}; units finished twice: {twice}; "
          f"recovery median {statistics.median(recoveries):.2f} s, "
          f"worst {max(recoveries):.2f} s")
    return 0 if lost == 0 and completed == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
