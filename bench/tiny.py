"""Tiny units: 100,000 no-op units through 2 workers, i.e. pure overhead, and what the run
store costs on them.

- nbtasks ``ParallelTask(noop)`` on ``nt.Cluster(n=2)`` (automatic batching, recorded in the
  run store); joblib ``Parallel(n_jobs=2)`` (loky, automatic batching); raw ipyparallel
  ``LoadBalancedView.map`` with a hand-tuned ``chunksize=1000`` and with its default (one
  message per unit: measured on fewer units, its rate extrapolated); the serial loop, the
  floor nobody beats on overhead.
- the run store: the same runs alternately recorded and not (``store=False``) in one process
  on one cluster.

Clusters and pools are started and warmed up before the clock starts.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from common import (
    ENGINES,
    Result,
    Target,
    Worker,
    ipp_cluster,
    nbtasks_cluster,
    no_numbers,
    noop,
    peak_mb,
    purge,
    registrar,
    rss_mb,
    timing,
    wall_times,
)

TINY_RATE_TARGET = 1_500_000  # units/s
TINY_VS_JOBLIB_TARGET = 3.5
STORE_OVERHEAD_TARGET = 0.10
LOOKUP_TARGET = 2.0  # a rerun that finds every unit one by one, against running them all

PLAN = ["tiny-serial", "tiny-nbtasks", "tiny-joblib", "tiny-ipp-chunk1000", "tiny-ipp-default"]
STORE_PLAN = ["store-overhead", "store-rerun"]
WORKERS: dict[str, Worker] = {}
worker = registrar(WORKERS)


def tiny_run(cluster: Any, n: int, store: Any = None) -> None:
    """``n`` no-op units; cache=False: every repeat runs (and records) every unit again."""
    import nbtasks as nt

    out = nt.ParallelTask(noop).submit(range(n), cluster=cluster, progress=False, store=store,
                                       cache=False).result()
    assert len(out) == n and out[-1] == n - 1


@worker("tiny-nbtasks")
def tiny_nbtasks(args: argparse.Namespace) -> Result:
    with nbtasks_cluster() as cluster:
        tiny_run(cluster, 1000)  # warm-up
        base = rss_mb()
        times = wall_times(args.repeats, lambda: tiny_run(cluster, args.units))
    return timing(times, units=args.units, base_mb=base, peak_mb=peak_mb())


@worker("store-overhead")
def store_overhead(args: argparse.Namespace) -> Result:
    """Tiny-unit runs recorded in the store ($NBTASKS_STORE, a file) and not recorded
    (store=False), alternated in one process on one cluster so both see the same machine.
    Each run starts once the previous one's records are written (they are written while no
    run goes); that writing time is reported too. The runs are of ``--million-units``: since
    lanes, 100,000 no-op units take ~35 ms, and runs that short vary by +-20 % from one to
    the next, more than the store costs."""
    from nbtasks.store.recorder import Store

    store = Store.at(None)
    with nbtasks_cluster() as cluster:
        tiny_run(cluster, 1000)
        tiny_run(cluster, 1000, False)
        recorded, unrecorded, writing = [], [], []
        for i in range(2 * args.repeats):
            for kind in (("store", "none") if i % 2 else ("none", "store")):
                t0 = time.perf_counter()
                tiny_run(cluster, args.million_units, None if kind == "store" else False)
                t1 = time.perf_counter()
                store.flush()
                (recorded if kind == "store" else unrecorded).append(t1 - t0)
                if kind == "store":
                    writing.append(time.perf_counter() - t1)
    return {"units": args.million_units, "best": min(recorded), "times": recorded, "nostore_best": min(unrecorded),
            "nostore_times": unrecorded, "writing_median": statistics.median(writing), "peak_mb": peak_mb()}


@worker("store-rerun")
def store_rerun(args: argparse.Namespace) -> Result:
    """Reruns that find their units in the store: the same list (one key for the whole
    list), and the list with one input more (each unit found by its own input's digest,
    one unit runs), beside running the grown list with no store at all. Each repeat starts
    on a fresh store file, its first run recorded and written before the reruns."""
    import tempfile

    import nbtasks as nt
    from nbtasks.store.recorder import Store

    task = nt.ParallelTask(noop)
    same, grown, bare = [], [], []
    with nbtasks_cluster() as cluster, tempfile.TemporaryDirectory() as where:
        tiny_run(cluster, 1000, False)
        for i in range(args.repeats):
            path = f"{where}/rerun{i}.db"
            inputs = list(range(args.units))
            task.submit(inputs, cluster=cluster, store=path, progress=False).result()
            Store.at(path).flush()
            for times, todo, store in ((grown, inputs + [args.units], path), (same, inputs, path),
                                       (bare, inputs + [args.units], False)):
                t0 = time.perf_counter()
                run = task.submit(todo, cluster=cluster, store=store, progress=False)
                run.result()
                times.append(time.perf_counter() - t0)
                if store and run.reused != args.units:
                    return {"error": f"a rerun reused {run.reused} units, not {args.units}"}
            Store.at(path).close()
    return {"units": args.units, "same": min(same), "grown": min(grown), "bare": min(bare),
            "grown_times": grown, "bare_times": bare, "peak_mb": peak_mb()}


@worker("tiny-ipp-default")
def tiny_ipp_default(args: argparse.Namespace) -> Result:
    n = args.raw_default_units
    with ipp_cluster() as client:
        view = client.load_balanced_view()
        view.map(noop, range(10), block=True)  # warm-up
        base = rss_mb()
        times = wall_times(1, lambda: view.map(noop, range(n), block=True))
    return timing(times, units=n, base_mb=base, peak_mb=peak_mb())


@worker("tiny-ipp-chunk1000")
def tiny_ipp_chunked(args: argparse.Namespace) -> Result:
    with ipp_cluster() as client:
        view = client.load_balanced_view()
        view.map(noop, range(2000), chunksize=1000, block=True)  # warm-up
        purge(client)
        base = rss_mb()
        times = wall_times(args.repeats, lambda: view.map(noop, range(args.units), chunksize=1000, block=True),
                           between=lambda: purge(client))
    return timing(times, units=args.units, base_mb=base, peak_mb=peak_mb())


@worker("tiny-joblib")
def tiny_joblib(args: argparse.Namespace) -> Result:
    from joblib import Parallel, delayed

    Parallel(n_jobs=ENGINES)(delayed(noop)(i) for i in range(1000))  # warm-up: start the loky pool
    base = rss_mb()
    times = wall_times(args.repeats, lambda: Parallel(n_jobs=ENGINES)(delayed(noop)(i) for i in range(args.units)))
    return timing(times, units=args.units, base_mb=base, peak_mb=peak_mb())


@worker("tiny-serial")
def tiny_serial(args: argparse.Namespace) -> Result:
    base = rss_mb()
    times = wall_times(args.repeats, lambda: [noop(i) for i in range(args.units)])
    return timing(times, units=args.units, base_mb=base, peak_mb=peak_mb())


# -- the report -----------------------------------------------------------------------------------
def rate(result: Result) -> float | None:
    return None if "error" in result else result["units"] / result["best"]


def ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "n/a"
    return f"{ours / theirs:.2f}x"


def table(results: dict[str, Result], args: argparse.Namespace) -> list[str]:
    peers = [("nbtasks (auto batching; recorded in the run store)", "tiny-nbtasks"),
             ("joblib, loky, n_jobs=2 (auto batching)", "tiny-joblib"),
             ("ipyparallel LoadBalancedView.map, chunksize=1000", "tiny-ipp-chunk1000"),
             ("ipyparallel LoadBalancedView.map, default (chunksize=1) *", "tiny-ipp-default"),
             ("serial loop (1 core, no IPC)", "tiny-serial")]
    ours = results["tiny-nbtasks"]
    lines = [f"### 1. Tiny units: {args.units:,} no-op units, {ENGINES} workers",
             "",
             "| peer | units run | time (s) | units/s | client peak MB | nbtasks speed vs peer "
             "| nbtasks peak mem vs peer |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label, key in peers:
        r = results[key]
        if no_numbers(r, label, 5, lines):
            continue
        partial = r["units"] < args.units
        peak_text = f"{r['peak_mb']:,.0f}" + (f" (at {r['units']:,} units)" if partial else "")
        speed = "—" if key == "tiny-nbtasks" else ratio(rate(ours), rate(r))
        mem = "—" if key == "tiny-nbtasks" else ratio(ours.get("peak_mb"), r["peak_mb"])
        if partial and key != "tiny-nbtasks":
            mem += f" (vs its {r['units']:,}-unit run)"
        lines.append(f"| {label} | {r['units']:,} | {r['best']:.3f} | {rate(r):,.0f} | {peak_text} | {speed} | {mem} |")
    r = results["tiny-ipp-default"]
    if "error" not in r and r["units"] < args.units:
        lines += ["", f"\\* measured on {r['units']:,} units (`--raw-default-units`); units/s is that rate, "
                      f"extrapolated to {args.units:,} units it would take ~{args.units / rate(r):,.0f} s. "
                      f"Its peak memory is that of the {r['units']:,}-unit run (it grows with the number "
                      f"of units: {r['peak_mb'] - r['base_mb']:,.0f} MB over the client's "
                      f"{r['base_mb']:,.0f} MB before the run)."]
    lines += ["", f"Times are the best of {args.repeats} runs (raw ipyparallel default: 1 run); "
                  "client peak = the measuring process's ru_maxrss (workers/engines not included)."]
    return lines


def store_slowdown(result: Result) -> float | None:
    """How much longer a tiny-unit run takes when it is recorded (best against best)."""
    return None if "error" in result else result["best"] / result["nostore_best"] - 1


def store_table(results: dict[str, Result], args: argparse.Namespace) -> list[str]:
    r = results["store-overhead"]
    units = r.get("units", args.million_units)
    lines = [f"### 1b. What the run store costs: {units:,} no-op units, recorded or not", ""]
    if "error" in r:
        return lines + [r["error"].splitlines()[0]]
    return lines + [
        "| runs | best (s) | median (s) |", "|---|---:|---:|",
        f"| recorded in the store (default) | {r['best']:.3f} | {statistics.median(r['times']):.3f} |",
        f"| `store=False` | {r['nostore_best']:.3f} | {statistics.median(r['nostore_times']):.3f} |",
        "",
        f"Alternated in one process on one cluster ({len(r['times'])} runs each). Recorded runs are "
        f"{store_slowdown(r) * 100:+.1f}% slower (best against best); writing their records took a "
        f"median {r['writing_median'] * 1000:.0f} ms after each run, while no run was going."]


def rerun_table(results: dict[str, Result], args: argparse.Namespace) -> list[str]:
    r = results["store-rerun"]
    lines = [f"### 1c. Reruns that find their units: {args.units:,} no-op units in the store", ""]
    if "error" in r:
        return lines + [r["error"].splitlines()[0]]
    return lines + [
        "| run | best (s) |", "|---|---:|",
        f"| the same list again (one key for the whole list) | {r['same']:.3f} |",
        f"| one input more: every unit found by its own input, one runs | {r['grown']:.3f} |",
        f"| the grown list run in full, `store=False` | {r['bare']:.3f} |",
        "",
        f"Finding {args.units:,} units one by one takes {r['grown'] / r['bare']:.2f} x the time of running "
        "them all as no-ops; any unit that does real work makes the rerun the cheaper one."]


def lookup_ratio(result: Result) -> float | None:
    return None if "error" in result else result["grown"] / result["bare"]


def targets(results: dict[str, Result], args: argparse.Namespace) -> list[Target]:
    """(target, the measurements it reads, what was measured, met?); None: not measured."""
    ours, joblib = rate(results["tiny-nbtasks"]), rate(results["tiny-joblib"])
    overhead = store_slowdown(results["store-overhead"])
    lookup = lookup_ratio(results["store-rerun"])
    return [
        (f"tiny units: >= {TINY_RATE_TARGET / 1e6:g} M units/s (store on)", ["tiny-nbtasks"],
         "error" if ours is None else f"{ours:,.0f} units/s",
         None if ours is None else ours >= TINY_RATE_TARGET),
        (f"tiny units: >= {TINY_VS_JOBLIB_TARGET:g} x joblib's rate (same run)", ["tiny-nbtasks", "tiny-joblib"],
         "error" if ours is None or joblib is None else f"{ours / joblib:.2f} x ({joblib:,.0f} units/s)",
         None if ours is None or joblib is None else ours >= TINY_VS_JOBLIB_TARGET * joblib),
        (f"run store slows tiny units by < {STORE_OVERHEAD_TARGET:.0%}", ["store-overhead"],
         "error" if overhead is None else
         f"{overhead * 100:+.1f}% (best of {len(results['store-overhead']['times'])} alternated runs each)",
         None if overhead is None else overhead < STORE_OVERHEAD_TARGET),
        (f"rerun with one input more: finding {args.units:,} units one by one <= {LOOKUP_TARGET:g} x running "
         "them (no-ops)", ["store-rerun"],
         "error" if lookup is None else f"{lookup:.2f} x", None if lookup is None else lookup <= LOOKUP_TARGET),
    ]
