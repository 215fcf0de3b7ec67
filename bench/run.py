"""nbtasks against raw ipyparallel, joblib, multiprocessing and a serial loop.

Run with ``make bench`` (or ``.venv/bin/python bench/run.py``). Everything is
measured in one run on one machine, and every peer runs in its own fresh
subprocess so that its client's peak memory (``ru_maxrss``) is its own.

What is measured, and why:

1. Tiny units -- 100,000 no-op units. This is pure scheduling overhead: how
   many units per second can the client push through two engines/workers, and
   how much memory does the *client* need to do it. nbtasks batches tiny units
   by itself; raw ipyparallel is shown with its default (one unit per message,
   slow and memory hungry, so it is measured on fewer units and its rate is
   extrapolated) and with a hand-tuned ``chunksize=1000``; joblib uses loky with
   automatic batching; the serial loop is the floor nobody can beat on overhead.
2. CPU-bound -- 40 units each spinning ~50 ms (busy loop, not sleep). Parallel
   efficiency = serial_time / (2 * wall_time) on 2 workers: how much of two
   cores the framework actually delivers to real work.
3. Cold start -- a fresh process: ``import nbtasks`` and the first
   ``square.submit(3).result()`` on the lazily started default cluster, against
   raw ``ipp.Cluster(n=2)`` with default settings + the first ``apply`` result.
   This is what a notebook user waits for before seeing anything happen.
4. Memory flatness -- 5 waves of 100,000 no-op units in one nbtasks client; the
   client's RSS after each wave must not keep growing (no per-run leak).

Every nbtasks run here passes ``cache=False``: the same units run again, not the
run store's copies of them (which would return at once); they are recorded in a
store of the bench's own. Cluster start-up is excluded from 1 and 2 (clusters are
started, and a small warm-up run is done, before the clock starts). Short timings are the best of
``--repeats`` runs because the machine is noisy. All cluster files go to a
temporary ``IPYTHONDIR``; every cluster is stopped, and any engine/controller
left behind under that directory is reported and terminated.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import data  # bench/data.py: the big-arrays measurement
import scale  # bench/scale.py: many engines

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RESULT_MARK = "@@BENCH-RESULT@@ "
ENGINES = 2

# targets (see bench/README.md)
CPU_EFFICIENCY_TARGET = 0.95
COLD_START_TARGET_S = 2.0
MEMORY_FLAT_TOLERANCE = 0.10
STORE_OVERHEAD_TARGET = 0.10

Result = dict[str, Any]


# -- the work (module level, so every peer can ship it to its workers) ----------------------
def noop(x: Any) -> Any:
    return x


def spin(seconds: float) -> float:
    """Keep a core busy for ``seconds`` of wall time."""
    import time  # engines of raw ipyparallel do not see this module's globals

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return seconds


# -- measuring inside a worker ----------------------------------------------------------------
def peak_mb() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def wall_times(repeats: int, fn: Callable[[], Any], between: Callable[[], None] | None = None) -> list[float]:
    """Wall times of ``repeats`` calls of ``fn``."""
    times = []
    for i in range(repeats):
        if i and between is not None:
            between()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def timing(times: list[float], **extra: Any) -> Result:
    return {"times": times, "best": min(times), "median": statistics.median(times), **extra}


@contextlib.contextmanager
def nbtasks_cluster() -> Iterator[Any]:
    import nbtasks as nt

    cluster = nt.Cluster(n=ENGINES).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def ipp_cluster(n: int = ENGINES) -> Iterator[Any]:
    """A raw ipyparallel cluster started with the same fast controller settings nbtasks uses,
    so neither side pays for a slow start-up (start-up is measured separately, in cold start)."""
    import logging

    import ipyparallel as ipp
    from traitlets.config import Config

    from nbtasks.cluster.launchers import LOCAL_CONTROLLER

    config = Config()
    config.LocalEngineSetLauncher.delay = 0
    cluster = ipp.Cluster(n=n, delay=0, controller_args=list(LOCAL_CONTROLLER), config=config,
                          log_level=logging.WARNING)
    client = None
    try:
        client = cluster.start_and_connect_sync()
        client.wait_for_engines(n, timeout=60)
        yield client
    finally:
        if client is not None:
            client.close()
        cluster.stop_cluster_sync()


def purge(client: Any) -> None:
    """Forget finished results between repeats, as a long-lived ipyparallel user must."""
    client.purge_local_results("all")
    client.history.clear()


# -- the workers: each runs in its own subprocess and returns a dict --------------------------
WORKERS: dict[str, Callable[[argparse.Namespace], Result]] = {}


def worker(name: str) -> Callable[[Callable[[argparse.Namespace], Result]], Callable[[argparse.Namespace], Result]]:
    def register(fn: Callable[[argparse.Namespace], Result]) -> Callable[[argparse.Namespace], Result]:
        WORKERS[name] = fn
        return fn
    return register


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
    run goes); that writing time is reported too."""
    from nbtasks.store.recorder import Store

    store = Store.at(None)
    with nbtasks_cluster() as cluster:
        tiny_run(cluster, 1000)
        tiny_run(cluster, 1000, False)
        recorded, unrecorded, writing = [], [], []
        for i in range(2 * args.repeats):
            for kind in (("store", "none") if i % 2 else ("none", "store")):
                t0 = time.perf_counter()
                tiny_run(cluster, args.units, None if kind == "store" else False)
                t1 = time.perf_counter()
                store.flush()
                (recorded if kind == "store" else unrecorded).append(t1 - t0)
                if kind == "store":
                    writing.append(time.perf_counter() - t1)
    return {"units": args.units, "best": min(recorded), "times": recorded, "nostore_best": min(unrecorded),
            "nostore_times": unrecorded, "writing_median": statistics.median(writing), "peak_mb": peak_mb()}


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


