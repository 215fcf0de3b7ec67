"""Flat memory: what a long session of tiny units costs the client and the controller.

- memory-million: one run of 1,000,000 no-op units (``--million-units``); the client's RSS and
  the controller's are read before it, every 50 ms while it goes (with the units done so far),
  with its result held, and after the result is dropped and the run store has written it.
- memory-waves: 20 waves of 100,000 no-op units (``--waves``, ``--units``) one after another on
  one cluster; both RSS after each wave, its result dropped.

Growth is the highest reading after the start less the reading before it (the cluster warm).
The controller is the ipyparallel controller process of the cluster and every process below it
(its forked schedulers and relays), RSS summed (pages they share count once per process, so the
level is high; its growth is what counts). The client's growth leaves out the result list
of the one run (the user's own data: ~36 MB for a million ints): it is read once that is dropped.
"""

from __future__ import annotations

import argparse
import gc
import threading
import time
from typing import Any

from common import Result, Target, Worker, nbtasks_cluster, noop, peak_mb, registrar, rss_mb
from metrics import descendants, growth, thin

GROWTH_TARGET_MB = 50.0
SAMPLE_S = 0.05  # a million units take about a second or less
PLAN = ["memory-million", "memory-waves"]
WORKERS: dict[str, Worker] = {}
worker = registrar(WORKERS)


class ProcessTree:
    """A process and everything below it, as found when made (an ipyparallel controller forks its
    schedulers at start, so its tree stays put while it runs); RSS summed over those still alive."""

    def __init__(self, root: int) -> None:
        import psutil

        parents = {p.pid: p.info["ppid"] for p in psutil.process_iter(["ppid"])}
        self.processes = [psutil.Process(pid) for pid in descendants(root, parents)]

    def rss_mb(self) -> float:
        import psutil

        total = 0
        for proc in self.processes:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total / 2**20


def controller_tree(cluster: Any) -> ProcessTree:
    """The controller of an nbtasks cluster and everything it forked."""
    from watch import controller_pid

    return ProcessTree(controller_pid(cluster.profile_dir, cluster.cluster_id))


def run_units(cluster: Any, n: int) -> Any:
    import nbtasks as nt

    return nt.ParallelTask(noop).submit(range(n), cluster=cluster, progress=False, cache=False)


class Sampler:
    """Reads (seconds, units done, client MB, controller MB) every ``SAMPLE_S`` in a thread."""

    def __init__(self, controller: ProcessTree, run: Any) -> None:
        self.controller, self.run = controller, run
        self.readings: list[tuple[float, float, float, float]] = []
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, name="bench-memory-sampler", daemon=True)
        self._thread.start()

    def read(self) -> None:
        done = self.run.counts()["done"]
        self.readings.append((time.perf_counter() - self._t0, done, rss_mb(), self.controller.rss_mb()))

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.read()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.read()


@worker("memory-million")
def memory_million(args: argparse.Namespace) -> Result:
    from nbtasks.store.recorder import Store

    with nbtasks_cluster() as cluster:
        controller = controller_tree(cluster)
        run_units(cluster, 1000).result()  # warm-up
        Store.at(None).flush()
        gc.collect()
        before = (rss_mb(), controller.rss_mb())
        t0 = time.perf_counter()
        run = run_units(cluster, args.million_units)
        sampler = Sampler(controller, run)
        out = run.result()
        wall = time.perf_counter() - t0
        sampler.stop()
        assert len(out) == args.million_units and out[-1] == args.million_units - 1
        held = (rss_mb(), controller.rss_mb())
        del out, run, sampler.run
        Store.at(None).flush(600)  # the run's records are written: what stays is what is kept
        gc.collect()
        after = (rss_mb(), controller.rss_mb())
        live = live_runs()
    readings = sampler.readings
    return {"units": args.million_units, "wall": wall, "before": before, "held": held, "after": after,
            "readings": readings, "live_runs": live, "peak_mb": peak_mb(),
            "client_growth": growth(before[0], [after[0]]),
            "controller_growth": growth(before[1], [r[3] for r in readings] + [held[1], after[1]]),
            "client_peak_growth": growth(before[0], [r[2] for r in readings] + [held[0], after[0]])}


