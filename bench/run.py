"""nbtasks beside its peers: joblib, multiprocessing, dask distributed, raw ipyparallel, a serial loop.

Run with ``make bench`` (or ``.venv/bin/python bench/run.py``). Everything is measured in one
run on one machine, and every measurement runs in its own fresh interpreter, so that its
client's peak memory (``ru_maxrss``) is its own and the ratios compare like with like.

    run.py ─┬─ tiny.py     1. 100,000 no-op units (pure overhead); 1b. what the run store costs
            ├─ cpu.py      2. busy-loop units, 40 x 50 ms, 400 x 5 ms, 4 x 500 ms: efficiency on 2 cores
            ├─ startup.py  3. cold start (a fresh `python -c`, round by round); 3b. round trip, warm
            ├─ memory.py   4. client and controller RSS over 1,000,000 units and 20 waves of 100,000
            ├─ data.py     5. big NumPy arrays (opt-in: --only big-arrays, or --all)
            └─ scale.py    6. many engines (opt-in: --only scale, or --all)
    common.py: the work units, readings and every peer's cluster; metrics.py: the arithmetic;
    leftovers.py: the bench's environment, and the check that nothing it started is left.

Every nbtasks run passes ``cache=False`` (the units run again rather than come from the run
store, which is the bench's own); cluster start-up is excluded outside section 3 (clusters are
started and warmed up before the clock). Short timings are the best of ``--repeats`` because the
machine is noisy. ``--strict`` makes a missed target an error (exit status 1).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import cpu
import data  # bench/data.py: the big-arrays measurement
import memory
import scale  # bench/scale.py: many engines
import startup
import tiny
from common import Result, Target, Worker
from leftovers import bench_environment, ipp_processes, reap_orphans
from metrics import interleave, parse_size

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RESULT_MARK = "@@BENCH-RESULT@@ "

WORKERS: dict[str, Worker] = {**tiny.WORKERS, **cpu.WORKERS, **startup.WORKERS, **memory.WORKERS,
                              **data.WORKERS, **scale.WORKERS}
# --only NAME: a section, or one measurement of it
GROUPS = {"tiny": tiny.PLAN, "store-overhead": tiny.STORE_PLAN, "cpu": cpu.PLAN, "cold-start": startup.COLD_PLAN,
          "round-trip": startup.RTT_PLAN, "memory": memory.PLAN, "big-arrays": data.PLAN, "scale": scale.PLAN}
PLAN = [name for plan in GROUPS.values() for name in plan]
OPT_IN = [*data.PLAN, *scale.PLAN]  # minutes each: not in the default run (--all, or --only them)
SECTIONS = [("1. Tiny units", tiny.PLAN, tiny.table),
            ("1b. What the run store costs", ["store-overhead"], tiny.store_table),
            ("1c. Reruns that find their units", ["store-rerun"], tiny.rerun_table),
            ("2. CPU-bound", cpu.PLAN, cpu.table),
            ("3. Cold start", startup.COLD_PLAN, startup.cold_table),
            ("3b. Round trip on a running cluster", startup.RTT_PLAN, startup.rtt_table),
            ("4. Flat memory", memory.PLAN, memory.table),
            ("5. Big arrays (`--only big-arrays` or `--all`)", data.PLAN, data.table),
            ("6. Many engines (`--only scale` or `--all`)", scale.PLAN, scale.table)]


# -- running the measurements ------------------------------------------------------------------------
def worker_command(name: str, args: argparse.Namespace) -> list[str]:
    config = {k: v for k, v in vars(args).items() if k not in ("worker", "config", "only")}
    return [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--config", json.dumps(config)]


def run_worker(name: str, args: argparse.Namespace, env: dict[str, str], round_no: int = 0) -> Result:
    """Run one measurement in a fresh interpreter; its last marked stdout line is the result."""
    if name in startup.COLD_PLAN:
        command = startup.cold_command(name, time.time(), RESULT_MARK)
        env = startup.cold_env(name, env, round_no)
    else:
        command = worker_command(name, args)
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


def summary(result: Result) -> str:
    """One progress line for a finished measurement."""
    if "error" in result:
        return f"ERROR {result['error']}"
    if "sizes" in result:
        return ", ".join(f"{size}: {', '.join(f'{t:.3f}' for t in r['times'])} s"
                         for size, r in result["sizes"].items())
    if "client_growth" in result:
        return f"RSS growth: client {result['client_growth']:+.1f} MB, controller {result['controller_growth']:+.1f} MB"
    medians = {k: v["median"] for k, v in result.items() if isinstance(v, dict) and "median" in v}
    if medians:
        return ", ".join(f"{k} median {v * 1000:.2f} ms" for k, v in medians.items())
    if "best" not in result:
        return "done"
    times = ", ".join(f"{t:.3f}" for t in result.get("times", [result["best"]]))
    peak = f", client peak {result['peak_mb']:.0f} MB" if "peak_mb" in result else ""
    return f"{times} s (best {result['best']:.3f} s){peak}"


def measure(plan: list[str], args: argparse.Namespace) -> tuple[dict[str, Result], list[str], dict[str, str]]:
    """Every measurement of ``plan``; cold starts round by round, one fresh process each."""
    results: dict[str, Result] = {name: {"error": "not run"} for name in PLAN}
    cold: dict[str, list[Result]] = {}
    orphans: list[str] = []
    steps = interleave(plan, startup.cold_rounds(args.repeats))
    with bench_environment() as (env, ipython_dir):
        print(environment_note(env) + "\n", flush=True)
        for i, name in enumerate(steps, 1):
            round_no = len(cold.get(name, [])) + 1
            shown = f"{name} (run {round_no})" if name in startup.COLD_PLAN else name
            print(f"[{i:2}/{len(steps)}] {shown} ...", end=" ", flush=True)
            try:
                result = run_worker(name, args, env, round_no)
            finally:  # nothing a measurement left behind may disturb the next one
                left = reap_orphans(ipython_dir)
                orphans += [f"{name}: {what}" for what in left]
            if name in startup.COLD_PLAN:
                cold.setdefault(name, []).append(result)
                results[name] = startup.merge_runs(cold[name])
            else:
                results[name] = result
            print(summary(result), flush=True)
    return results, orphans, env


# -- the report -------------------------------------------------------------------------------------------
def all_targets(results: dict[str, Result], args: argparse.Namespace) -> list[Target]:
    return [*startup.targets(results, args), *cpu.targets(results, args), *tiny.targets(results, args),
            *memory.targets(results, args)]


def verdict(results: dict[str, Result], needs: list[str], ok: bool | None) -> str:
    if all(results[n].get("error") == "not run" for n in needs):
        return "not run"
    return "ERROR" if ok is None else ("PASS" if ok else "FAIL")


def environment_note(env: dict[str, str]) -> str:
    """What the measurements' environment set, beside what this process inherited."""
    keys = ["IPYTHONDIR", "NBTASKS_STORE", "NBTASKS_PRESTART", "PYTHONUNBUFFERED"]
    inherited = sorted(k for k in os.environ if k.startswith("NBTASKS_") and k not in keys)
    return ("Environment of every measurement: " + ", ".join(f"`{k}={env[k]}`" for k in keys)
            + (f" (inherited: {', '.join(f'`{k}={os.environ[k]}`' for k in inherited)})" if inherited else "")
            + ". The nbtasks cold start runs without `NBTASKS_PRESTART`, as a user's would (and once more "
            "with `NBTASKS_PRESTART=0`), each run with a fresh `NBTASKS_STORE`.")