def cpu_inputs(args: argparse.Namespace) -> list[float]:
    return [args.spin_ms / 1000] * args.cpu_units


@worker("cpu-serial")
def cpu_serial(args: argparse.Namespace) -> Result:
    units = cpu_inputs(args)
    times = wall_times(args.repeats, lambda: [spin(s) for s in units])
    return timing(times, peak_mb=peak_mb())


@worker("cpu-nbtasks")
def cpu_nbtasks(args: argparse.Namespace) -> Result:
    import nbtasks as nt

    units = cpu_inputs(args)
    with nbtasks_cluster() as cluster:
        def go(inputs: list[float]) -> None:
            nt.ParallelTask(spin).submit(inputs, cluster=cluster, progress=False, cache=False).result()
        go([0.001] * 4)  # warm-up
        times = wall_times(args.repeats, lambda: go(units))
    return timing(times, peak_mb=peak_mb())


@worker("cpu-ipp-default")
def cpu_ipp(args: argparse.Namespace) -> Result:
    units = cpu_inputs(args)
    with ipp_cluster() as client:
        view = client.load_balanced_view()
        view.map(spin, [0.001] * 4, block=True)  # warm-up
        times = wall_times(args.repeats, lambda: view.map(spin, units, block=True), between=lambda: purge(client))
    return timing(times, peak_mb=peak_mb())


@worker("cpu-joblib")
def cpu_joblib(args: argparse.Namespace) -> Result:
    from joblib import Parallel, delayed

    units = cpu_inputs(args)
    Parallel(n_jobs=ENGINES)(delayed(spin)(0.001) for _ in range(4))  # warm-up
    times = wall_times(args.repeats, lambda: Parallel(n_jobs=ENGINES)(delayed(spin)(s) for s in units))
    return timing(times, peak_mb=peak_mb())


@worker("cpu-multiprocessing")
def cpu_multiprocessing(args: argparse.Namespace) -> Result:
    import multiprocessing

    units = cpu_inputs(args)
    with multiprocessing.Pool(ENGINES) as pool:
        pool.map(spin, [0.001] * 4)  # warm-up
        times = wall_times(args.repeats, lambda: pool.map(spin, units))
    return timing(times, peak_mb=peak_mb())


