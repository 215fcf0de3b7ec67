"""The first result, and every result after it: cold start and round trip.

Cold start: a fresh ``python -c`` runs exactly what a user types, from the first import to the
first result (the snippets below; the clock starts before the import). The interpreter's own
launch is reported apart. Every peer runs ``--repeats`` times (raw ipyparallel, ~7 s, once),
round by round (nbtasks, dask, joblib, nbtasks, ...), each run in a fresh process.

- nbtasks as a user: no ``NBTASKS_PRESTART`` in its environment (whatever nbtasks does by
  default on import), its own fresh run store (nothing reused); the default cluster stops at
  exit. Also with ``NBTASKS_PRESTART=0``, the opt-out, to show what starting early buys.
- dask ``distributed``: ``LocalCluster(n_workers=2)`` + ``Client`` + ``submit().result()``.
- joblib: the first ``Parallel(n_jobs=2)`` call (it starts the loky workers).
- raw ipyparallel: ``ipp.Cluster(n=2)`` with its defaults, ``start_and_connect_sync()`` and
  the first ``apply_sync``.

Round trip on a running cluster: a trivial unit's ``submit(...).result()`` on warm workers,
timed one by one ``--round-trips`` times (the median is the measure), against ipyparallel's
``DirectView.apply_sync`` (one engine) and ``LoadBalancedView.apply_sync``, and dask's
``client.submit(f, x).result()``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable

from common import (
    Result,
    Target,
    Worker,
    dask_client,
    ipp_cluster,
    nbtasks_cluster,
    no_numbers,
    peak_mb,
    registrar,
    square,
)
from metrics import spread

COLD_TARGET_S = 0.75
ROUND_TRIP_TARGET_S = 0.005
WARM_UP = 20  # round trips before the timed ones

# -- cold start: what a user types, run by ``python -c`` ---------------------------------------------
SQUARE = "def square(x):\n    return x * x\n\n"
COLD_CODE = {
    "cold-nbtasks": "import nbtasks as nt\n\n@nt.task\n" + SQUARE + "assert square.submit(3).result() == 9\n",
    "cold-dask": ("from distributed import Client, LocalCluster\n\n" + SQUARE
                  + "cluster = LocalCluster(n_workers=2)\nclient = Client(cluster)\n"
                  "assert client.submit(square, 3).result() == 9\n"),
    "cold-joblib": ("from joblib import Parallel, delayed\n\n" + SQUARE
                    + "assert Parallel(n_jobs=2)(delayed(square)(x) for x in [3]) == [9]\n"),
    "cold-ipp-default": ("import ipyparallel as ipp\n\n" + SQUARE
                         + "cluster = ipp.Cluster(n=2)\nclient = cluster.start_and_connect_sync()\n"
                         "assert client.load_balanced_view().apply_sync(square, 3) == 9\n"),
}
COLD_CODE["cold-nbtasks-noprestart"] = COLD_CODE["cold-nbtasks"]
# after the clock stops: leave nothing running (nbtasks' default cluster stops at exit by itself)
COLD_CLEANUP = {
    "cold-dask": "client.close()\ncluster.close()\n",
    "cold-joblib": ("from joblib.externals.loky import get_reusable_executor\n"
                    "get_reusable_executor().shutdown(wait=True)\n"),
    "cold-ipp-default": "client.close()\ncluster.stop_cluster_sync()\n",
}
COLD_LABELS = {
    "cold-nbtasks": "nbtasks: `import nbtasks`, `square.submit(3).result()` (default cluster; as a user: "
                    "no `NBTASKS_PRESTART`)",
    "cold-nbtasks-noprestart": "nbtasks, the same with `NBTASKS_PRESTART=0` (the opt-out)",
    "cold-dask": "dask: `LocalCluster(n_workers=2)`, `Client`, `submit(square, 3).result()`",
    "cold-joblib": "joblib: first `Parallel(n_jobs=2)(delayed(square)(x) for x in [3])`",
    "cold-ipp-default": "ipyparallel: `ipp.Cluster(n=2).start_and_connect_sync()`, `apply_sync`, defaults",
}
COLD_PLAN = list(COLD_LABELS)
ONCE = ("cold-ipp-default",)  # ~7 s a run: measured once whatever --repeats says


def cold_rounds(repeats: int) -> dict[str, int]:
    """How many fresh processes each cold-start peer gets."""
    return {name: 1 if name in ONCE else repeats for name in COLD_PLAN}


def cold_source(name: str, launched: float, mark: str) -> str:
    """The whole program of one cold run: a clock around the user's code, the result line, cleanup."""
    clock = "import time as _bench_time\n_bench_t0 = _bench_time.perf_counter()\n"
    report = (
        "_bench_elapsed = _bench_time.perf_counter() - _bench_t0\n"
        "import json as _bench_json, resource as _bench_resource\n"
        f"print({mark!r} + _bench_json.dumps({{'best': _bench_elapsed, "
        f"'since_launch': _bench_time.time() - {launched!r}, "
        "'peak_mb': _bench_resource.getrusage(_bench_resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)\n")
    return clock + COLD_CODE[name] + report + COLD_CLEANUP.get(name, "")


