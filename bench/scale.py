"""Many engines on one machine: how close nbtasks gets to the ideal, and what it costs the controller.

    run.py --only scale (or scale.py)             one fresh process per point
      ├─ point scale-32 ── nt.Cluster(n=32) ── 32 × 100 units of time.sleep(0.01), nt.ParallelTask
      │     │                              └── raw ipyparallel on the same 32 engines (a second client)
      │     └─ watched from outside: the controller's processes (psutil CPU), its IOPub stream
      │        (a SUB socket of our own counts every message by type), the hub's own count of
      │        requests (``queue_status``), the engines' CPU, the controller's log
      └─ point scale-8  ── the same with 8 engines, so the trend shows

A unit sleeps, so the engines' CPU is only what running units costs them (messages, pickling),
and on 2 cores the client, the controller and that overhead are what limits throughput; the
ideal is engines ÷ unit time (3,200 units/s for 32 engines of 10 ms).

How messages are counted (the controller's message rate): each request the controller routes
(a ``map`` chunk of ipyparallel; nbtasks' chunks go down its lanes, beside the controller, which
routes only each lane's own apply) is two messages through it (request in,
reply out) and is counted by the hub itself (``queue_status``: requests completed per engine);
every IOPub message (``status`` busy/idle per request, ``data_message`` for units nbtasks streams
back, ``stream`` output) passes the IOPub relay and is deserialized by the hub, and is counted
by type on a SUB socket of our own. Heartbeats go to a separate process and are not counted as
messages; the controller's CPU while idle shows their cost. CPU is measured with psutil: the
hub (the controller's main process), its child processes (schedulers, relays, heart monitor),
the engines (with their nannies) and this client (without the counting thread).

Run: ``.venv/bin/python bench/scale.py [--engines 32 8]`` on its own, or as part of
``make bench`` / ``bench/run.py --only scale``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from watch import IopubCounter, Watch, client_file, iopub_url, messages

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"  # git-ignored
RESULT_MARK = "@@SCALE-RESULT@@ "
UNIT_S = 0.01  # each unit sleeps this long
SHARE_BYTES = 4 << 20  # the shared value sent to every engine
IDLE_S = 4.0  # seconds the idle controller is watched (heartbeats only; psutil counts 10 ms ticks)
ENGINES = (32, 8)  # one point per engine count; the first also runs the raw ipyparallel peers
IPP_CHUNKSIZES = (1, 10)  # raw ipyparallel map: its default, and 100 ms of work per message
UNITS_PER_ENGINE = 100
REPEATS = 3  # timed nbtasks runs per point; the best is reported

Result = dict[str, Any]


# -- the work (this module is not installed: nbtasks sends it to engines by value) -------------
def sleep_unit(x: int) -> int:
    import time  # raw ipyparallel ships the function without this module's globals

    time.sleep(0.01)
    return x


def hold(blob: bytes) -> int:
    """What raw ipyparallel runs to broadcast a value (nbtasks' share keeps it, too)."""
    globals()["_scale_held"] = blob
    return len(blob)


# -- one point: a cluster of N engines in this process ---------------------------------------------
def stored(run_id: str) -> Result:
    """What the run store holds of a run: rows of finished chunk parts, and their result blobs."""
    import sqlite3

    db = sqlite3.connect(f"file:{os.environ['NBTASKS_STORE']}?mode=ro", uri=True)
    try:
        rows, blobs, units = db.execute("SELECT COUNT(*), COUNT(DISTINCT blob), SUM(done) FROM parts WHERE run = ?",
                                        (run_id,)).fetchone()
        size, = db.execute("SELECT COALESCE(SUM(size), 0) FROM blobs WHERE id IN "
                           "(SELECT blob FROM parts WHERE run = ?)", (run_id,)).fetchone()
    finally:
        db.close()
    return {"rows": rows, "blobs": blobs, "units": units, "blob_bytes": size}


def measured_sleep() -> float:
    """What ``time.sleep(0.01)`` really takes here (the ideal uses the nominal 10 ms)."""
    t0 = time.perf_counter()
    for _ in range(50):
        time.sleep(UNIT_S)
    return (time.perf_counter() - t0) / 50


def run_point(engines: int, units_per_engine: int, repeats: int, peers: bool, idle_s: float = IDLE_S) -> Result:
    """One cluster of ``engines``; with ``peers``, raw ipyparallel on the same engines too."""
    import resource

    import ipyparallel as ipp

    import nbtasks as nt
    from nbtasks.cluster.checks import check_engines
    from nbtasks.store.recorder import Store


    units = engines * units_per_engine
    out: Result = {"engines": engines, "units": units, "sleep_s": measured_sleep(), "runs": [], "peers": {}}
    t0 = time.perf_counter()
    cluster = nt.Cluster(n=engines, engine_timeout=240.0)
    try:
        cluster.start()
        out.update(start_s=time.perf_counter() - t0, cluster_id=cluster.cluster_id)
        connection = client_file(cluster.profile_dir, cluster.cluster_id)
        peer = ipp.Client(connection)  # queue_status, raw ipyparallel, the check on its own
        iopub = IopubCounter(iopub_url(connection))
        try:
            watch = Watch(peer, iopub, cluster.cluster_id, os.path.join(cluster.profile_dir, "log"))
            out["start_cpu"] = watch.spent
            out["idle"] = {}
            with watch.over(out["idle"]):
                time.sleep(idle_s)
            t1 = time.perf_counter()
            check_engines(peer, list(peer.ids))
            out["check_s"] = time.perf_counter() - t1

            def go(n: int) -> Any:
                return nt.ParallelTask(sleep_unit).submit(range(n), cluster=cluster, progress=False, cache=False)

            go(2 * engines).result()  # warm-up: every engine has the task and has run a chunk
            for _ in range(repeats):
                sample: Result = {}
                with watch.over(sample):
                    t1 = time.perf_counter()
                    run = go(units)
                    result = run.result()
                    sample["wall"] = time.perf_counter() - t1
                    Store.at(None).flush()  # its records are written (and counted) within the sample
                assert result == list(range(units)), "wrong result"
                sample.update(chunks=len(run.chunks_since(0)), stored=stored(run.id))
                out["runs"].append(sample)
            out["share"] = timed(watch, lambda: cluster.share(scale_blob=b"x" * SHARE_BYTES))
            if peers:
                out["peers"] = raw_peers(peer, watch, units, repeats)
        finally:
            iopub.close()
            peer.close()
    finally:
        cluster.stop()
    walls = [r["wall"] for r in out["runs"]]  # what run.py's progress line shows
    out.update(times=walls, best=min(walls), peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def raw_peers(peer: Any, watch: Watch, units: int, repeats: int) -> Result:
    """Raw ipyparallel on the same engines: LoadBalancedView.map, and broadcasting a value."""
    found: Result = {}
    view = peer.load_balanced_view()
    view.map(sleep_unit, range(len(peer.ids)), block=True)  # warm-up
    for chunksize in IPP_CHUNKSIZES:
        samples = []
        for _ in range(1 if chunksize == 1 else repeats):
            sample: Result = {}
            with watch.over(sample):
                assert view.map(sleep_unit, range(units), chunksize=chunksize, block=True) == list(range(units))
            samples.append(sample)
            peer.purge_local_results("all")
        found[f"ipp-map-{chunksize}"] = min(samples, key=lambda s: s["wall"])
    blob = b"x" * SHARE_BYTES
    for name, broadcast in (("ipp-direct", peer.direct_view(targets=list(peer.ids))),
                            ("ipp-broadcast", peer.broadcast_view(targets=list(peer.ids), is_coalescing=True))):
        found[name] = timed(watch, lambda view=broadcast: view.apply_sync(hold, blob))
    return found


def timed(watch: Watch, fn: Callable[[], Any]) -> Result:
    """A watched call; a failure is reported in its place (the point's other numbers stand)."""
    sample: Result = {}
    try:
        with watch.over(sample):
            fn()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"}
    return sample


# -- orchestration: each point in a fresh process, with the orphan check ----------------------------
def point_command(engines: int, peers: bool, args: argparse.Namespace) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--point", str(engines), *(["--peers"] if peers else []),
            "--units-per-engine", str(args.units_per_engine), "--repeats", str(args.repeats)]


def measure(args: argparse.Namespace | None = None, env: dict[str, str] | None = None) -> Result:
    """Every point in its own process (``env`` must set ``IPYTHONDIR`` to a directory of the
    bench's own); processes a point leaves behind are reported and ended."""
    from leftovers import reap_orphans

    args = parse_args([]) if args is None else args
    env = dict(os.environ) if env is None else env
    points: Result = {}
    orphans: list[str] = []
    for i, engines in enumerate(args.engines):
        name = f"{engines} engines"
        try:
            proc = subprocess.run(point_command(engines, i == 0, args), env=env, capture_output=True, text=True,
                                  timeout=args.point_timeout)
            points[name] = last_result(proc)
        except subprocess.TimeoutExpired:
            points[name] = {"error": f"timed out after {args.point_timeout:g}s"}
        finally:
            orphans += reap_orphans(env["IPYTHONDIR"])
    return {"points": points, "orphans": orphans}


def last_result(proc: subprocess.CompletedProcess) -> Result:
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
    return {"error": f"exit code {proc.returncode}:\n{tail}"}


# -- the report ------------------------------------------------------------------------------------
def pct(seconds: float, span: float) -> str:
    return f"{100 * seconds / span:.0f}%" if span else "n/a"


def peers_of(point: Result) -> list[tuple[str, Result]]:
    """(label, sample) of every throughput measurement of a point: nbtasks' best run, raw ipyparallel."""
    runs = point["runs"]
    best = min(runs, key=lambda s: s["wall"])
    found = [(f"nbtasks `ParallelTask` (best of {len(runs)}: {best['chunks']} chunks)", best)]
    for chunksize in IPP_CHUNKSIZES:
        sample = point["peers"].get(f"ipp-map-{chunksize}")
        if sample:
            found.append((f"ipyparallel `LoadBalancedView.map`, chunksize={chunksize}", sample))
    return found


def throughput_rows(point: Result) -> list[str]:
    e, units = point["engines"], point["units"]
    ideal = e / UNIT_S
    rows = []
    for label, s in peers_of(point):
        rate = units / s["wall"]
        rows.append(f"| {label} | {e} | {units:,} | {s['wall']:.2f} | {rate:,.0f} | {100 * rate / ideal:.0f}% |")
    return rows


def message_rows(point: Result) -> list[str]:
    rows = []
    for label, s in peers_of(point):
        iopub, cpu, span = s["iopub"], s["cpu"], s["span"]
        status, data = iopub.get("status", 0), iopub.get("data_message", 0)
        other = sum(iopub.values()) - status - data
        total = messages(s)
        per_msg = f"{1e6 * cpu['hub'] / total:,.0f}" if total else "—"
        sent = s.get("chunks") or s["requests"]  # nbtasks' chunks go down lanes, not as requests
        rows.append(f"| {label.split(' (')[0]} | {point['engines']} | {s['requests']:,} | {status:,} | {data:,} "
                    f"| {other:,} | {total / span:,.0f} | {per_msg} "
                    f"| {1000 * cpu['client'] / max(sent, 1):.1f} "
                    f"| {s['log_bytes'] / 1024:,.0f} | {pct(cpu['client'], span)} | {pct(cpu['hub'], span)} "
                    f"| {pct(cpu['children'], span)} | {pct(cpu['engines'], span)} |")
    return rows


def store_text(point: Result) -> str:
    runs = point["runs"]
    rows = sum(r["stored"]["rows"] for r in runs)
    kib = sum(r["stored"]["blob_bytes"] for r in runs) / 1024
    cpu = sum(r["cpu"]["store"] for r in runs)  # psutil counts thread CPU in 10 ms ticks: add the runs up
    return (f"{point['engines']} engines: {rows / len(runs):,.0f} rows and {kib / len(runs):,.0f} KiB of blobs "
            f"per run of {point['units']:,} units; over {len(runs)} runs the store thread used {1000 * cpu:.0f} ms "
            f"of CPU ({1e6 * cpu / max(rows, 1):,.0f} µs per row, counting its other work)")


def idle_share(point: Result) -> float:
    idle = point["idle"]
    return (idle["cpu"]["hub"] + idle["cpu"]["children"]) / idle["span"]


def seconds(sample: Result | None) -> str:
    if not sample:
        return ""
    return f"error ({sample['error']})" if "error" in sample else f"{sample['wall']:.2f}"


def setup_row(point: Result) -> str:
    e, idle, spent = point["engines"], point["idle"], point["start_cpu"]
    return (f"| {e} | {point['start_s']:.1f} | {spent['engines'] / e:.2f} | {spent['hub']:.2f} "
            f"| {point['check_s']:.2f} | {100 * idle_share(point):.0f}% "
            f"(busiest process {pct(idle['cpu']['busiest_child'], idle['span'])}) | {seconds(point['share'])} "
            f"| {seconds(point['peers'].get('ipp-direct'))} | {seconds(point['peers'].get('ipp-broadcast'))} |")


def report(points: dict[str, Result], orphans: list[str] | None = None) -> list[str]:
    """The markdown section of ``bench/run.py``'s report (and of this script's, with its ``orphans``)."""
    ok = [p for p in points.values() if "error" not in p]
    counts = " and ".join(str(p["engines"]) for p in ok) or "?"
    lines = [f"### 6. Many engines: units of {UNIT_S * 1000:g} ms (`time.sleep`) on {counts} local engines", ""]
    failed = [f"{name}: error: {p['error']}" for name, p in points.items() if "error" in p]
    lines += failed + [""] if failed else []
    if not ok:
        return lines
    lines += ["| peer | engines | units | wall (s) | units/s | of ideal |", "|---|---:|---:|---:|---:|---:|"]
    for p in ok:
        lines += throughput_rows(p)
    sleeps = ", ".join(f"{p['sleep_s'] * 1000:.2f} ms" for p in ok)
    lines += ["", f"Ideal = engines ÷ 10 ms (`time.sleep(0.01)` took {sleeps} in the measuring process). "
              "Every nbtasks run: " + "; ".join(
                  f"{p['engines']} engines {[round(r['wall'], 2) for r in p['runs']]} s" for p in ok) + ".", ""]
    lines += ["| peer | engines | requests | IOPub `status` | IOPub `data_message` | IOPub other "
              "| controller msgs/s | hub CPU per msg (µs) | client CPU per request or nbtasks chunk (ms) "
              "| controller log (KiB) "
              "| client CPU | hub CPU | rest of controller CPU | engines CPU |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in ok:
        lines += message_rows(p)
    lines += ["", "nbtasks sends its chunks down lanes (a socket of its own to each engine), not through "
              "the controller: its requests are the lanes' own applies, one per engine, counted once it ends. "
              "Requests are counted by the hub (`queue_status`): each is a message in and its reply out. "
              "IOPub messages are counted by type on a socket of our own (`data_message`: finished units "
              "nbtasks streams back while a chunk goes on). Controller msgs/s = (2 × requests + IOPub) over "
              "the watched span (the run and 0.3 s after it); heartbeats are not in it. CPU is a share of one "
              "core over that span (the machine has 2); the client's leaves out the counting thread.", ""]
    lines += ["Run store (one row per finished chunk part, one blob per chunk): " + "; ".join(
        store_text(p) for p in ok) + ".", ""]
    lines += ["| engines | start: registered and checked (s) | engine start CPU (s each) | hub CPU by then (s) "
              "| the check, warm (s) | idle controller CPU (100 ms heartbeats) "
              "| `cluster.share` 4 MiB (s) | raw `DirectView.apply` 4 MiB (s) | raw `BroadcastView.apply` 4 MiB (s) |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [setup_row(p) for p in ok]
    if len(ok) > 1:
        big, small = max(ok, key=lambda p: p["engines"]), min(ok, key=lambda p: p["engines"])
        more = big["engines"] - small["engines"]
        if more:
            lines += ["", f"Each engine more added {(big['start_s'] - small['start_s']) / more:.2f} s to the start "
                      f"(engines start at once; on 2 cores their imports queue) and "
                      f"{1000 * (big['start_cpu']['hub'] - small['start_cpu']['hub']) / more:.0f} ms of hub CPU "
                      f"(registration and the check); the idle controller's CPU grew by "
                      f"{100 * (idle_share(big) - idle_share(small)) / more:.2f} points of a core per engine."]
    if orphans is not None:
        lines += ["", "Orphaned processes after the scale points: "
                  + (f"{len(orphans)} (terminated: {'; '.join(orphans)})" if orphans else "none")]
    return lines


# -- as part of bench/run.py: one measurement per point, each in run.py's fresh subprocess ----------
def _point_worker(engines: int, peers: bool) -> Callable[[argparse.Namespace], Result]:
    return lambda _args: run_point(engines, UNITS_PER_ENGINE, REPEATS, peers)


PLAN = [f"scale-{engines}" for engines in ENGINES]
WORKERS: dict[str, Callable[[argparse.Namespace], Result]] = {
    name: _point_worker(engines, i == 0) for i, (name, engines) in enumerate(zip(PLAN, ENGINES))}


def table(results: dict[str, Result], args: argparse.Namespace) -> list[str]:
    """This section of run.py's report (run.py reports orphans itself)."""
    points = {name: results[name] for name in PLAN if results.get(name, {}).get("error") != "not run"}
    if not points:
        return ["### 6. Many engines: not run (`--only scale` runs it)"]
    return report(points)


# -- command line ----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", nargs="+", type=int, default=list(ENGINES),
                   help="engine counts, one point each (the first also runs the raw ipyparallel peers)")
    p.add_argument("--units-per-engine", type=int, default=UNITS_PER_ENGINE)
    p.add_argument("--repeats", type=int, default=REPEATS, help="timed nbtasks runs per point; the best is reported")
    p.add_argument("--point-timeout", type=float, default=240.0)
    p.add_argument("--point", type=int, help=argparse.SUPPRESS)
    p.add_argument("--peers", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run_point_here(args: argparse.Namespace) -> None:
    result = run_point(args.point, args.units_per_engine, args.repeats, peers=args.peers)
    print(RESULT_MARK + json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.point is not None:
        run_point_here(args)
        return 0
    from leftovers import bench_environment

    t0 = time.perf_counter()
    with bench_environment() as (env, _):
        result = measure(args, env)
    text = "\n".join(report(result["points"], result["orphans"])) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.md").write_text(text)
    (RESULTS / "scale.json").write_text(json.dumps(result, indent=1))
    print(f"written to {RESULTS / 'scale.md'} and scale.json")
    print(f"\nscale bench took {time.perf_counter() - t0:.0f} s")
    failed = [name for name, p in result["points"].items() if "error" in p]
    return 1 if failed or result["orphans"] else 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))  # run.py's helpers, also when started from elsewhere
    sys.exit(main())