@worker("cold-nbtasks")
def cold_nbtasks(args: argparse.Namespace) -> Result:
    t0 = time.perf_counter()
    import nbtasks as nt

    @nt.task
    def square(x: int) -> int:
        return x * x

    assert square.submit(3, cache=False).result() == 9
    elapsed = time.perf_counter() - t0
    # the default cluster stops at interpreter exit (atexit), after we report
    return {"best": elapsed, "since_launch": time.time() - args.launched, "peak_mb": peak_mb()}


@worker("cold-ipp-default")
def cold_ipp(args: argparse.Namespace) -> Result:
    t0 = time.perf_counter()
    import ipyparallel as ipp

    def square(x: int) -> int:
        return x * x

    cluster = ipp.Cluster(n=ENGINES)
    try:
        client = cluster.start_and_connect_sync()
        assert client.load_balanced_view().apply_sync(square, 3) == 9
        elapsed = time.perf_counter() - t0
        since_launch = time.time() - args.launched
        client.close()
    finally:
        cluster.stop_cluster_sync()
    return {"best": elapsed, "since_launch": since_launch, "peak_mb": peak_mb()}


@worker("memory-nbtasks")
def memory_nbtasks(args: argparse.Namespace) -> Result:
    import nbtasks as nt

    rss, live = [], []
    with nbtasks_cluster() as cluster:
        nt.ParallelTask(noop).submit(range(1000), cluster=cluster, progress=False, cache=False).result()  # warm-up
        before = rss_mb()
        for _ in range(args.waves):
            out = nt.ParallelTask(noop).submit(range(args.units), cluster=cluster, progress=False,
                                              cache=False).result()
            assert len(out) == args.units
            del out
            rss.append(rss_mb())
            live.append(live_runs())  # diagnostic: finished runs the client still holds
    return {"before_mb": before, "rss_mb": rss, "live_runs": live, "peak_mb": peak_mb()}


def live_runs() -> int:
    """How many ``nbtasks.Run`` objects are still alive (after a full collection)."""
    import gc

    from nbtasks.core.run import Run

    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, Run))


WORKERS.update(data.WORKERS)
WORKERS.update(scale.WORKERS)


# -- the orchestrator ---------------------------------------------------------------------------
PLAN = [
    "tiny-serial", "tiny-nbtasks", "store-overhead", "tiny-joblib", "tiny-ipp-chunk1000", "tiny-ipp-default",
    "cpu-serial", "cpu-nbtasks", "cpu-ipp-default", "cpu-joblib", "cpu-multiprocessing",
    "cold-nbtasks", "cold-ipp-default",
    "memory-nbtasks",
    *data.PLAN,
    *scale.PLAN,
]
GROUPS = {"big-arrays": data.PLAN, "scale": scale.PLAN}  # names for --only that stand for several measurements


def worker_command(name: str, args: argparse.Namespace) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", name,
            "--units", str(args.units), "--raw-default-units", str(args.raw_default_units),
            "--repeats", str(args.repeats), "--cpu-units", str(args.cpu_units),
            "--spin-ms", str(args.spin_ms), "--waves", str(args.waves), *data.worker_arguments(args)]


def run_worker(name: str, args: argparse.Namespace, env: dict[str, str]) -> Result:
    """Run one measurement in a fresh interpreter; its last marked stdout line is the result."""
    command = worker_command(name, args) + ["--launched", repr(time.time())]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.worker_timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.worker_timeout:g}s"}
    wall = time.perf_counter() - t0
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK):])
            result["process_wall"] = wall
            return result
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
    return {"error": f"exit code {proc.returncode}:\n{tail}"}