def render(results: dict[str, Result], args: argparse.Namespace, started: datetime.datetime,
           orphans: list[str], env: dict[str, str]) -> str:
    machine = (f"{platform.node()}, {os.cpu_count()} cores, {platform.machine()}, "
               f"Linux {platform.release()}, Python {platform.python_version()}")
    lines = [f"## nbtasks benchmark — {started:%Y-%m-%d %H:%M} UTC", "",
             f"Machine: {machine}. Versions: {versions()}.", "", environment_note(env), ""]
    skipped = []
    for title, names, table in SECTIONS:
        if all(results[n].get("error") == "not run" for n in names):
            skipped.append(title)
        else:
            lines += table(results, args) + [""]
    if skipped:
        lines += ["Not run this time: " + "; ".join(skipped) + ".", ""]
    lines += ["### Targets", "", "| target | measured | result |", "|---|---|---|"]
    for name, needs, measured, ok in all_targets(results, args):
        shown = verdict(results, needs, ok)
        if shown != "not run":
            lines.append(f"| {name} | {measured} | {shown} |")
    lines += ["", "Processes left behind by a measurement (terminated by pid): "
              + ("; ".join(orphans) if orphans else "none")]
    return "\n".join(lines) + "\n"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("nbtasks", "ipyparallel", "joblib", "distributed"):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} ?")
    return ", ".join(out)