@worker("memory-waves")
def memory_waves(args: argparse.Namespace) -> Result:
    client, controller_mb, live = [], [], []
    with nbtasks_cluster() as cluster:
        controller = controller_tree(cluster)
        run_units(cluster, 1000).result()  # warm-up
        gc.collect()
        before = (rss_mb(), controller.rss_mb())
        t0 = time.perf_counter()
        for _ in range(args.waves):
            out = run_units(cluster, args.units).result()
            assert len(out) == args.units
            del out
            client.append(rss_mb())
            controller_mb.append(controller.rss_mb())
            live.append(live_runs())  # diagnostic, after the reading: finished runs the client still holds
        wall = time.perf_counter() - t0
    return {"units": args.units, "waves": args.waves, "wall": wall, "before": before, "client": client,
            "controller": controller_mb, "live_runs": live, "peak_mb": peak_mb(),
            "client_growth": growth(before[0], client), "controller_growth": growth(before[1], controller_mb)}


def live_runs() -> int:
    """How many ``nbtasks.Run`` objects are still alive (after a full collection)."""
    from nbtasks.core.run import Run

    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, Run))


# -- the report -----------------------------------------------------------------------------------
def series(values: list[float]) -> str:
    return " ".join(f"{v:.0f}" for v in values)


def table(results: dict[str, Result], args: argparse.Namespace) -> list[str]:
    lines = ["### 4. Flat memory: client and controller RSS (MB) over many tiny units", ""]
    m, w = results["memory-million"], results["memory-waves"]
    if "error" in m:
        lines += [f"{args.million_units:,} units in one run: {m['error'].splitlines()[0]}", ""]
    else:
        points = thin(m["readings"], 8)
        speed = f"{m['wall']:.2f} s, {m['units'] / m['wall']:,.0f} units/s"
        lines += [f"**{m['units']:,} units in one run** ({speed}):", "",
                  "| reading | units done | client | controller |", "|---|---:|---:|---:|",
                  f"| before (cluster warm) | 0 | {m['before'][0]:.0f} | {m['before'][1]:.0f} |"]
        lines += [f"| at {t:.2f} s | {done:,.0f} | {c:.0f} | {k:.0f} |" for t, done, c, k in points]
        lines += [f"| result held | {m['units']:,} | {m['held'][0]:.0f} | {m['held'][1]:.0f} |",
                  f"| result dropped, records written | | {m['after'][0]:.0f} | {m['after'][1]:.0f} |", "",
                  f"Growth: client {m['client_growth']:+.0f} MB once the result is dropped "
                  f"({m['client_peak_growth']:+.0f} MB at its highest, result included); controller "
                  f"{m['controller_growth']:+.0f} MB at its highest. Diagnostic: `nbtasks.Run` objects alive "
                  f"after the drop (gc'd): {m['live_runs']}.", ""]
    if "error" in w:
        lines += [f"{args.waves} waves: {w['error'].splitlines()[0]}"]
    else:
        lines += [f"**{w['waves']} waves of {w['units']:,} units** ({w['wall']:.1f} s), after each wave, "
                  "its result dropped:", "",
                  f"- client: {w['before'][0]:.0f} before, then {series(w['client'])}; "
                  f"growth {w['client_growth']:+.0f} MB",
                  f"- controller: {w['before'][1]:.0f} before, then {series(w['controller'])}; "
                  f"growth {w['controller_growth']:+.0f} MB",
                  f"- diagnostic: `nbtasks.Run` objects alive after each wave (gc'd): "
                  f"{series(w['live_runs'])}"]
    return lines


def targets(results: dict[str, Result], args: argparse.Namespace) -> list[Target]:
    rows = []
    for name, what in (("memory-million", f"{args.million_units:,} units in one run"),
                       ("memory-waves", f"{args.waves} waves of {args.units:,}")):
        r = results[name]
        for side in ("client", "controller"):
            value = r.get(f"{side}_growth")
            rows.append((f"{side} RSS growth over {what} <= {GROWTH_TARGET_MB:g} MB", [name],
                         "error" if value is None else f"{value:+.0f} MB",
                         None if value is None else value <= GROWTH_TARGET_MB))
    return rows