def ipp_processes(ipython_dir: str | None) -> list[Any]:
    """ipyparallel engines/controllers/nannies; with ``ipython_dir``, only those started under it."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if not any(key in cmd for key in ("ipengine", "ipcontroller", "ipyparallel.engine", "ipyparallel.controller")):
            continue
        if ipython_dir is not None:
            try:
                if proc.environ().get("IPYTHONDIR") != ipython_dir:
                    continue
            except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        found.append(proc)
    return found


def reap_orphans(ipython_dir: str, grace: float = 10.0) -> list[int]:
    """Wait for our clusters' processes to exit; terminate (by pid) any still there after ``grace``."""
    import psutil

    deadline = time.monotonic() + grace
    left = ipp_processes(ipython_dir)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = ipp_processes(ipython_dir)
    pids = [p.pid for p in left]
    for proc in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(left, timeout=5)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    return pids


@contextlib.contextmanager
def bench_environment() -> Iterator[tuple[dict[str, str], str]]:
    ipython_dir = tempfile.mkdtemp(prefix="nbtasks-bench-ipython-")
    env = dict(os.environ, IPYTHONDIR=ipython_dir, PYTHONUNBUFFERED="1",
               NBTASKS_STORE=os.path.join(ipython_dir, "runs.db"))
    try:
        yield env, ipython_dir
    finally:
        shutil.rmtree(ipython_dir, ignore_errors=True)


def summary(result: Result) -> str:
    """One progress line for a finished measurement."""
    if "error" in result:
        return f"ERROR {result['error']}"
    if "rss_mb" in result:
        return f"RSS after each wave (MB) {[round(x, 1) for x in result['rss_mb']]}"
    times = ", ".join(f"{t:.3f}" for t in result.get("times", [result["best"]]))
    return f"{times} s (best {result['best']:.3f} s), client peak {result['peak_mb']:.0f} MB"