# -- command line -------------------------------------------------------------------------------------------
def cpu_size(text: str) -> str:
    """A --cpu-sizes value, checked and written the way the targets name it (40x50)."""
    try:
        units, seconds = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return f"{units}x{seconds * 1000:g}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=list(GROUPS) + [n for n in PLAN if n not in GROUPS], metavar="NAME",
                   help="run only these sections or measurements: " + ", ".join(GROUPS)
                   + ", or one measurement of them (e.g. cpu-dask)")
    p.add_argument("--all", action="store_true", help="also the opt-in sections (big-arrays, scale)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed runs per peer, fresh processes per cold-start peer; the best is reported")
    p.add_argument("--units", type=int, default=100_000, help="tiny no-op units per run, and per memory wave")
    p.add_argument("--raw-default-units", type=int, default=5_000,
                   help="units for raw ipyparallel with chunksize=1 (slow; its rate is extrapolated)")
    p.add_argument("--cpu-sizes", nargs="+", type=cpu_size, default=list(cpu.DEFAULT_SIZES),
                   metavar="UNITSxMS", help="CPU-bound sizes (default: 40x50 400x5 4x500)")
    p.add_argument("--round-trips", type=int, default=200, help="timed round trips per peer (the median counts)")
    p.add_argument("--million-units", type=int, default=1_000_000, help="units of the one long run, memory")
    p.add_argument("--waves", type=int, default=20, help="waves of --units units, memory")
    data.add_arguments(p)
    p.add_argument("--worker-timeout", type=float, default=300.0)
    p.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("repeats", "units", "raw_default_units", "round_trips", "million_units", "waves"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def plan_of(args: argparse.Namespace) -> list[str]:
    if args.only:
        return [name for wanted in args.only for name in GROUPS.get(wanted, [wanted])]
    return [name for name in PLAN if args.all or name not in OPT_IN]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        config = argparse.Namespace(**json.loads(args.config))
        print(RESULT_MARK + json.dumps(WORKERS[args.worker](config)), flush=True)
        return 0
    started = datetime.datetime.now(datetime.timezone.utc)
    plan = plan_of(args)
    t0 = time.perf_counter()
    results, orphans, env = measure(plan, args)
    print(f"\nbench took {time.perf_counter() - t0:.0f} s\n")
    report = render(results, args, started, orphans, env)
    print(report)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "latest.md").write_text(report)
    print(f"written to {RESULTS_DIR / 'latest.md'}")
    others = ipp_processes()
    if others:
        print(f"note: {len(others)} ipyparallel process(es) of other sessions are running "
              f"(not started by this bench): pids {[p.pid for p in others]}")
    crashed = [name for name in plan if "error" in results[name]]
    missed = [name for name, _, _, ok in all_targets(results, args) if ok is False]
    if args.strict and missed:
        print("targets missed: " + "; ".join(missed))
    return 1 if crashed or orphans or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
