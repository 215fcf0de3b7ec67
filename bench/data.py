"""Big NumPy arrays through two workers: nbtasks against joblib and raw ipyparallel.

Part of ``bench/run.py`` (``--only big-arrays``). 64 arrays of 16 MiB (1 GiB) go
through a ``nt.ParallelTask`` on ``nt.Cluster(n=2)``, joblib ``Parallel(n_jobs=2)``
(loky; it memory-maps arrays above 1 MB into a shared folder instead of pickling
them) and raw ipyparallel ``LoadBalancedView.map`` / ``DirectView.map`` (which send
arrays as zero-copy zmq frames). Two variants: each unit returns the array's sum
(the data goes out only) or a new array of the same size (out and back). A serial
loop gives the time of the work alone; nbtasks with ``store=False`` shows what the
transfer costs without the run store (unit keys hash every input byte; results
are copied for the store and written to files).

Each peer and variant runs in its own subprocess (started by ``bench/run.py``), so
the client's peak RSS is its own; the inputs (1 GiB) are made before the clock
starts and count in every peer's peak, so the report also gives the peak above them.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import sys
import time
from typing import Any, Callable, Iterator

from common import ipp_cluster, peak_mb, rss_mb

Result = dict[str, Any]

VARIANTS = ("sum", "arrays")
PEERS = ("serial", "nbtasks", "nbtasks-nostore", "joblib", "ipp-lb", "ipp-direct")
PEER_LABELS = {
    "serial": "serial loop (1 core, no transfer)",
    "nbtasks": "nbtasks `ParallelTask` on `nt.Cluster(n=2)` (recorded in the run store)",
    "nbtasks-nostore": "nbtasks, `store=False` (no unit keys, nothing recorded)",
    "joblib": "joblib, loky, n_jobs=2 (memory-maps inputs > 1 MB)",
    "ipp-lb": "ipyparallel `LoadBalancedView.map` (zero-copy frames)",
    "ipp-direct": "ipyparallel `DirectView.map` (zero-copy frames)",
}
PLAN = [f"big-{variant}-{peer}" for variant in VARIANTS for peer in PEERS]
WORKERS_COUNT = 2


# -- the work (no module globals: raw ipyparallel does not ship them) ------------------------
def total(a: Any) -> float:
    return float(a.sum())


def scaled(a: Any) -> Any:
    return a * 2.0


WORK: dict[str, Callable[[Any], Any]] = {"sum": total, "arrays": scaled}


def make_inputs(args: argparse.Namespace) -> list[Any]:
    import numpy as np

    n = args.array_mb * 2**20 // 8
    return [np.arange(n, dtype=np.float64) + i for i in range(args.arrays)]


def check(variant: str, inputs: list[Any], out: list[Any]) -> None:
    """Every peer must give the serial answer (spot-checked for arrays)."""
    assert len(out) == len(inputs)
    if variant == "sum":
        assert out == [total(a) for a in inputs], "wrong sums"
    else:
        import numpy as np

        for i in (0, len(inputs) // 2, len(inputs) - 1):
            assert np.array_equal(out[i], inputs[i] * 2.0), f"wrong array {i}"


# -- the peers: each returns a function that runs the whole map once --------------------------
@contextlib.contextmanager
def peer_runner(peer: str, fn: Callable[[Any], Any], notes: Result) -> Iterator[tuple[Callable[[list], list],
                                                                                      Callable[[], Any]]]:
    """(run(inputs) -> outputs, between()) for ``peer``, its workers started and warmed up;
    what else it measured goes into ``notes``."""
    import numpy as np

    warm = [np.ones(1000)] * 4
    if peer == "serial":
        yield (lambda inputs: [fn(a) for a in inputs]), (lambda: None)
    elif peer.startswith("nbtasks"):
        import nbtasks as nt
        from nbtasks.store.recorder import Store

        store = Store.at(None)
        recorded = None if peer == "nbtasks" else False
        flushes: list[float] = []

        def flush() -> None:  # the store writes results while no run goes: not in the next run's time
            t0 = time.perf_counter()
            store.flush(600)
            flushes.append(time.perf_counter() - t0)

        with nt.Cluster(n=WORKERS_COUNT) as cluster:
            task = nt.ParallelTask(fn)
            task.submit(warm, cluster=cluster, progress=False, cache=False, store=recorded).result()
            flush()
            flushes.clear()
            yield (lambda inputs: task.submit(inputs, cluster=cluster, progress=False, cache=False,
                                              store=recorded).result()), flush
            flush()
        if recorded is None:
            notes["store_flush_s"] = max(flushes)
    elif peer == "joblib":
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=WORKERS_COUNT)
        parallel(delayed(fn)(a) for a in warm)
        yield (lambda inputs: parallel(delayed(fn)(a) for a in inputs)), (lambda: None)
    else:
        with ipp_cluster(WORKERS_COUNT) as client:  # nbtasks' controller settings; start not timed
            client[:].use_cloudpickle()  # this module's functions by value (arrays still go as frames)
            view = client.load_balanced_view() if peer == "ipp-lb" else client[:]
            view.map(fn, warm, block=True)

            def between() -> None:
                client.wait(timeout=60)  # replies of a map may be complete before all of its messages are
                client.purge_local_results("all")
                client.history.clear()

            between()
            yield (lambda inputs: list(view.map(fn, inputs, block=True))), between


def measure(peer: str, variant: str, args: argparse.Namespace) -> Result:
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # engines and loky workers cannot import it
    fn = WORK[variant]
    inputs = make_inputs(args)
    base = rss_mb()
    times = []
    notes: Result = {}
    with peer_runner(peer, fn, notes) as (run, between):
        for i in range(args.repeats):
            if i:
                between()
                # the last run's results go now, not at the next gc: they sit in reference cycles
                # (ipyparallel's futures, an nbtasks run), and each peer's peak is one run's
                gc.collect()
            t0 = time.perf_counter()
            out = run(inputs)
            times.append(time.perf_counter() - t0)
            check(variant, inputs, out)
            del out
    return {"times": times, "best": min(times), "base_mb": base, "peak_mb": peak_mb(),
            "gib": args.arrays * args.array_mb / 1024, **notes}


WORKERS: dict[str, Callable[[argparse.Namespace], Result]] = {
    f"big-{variant}-{peer}": functools.partial(measure, peer, variant) for variant in VARIANTS for peer in PEERS
}


# -- the report --------------------------------------------------------------------------------
def table(results: dict[str, Result], args: argparse.Namespace) -> list[str]:
    gib = args.arrays * args.array_mb / 1024
    lines = [f"### 5. Big arrays: {args.arrays} NumPy arrays of {args.array_mb} MiB ({gib:g} GiB), "
             f"{WORKERS_COUNT} workers", ""]
    for variant in VARIANTS:
        what = "each unit returns the sum" if variant == "sum" else "each unit returns a new array (2x)"
        ours = results.get(f"big-{variant}-nbtasks", {})
        lines += [f"{what}:", "",
                  "| peer | best (s) | GiB/s in | client peak MB | peak above inputs MB | nbtasks time vs peer |",
                  "|---|---:|---:|---:|---:|---:|"]
        for peer in PEERS:
            r = results.get(f"big-{variant}-{peer}", {"error": "not run"})
            if "error" in r:
                lines.append(f"| {PEER_LABELS[peer]} | error | | | | |")
                continue
            versus = "—" if peer == "nbtasks" or "error" in ours else f"{ours['best'] / r['best']:.2f}x"
            lines.append(f"| {PEER_LABELS[peer]} | {r['best']:.3f} | {r['gib'] / r['best']:.2f} | "
                         f"{r['peak_mb']:,.0f} | {r['peak_mb'] - r['base_mb']:,.0f} | {versus} |")
        if "store_flush_s" in ours:
            lines.append(f"\nnbtasks: writing a run's results to the store took up to {ours['store_flush_s']:.2f} s "
                         "after it (between runs, not timed).")
        lines.append("")
    lines.append(f"Best of {args.repeats} runs; client peak = the measuring process's ru_maxrss (it holds the "
                 f"{gib:g} GiB of inputs, made before the clock starts).")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arrays", type=int, default=64, help="arrays in the big-arrays runs (default 64)")
    parser.add_argument("--array-mb", type=int, default=16, help="MiB per array (default 16)")