# -- the report -----------------------------------------------------------------------------------
def fmt(value: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "error" if value is None else f"{value:{spec}}{suffix}"


def ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "n/a"
    return f"{ours / theirs:.2f}x"


def rate(result: Result) -> float | None:
    return None if "error" in result else result["units"] / result["best"]


def tiny_table(results: dict[str, Result], args: argparse.Namespace) -> list[str]:
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
        if "error" in r:
            lines.append(f"| {label} | error | | | | | |")
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
    lines = [f"### 1b. What the run store costs: {args.units:,} no-op units, recorded or not", ""]
    if "error" in r:
        return lines + ["error"]
    return lines + [
        "| runs | best (s) | median (s) |", "|---|---:|---:|",
        f"| recorded in the store (default) | {r['best']:.3f} | {statistics.median(r['times']):.3f} |",
        f"| `store=False` | {r['nostore_best']:.3f} | {statistics.median(r['nostore_times']):.3f} |",
        "",
        f"Alternated in one process on one cluster ({len(r['times'])} runs each). Recorded runs are "
        f"{store_slowdown(r) * 100:+.1f}% slower (best against best); writing their records took a "
        f"median {r['writing_median'] * 1000:.0f} ms after each run, while no run was going."]


def efficiency(serial: Result, result: Result) -> float | None:
    if "error" in serial or "error" in result:
        return None
    return serial["best"] / (ENGINES * result["best"])


def cpu_table(results: dict[str, Result], args: argparse.Namespace) -> list[str]:
    serial = results["cpu-serial"]
    peers = [("nbtasks", "cpu-nbtasks"), ("ipyparallel LoadBalancedView.map, default", "cpu-ipp-default"),
             ("joblib, loky, n_jobs=2", "cpu-joblib"), ("multiprocessing.Pool(2).map", "cpu-multiprocessing")]
    ours = efficiency(serial, results["cpu-nbtasks"])
    lines = [f"### 2. CPU-bound: {args.cpu_units} units x {args.spin_ms:g} ms busy loop, {ENGINES} workers",
             "",
             f"Serial time: {fmt(serial.get('best'), '.3f', ' s')}. "
             f"Efficiency = serial / ({ENGINES} x wall).",
             "",
             "| peer | wall (s) | efficiency | client peak MB | nbtasks efficiency vs peer |",
             "|---|---:|---:|---:|---:|"]
    for label, key in peers:
        r = results[key]
        eff = efficiency(serial, r)
        vs = "—" if key == "cpu-nbtasks" else ratio(ours, eff)
        lines.append(f"| {label} | {fmt(r.get('best'), '.3f')} | {fmt(None if eff is None else eff * 100, '.1f', '%')} "
                     f"| {fmt(r.get('peak_mb'))} | {vs} |")
    return lines


def cold_table(results: dict[str, Result]) -> list[str]:
    ours = results["cold-nbtasks"]
    lines = ["### 3. Cold start: fresh process to first result",
             "",
             "| peer | import + start + first result (s) | incl. interpreter launch (s) | nbtasks time vs peer |",
             "|---|---:|---:|---:|"]
    for label, key in [("nbtasks: `import nbtasks; square.submit(3).result()` (default cluster)", "cold-nbtasks"),
                       ("ipyparallel: `ipp.Cluster(n=2).start_and_connect_sync()` + apply, defaults",
                        "cold-ipp-default")]:
        r = results[key]
        vs = "—" if key == "cold-nbtasks" else ratio(ours.get("best"), r.get("best"))
        lines.append(f"| {label} | {fmt(r.get('best'), '.2f')} | {fmt(r.get('since_launch'), '.2f')} | {vs} |")
    return lines


def memory_flat(result: Result) -> bool | None:
    if "error" in result or len(result["rss_mb"]) < 2:
        return None
    second, last = result["rss_mb"][1], result["rss_mb"][-1]
    return last <= second * (1 + MEMORY_FLAT_TOLERANCE)


def memory_table(results: dict[str, Result], args: argparse.Namespace) -> list[str]:
    r = results["memory-nbtasks"]
    lines = [f"### 4. nbtasks client memory over {args.waves} waves of {args.units:,} no-op units", ""]
    if "error" in r:
        return lines + ["error"]
    waves = ", ".join(f"{x:.1f}" for x in r["rss_mb"])
    return lines + [f"RSS before the first wave: {r['before_mb']:.1f} MB; after each wave (MB): [{waves}]; "
                    f"peak {r['peak_mb']:.1f} MB.",
                    "",
                    f"Diagnostic: `nbtasks.Run` objects still alive after each wave (gc'd; the finished "
                    f"runs are no longer referenced by the bench): {r['live_runs']}."]


def verdict(ok: bool | None) -> str:
    return "ERROR" if ok is None else ("PASS" if ok else "FAIL")


def targets(results: dict[str, Result]) -> list[tuple[str, str, bool | None]]:
    ours, joblib = rate(results["tiny-nbtasks"]), rate(results["tiny-joblib"])
    eff = efficiency(results["cpu-serial"], results["cpu-nbtasks"])
    cold = results["cold-nbtasks"].get("best")
    mem = results["memory-nbtasks"]
    overhead = store_slowdown(results["store-overhead"])
    rows = [
        (f"run store slows tiny units by < {STORE_OVERHEAD_TARGET:.0%}",
         "error" if overhead is None else
         f"{overhead * 100:+.1f}% (best of {len(results['store-overhead']['times'])} alternated runs each)",
         None if overhead is None else overhead < STORE_OVERHEAD_TARGET),
        ("tiny-unit throughput >= joblib's (same run)",
         f"{fmt(ours)} vs {fmt(joblib)} units/s",
         None if ours is None or joblib is None else ours >= joblib),
        (f"CPU-bound efficiency >= {CPU_EFFICIENCY_TARGET:.0%}",
         fmt(None if eff is None else eff * 100, ".1f", "%"),
         None if eff is None else eff >= CPU_EFFICIENCY_TARGET),
        (f"cold start, first result < {COLD_START_TARGET_S:g} s", fmt(cold, ".2f", " s"),
         None if cold is None else cold < COLD_START_TARGET_S),
        (f"memory flat: last wave RSS <= second wave's + {MEMORY_FLAT_TOLERANCE:.0%}",
         "error" if "error" in mem else f"{mem['rss_mb'][-1]:.1f} vs {mem['rss_mb'][1]:.1f} MB",
         memory_flat(mem)),
    ]
    return rows


def render(results: dict[str, Result], args: argparse.Namespace, started: datetime.datetime,
           orphans: list[int]) -> str:
    machine = (f"{platform.node()}, {os.cpu_count()} cores, {platform.machine()}, "
               f"Linux {platform.release()}, Python {platform.python_version()}")
    lines = [f"## nbtasks benchmark — {started:%Y-%m-%d %H:%M} UTC", "", f"Machine: {machine}. "
             f"Versions: {versions()}.", ""]
    lines += tiny_table(results, args) + [""]
    lines += store_table(results, args) + [""]
    lines += cpu_table(results, args) + [""]
    lines += cold_table(results) + [""]
    lines += memory_table(results, args) + [""]
    lines += data.table(results, args) + [""]
    lines += scale.table(results, args) + [""]
    lines += ["### Targets", "", "| target | measured | result |", "|---|---|---|"]
    lines += [f"| {name} | {measured} | {verdict(ok)} |" for name, measured, ok in targets(results)]
    lines += ["", "Orphaned ipyparallel processes after the run: "
              + (f"{len(orphans)} (terminated: pids {orphans})" if orphans else "none")]
    return "\n".join(lines) + "\n"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("nbtasks", "ipyparallel", "joblib"):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} ?")
    return ", ".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=100_000, help="tiny no-op units per run (default 100,000)")
    p.add_argument("--raw-default-units", type=int, default=10_000,
                   help="units for raw ipyparallel with chunksize=1 (slow; its rate is extrapolated)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per peer; the best is reported")
    p.add_argument("--cpu-units", type=int, default=40)
    p.add_argument("--spin-ms", type=float, default=50.0)
    p.add_argument("--waves", type=int, default=5, help="100k-unit waves in the memory test")
    data.add_arguments(p)
    p.add_argument("--only", nargs="*", choices=PLAN + list(GROUPS),
                   help="run only these measurements (for debugging); big-arrays: all of section 5, scale: section 6")
    p.add_argument("--worker-timeout", type=float, default=300.0)
    p.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--launched", type=float, default=0.0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run_as_worker(args: argparse.Namespace) -> None:
    result = WORKERS[args.worker](args)
    print(RESULT_MARK + json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_as_worker(args)
        return 0
    started = datetime.datetime.now(datetime.timezone.utc)
    plan = [name for wanted in args.only for name in GROUPS.get(wanted, [wanted])] if args.only else PLAN
    results: dict[str, Result] = {name: {"error": "not run (--only)"} for name in PLAN}
    orphans: list[int] = []
    t0 = time.perf_counter()
    with bench_environment() as (env, ipython_dir):
        for i, name in enumerate(plan, 1):
            print(f"[{i:2}/{len(plan)}] {name} ...", end=" ", flush=True)
            try:
                results[name] = run_worker(name, args, env)
            finally:  # nothing a measurement left behind may disturb the next one
                orphans += reap_orphans(ipython_dir)
            print(summary(results[name]), flush=True)
    print(f"\nbench took {time.perf_counter() - t0:.0f} s\n")
    report = render(results, args, started, orphans)
    print(report)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "latest.md").write_text(report)
    print(f"written to {RESULTS_DIR / 'latest.md'}")
    others = ipp_processes(None)
    if others:
        print(f"note: {len(others)} ipyparallel process(es) of other users/sessions are running "
              f"(not started by this bench): pids {[p.pid for p in others]}")
    crashed = [name for name in plan if "error" in results[name]]
    missed = [name for name, _, ok in targets(results) if ok is False]
    return 1 if crashed or orphans or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