def cold_command(name: str, launched: float, mark: str) -> list[str]:
    return [sys.executable, "-c", cold_source(name, launched, mark)]


def cold_env(name: str, env: dict[str, str], round_no: int) -> dict[str, str]:
    """nbtasks as a user: no NBTASKS_PRESTART (or the opt-out), a run store of its own."""
    env = dict(env)
    env.pop("NBTASKS_PRESTART", None)
    if name == "cold-nbtasks-noprestart":
        env["NBTASKS_PRESTART"] = "0"
    if name.startswith("cold-nbtasks"):
        env["NBTASKS_STORE"] = os.path.join(env["IPYTHONDIR"], f"cold-{name}-{round_no}.db")
    return env


def merge_runs(runs: list[Result]) -> Result:
    """One result of a peer's fresh-process runs: every time, the best, and failures."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[-1] if runs else {"error": "not run"}
    times = [r["best"] for r in good]
    return {"times": times, "best": min(times), "since_launch": min(r["since_launch"] for r in good),
            "peak_mb": max(r["peak_mb"] for r in good), "failed": len(runs) - len(good),
            "errors": [r["error"] for r in runs if "error" in r][:1]}


# -- round trip on a running cluster -------------------------------------------------------------------
RTT_PLAN = ["rtt-nbtasks", "rtt-ipp", "rtt-dask"]
WORKERS: dict[str, Worker] = {}
worker = registrar(WORKERS)


def round_trips(n: int, call: Callable[[int], Any]) -> Result:
    """Time ``n`` calls one by one, after a warm-up; each must give the square of its input."""
    for i in range(WARM_UP):
        assert call(i) == i * i
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        out = call(i)
        times.append(time.perf_counter() - t0)
        assert out == i * i
    return {**spread(times), "n": n}


@worker("rtt-nbtasks")
def rtt_nbtasks(args: argparse.Namespace) -> Result:
    import nbtasks as nt

    task = nt.task(square)
    with nbtasks_cluster() as cluster:
        out = round_trips(args.round_trips, lambda x: task.submit(x, cluster=cluster, progress=False,
                                                                  cache=False).result())
    return {"nbtasks": out, "peak_mb": peak_mb()}


@worker("rtt-ipp")
def rtt_ipp(args: argparse.Namespace) -> Result:
    with ipp_cluster() as client:
        direct, balanced = client[0], client.load_balanced_view()
        return {"direct": round_trips(args.round_trips, lambda x: direct.apply_sync(square, x)),
                "balanced": round_trips(args.round_trips, lambda x: balanced.apply_sync(square, x)),
                "peak_mb": peak_mb()}


@worker("rtt-dask")
def rtt_dask(args: argparse.Namespace) -> Result:
    with dask_client() as client:
        out = round_trips(args.round_trips, lambda x: client.submit(square, x, pure=False).result())
    return {"dask": out, "peak_mb": peak_mb()}


# -- the report -----------------------------------------------------------------------------------------
RTT_ROWS = [("nbtasks: `task.submit(x, cluster=c, progress=False).result()`", "rtt-nbtasks", "nbtasks"),
            ("ipyparallel `DirectView.apply_sync` (one engine)", "rtt-ipp", "direct"),
            ("ipyparallel `LoadBalancedView.apply_sync`", "rtt-ipp", "balanced"),
            ("dask `client.submit(f, x, pure=False).result()`", "rtt-dask", "dask")]


def cold_table(results: dict[str, Result], args: argparse.Namespace) -> list[str]:
    ours = results["cold-nbtasks"]
    lines = ["### 3. Cold start: a fresh process's first result", "",
             "| peer | import + start + first result, best (s) | every run (s) | incl. interpreter launch (s) "
             "| nbtasks time vs peer |",
             "|---|---:|---|---:|---:|"]
    for name in COLD_PLAN:
        r = results[name]
        label = COLD_LABELS[name]
        if no_numbers(r, label, 3, lines):
            continue
        every = ", ".join(f"{t:.2f}" for t in r["times"]) + (f" ({r['failed']} failed)" if r["failed"] else "")
        versus = "—" if name == "cold-nbtasks" or "error" in ours else f"{ours['best'] / r['best']:.2f}x"
        lines.append(f"| {label} | {r['best']:.2f} | {every} | {r['since_launch']:.2f} | {versus} |")
    failed = [(n, results[n]["errors"][0]) for n in COLD_PLAN if results[n].get("errors")]
    if failed:
        lines += ["", "Failed runs: " + "; ".join(f"{n}: {e.splitlines()[-1][:120]}" for n, e in failed)]
    return lines


def rtt_table(results: dict[str, Result], args: argparse.Namespace) -> list[str]:
    ours = results["rtt-nbtasks"].get("nbtasks")
    lines = [f"### 3b. Round trip of a trivial unit on a running cluster ({args.round_trips} one after another, "
             f"after {WARM_UP} not timed)", "",
             "| peer | median (ms) | best (ms) | 90th percentile (ms) | nbtasks median vs peer |",
             "|---|---:|---:|---:|---:|"]
    for label, name, key in RTT_ROWS:
        r = results[name]
        if no_numbers(r, label, 3, lines):
            continue
        t = r[key]
        versus = "—" if key == "nbtasks" else "n/a" if ours is None else f"{ours['median'] / t['median']:.2f}x"
        lines.append(f"| {label} | {t['median'] * 1000:.2f} | {t['best'] * 1000:.2f} | {t['p90'] * 1000:.2f} "
                     f"| {versus} |")
    return lines


def targets(results: dict[str, Result], args: argparse.Namespace) -> list[Target]:
    cold, dask = results["cold-nbtasks"].get("best"), results["cold-dask"].get("best")
    rtt = results["rtt-nbtasks"].get("nbtasks", {}).get("median")
    return [
        (f"cold start (import + first result) <= {COLD_TARGET_S:g} s", ["cold-nbtasks"],
         "error" if cold is None else f"{cold:.2f} s", None if cold is None else cold <= COLD_TARGET_S),
        ("cold start faster than dask's (same run)", ["cold-nbtasks", "cold-dask"],
         "error" if cold is None or dask is None else f"{cold:.2f} vs {dask:.2f} s",
         None if cold is None or dask is None else cold < dask),
        (f"round trip on a running cluster <= {ROUND_TRIP_TARGET_S * 1000:g} ms (median)", ["rtt-nbtasks"],
         "error" if rtt is None else f"{rtt * 1000:.2f} ms", None if rtt is None else rtt <= ROUND_TRIP_TARGET_S),
    ]
