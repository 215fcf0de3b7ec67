"""CPU-bound units on 2 workers: how much of two cores each framework gives to real work.

Each unit spins (a busy loop to a deadline, not a sleep) for its time; three sizes so that
chunking has to fit short, long and few units alike: 40 x 50 ms, 400 x 5 ms, 4 x 500 ms
(``--cpu-sizes``). Efficiency = the work (units x unit time) / (2 x wall time): a unit cannot
end before its deadline, so no run beats 100 %. The serial loop is run once per size as a
reading of the machine: on a loaded one each unit overshoots its deadline a little (the
process is not running when it passes), and that shows in every peer's wall time too.

Peers, each in its own process with its workers started and warmed up before the clock:
nbtasks ``ParallelTask(spin)`` (and once more with its chunks sent by apply, not down
lanes, to show what lanes buy), joblib ``Parallel(n_jobs=2)``, ``multiprocessing.Pool(2).map``,
dask ``client.map`` + ``gather`` (LocalCluster, 2 worker processes of 1 thread), raw
ipyparallel ``LoadBalancedView.map`` (its defaults: one unit per message).
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from common import (
    ENGINES,
    Result,
    Target,
    Worker,
    dask_client,
    ipp_cluster,
    nbtasks_cluster,
    peak_mb,
    purge,
    registrar,
    spin,
    timing,
    wall_times,
)
from metrics import efficiency, parse_size, size_label

DEFAULT_SIZES = ["40x50", "400x5", "4x500"]
EFFICIENCY_TARGETS = {"40x50": 0.98, "400x5": 0.97, "4x500": 0.97}
NOT_BELOW_JOBLIB = ("40x50",)  # sizes where nbtasks must also reach joblib's efficiency in the same run
PEERS = [("nbtasks `ParallelTask`", "cpu-nbtasks"),
         ("nbtasks, chunks by apply, no lanes (`NBTASKS_LANES=0`)", "cpu-nbtasks-apply"),
         ("joblib, loky, n_jobs=2", "cpu-joblib"),
         ("`multiprocessing.Pool(2).map`", "cpu-multiprocessing"),
         ("dask `client.map` + `gather`, LocalCluster(n_workers=2)", "cpu-dask"),
         ("ipyparallel `LoadBalancedView.map`, default", "cpu-ipp-default")]
PLAN = ["cpu-serial", *[key for _, key in PEERS]]
WORKERS: dict[str, Worker] = {}
worker = registrar(WORKERS)


def each_size(args: argparse.Namespace, run: Callable[[list[float]], Any], repeats: int | None = None,
              between: Callable[[], None] | None = None) -> Result:
    """Time ``run(inputs)`` on every size, after a warm-up of 4 short units."""
    run([0.001] * 4)
    sizes = {}
    for text in args.cpu_sizes:
        units, seconds = parse_size(text)
        inputs = [seconds] * units
        sizes[text] = timing(wall_times(repeats or args.repeats, lambda inputs=inputs: run(inputs), between))
        if between is not None:
            between()
    return {"sizes": sizes, "peak_mb": peak_mb()}


@worker("cpu-serial")
def cpu_serial(args: argparse.Namespace) -> Result:
    return each_size(args, lambda inputs: [spin(s) for s in inputs], repeats=1)


@worker("cpu-nbtasks")
def cpu_nbtasks(args: argparse.Namespace) -> Result:
    import nbtasks as nt

    with nbtasks_cluster() as cluster:
        task = nt.ParallelTask(spin)
        return each_size(args, lambda inputs: task.submit(inputs, cluster=cluster, progress=False,
                                                          cache=False).result())


@worker("cpu-nbtasks-apply")
def cpu_nbtasks_apply(args: argparse.Namespace) -> Result:
    """What lanes bought: the same, each chunk an ipyparallel apply (as before lanes)."""
    import os

    os.environ["NBTASKS_LANES"] = "0"
    return cpu_nbtasks(args)


@worker("cpu-ipp-default")
def cpu_ipp(args: argparse.Namespace) -> Result:
    with ipp_cluster() as client:
        view = client.load_balanced_view()
        return each_size(args, lambda inputs: view.map(spin, inputs, block=True), between=lambda: purge(client))


@worker("cpu-joblib")
def cpu_joblib(args: argparse.Namespace) -> Result:
    from joblib import Parallel, delayed

    return each_size(args, lambda inputs: Parallel(n_jobs=ENGINES)(delayed(spin)(s) for s in inputs))


@worker("cpu-multiprocessing")
def cpu_multiprocessing(args: argparse.Namespace) -> Result:
    import multiprocessing

    with multiprocessing.Pool(ENGINES) as pool:
        return each_size(args, lambda inputs: pool.map(spin, inputs))


@worker("cpu-dask")
def cpu_dask(args: argparse.Namespace) -> Result:
    with dask_client() as client:
        return each_size(args, lambda inputs: client.gather(client.map(spin, inputs, pure=False)))


# -- the report -----------------------------------------------------------------------------------
def work_s(size: str) -> float:
    units, seconds = parse_size(size)
    return units * seconds


def size_efficiency(results: dict[str, Result], key: str, size: str) -> float | None:
    r = results[key]
    if "error" in r or size not in r["sizes"]:
        return None
    return efficiency(work_s(size), r["sizes"][size]["best"], ENGINES)


def pct(value: float | None) -> str:
    return "error" if value is None else f"{value * 100:.1f}%"


def table(results: dict[str, Result], args: argparse.Namespace) -> list[str]:
    sizes = args.cpu_sizes
    labels = [size_label(*parse_size(s)) for s in sizes]
    lines = [f"### 2. CPU-bound: busy-loop units, {ENGINES} workers", "",
             f"Efficiency = the work (units x unit time) / ({ENGINES} x wall time), best of "
             f"{args.repeats} runs per size; in brackets nbtasks' efficiency against the peer's. The serial loop "
             "(1 core, once) shows what the machine's load added to the work itself.", "",
             "| peer | " + " | ".join(labels) + " | client peak MB |",
             "|---|" + "---:|" * (len(sizes) + 1)]
    serial = results["cpu-serial"]
    if "error" not in serial:
        took = {s: serial["sizes"][s]["best"] for s in sizes}
        cells = [f"{took[s]:.3f} s of {work_s(s):g} s ({took[s] / work_s(s) - 1:+.1%})" for s in sizes]
        lines.append("| serial loop, 1 core | " + " | ".join(cells) + " | |")
    for label, key in PEERS:
        if results[key].get("error") == "not run":
            continue
        cells = []
        for s in sizes:
            eff, ours = size_efficiency(results, key, s), size_efficiency(results, "cpu-nbtasks", s)
            versus = "" if key == "cpu-nbtasks" or eff is None or ours is None else f" ({ours / eff:.2f}x)"
            wall = "" if eff is None else f", {results[key]['sizes'][s]['best']:.3f} s"
            cells.append(pct(eff) + wall + versus)
        peak = results[key].get("peak_mb")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {'' if peak is None else f'{peak:,.0f}'} |")
    return lines


def targets(results: dict[str, Result], args: argparse.Namespace) -> list[Target]:
    rows = []
    for size in args.cpu_sizes:
        if size not in EFFICIENCY_TARGETS:
            continue
        label, goal = size_label(*parse_size(size)), EFFICIENCY_TARGETS[size]
        ours = size_efficiency(results, "cpu-nbtasks", size)
        rows.append((f"CPU-bound {label}: efficiency >= {goal:.0%}", ["cpu-nbtasks"], pct(ours),
                     None if ours is None else ours >= goal))
        if size in NOT_BELOW_JOBLIB:
            joblib = size_efficiency(results, "cpu-joblib", size)
            rows.append((f"CPU-bound {label}: efficiency >= joblib's (same run)",
                         ["cpu-nbtasks", "cpu-joblib"], f"{pct(ours)} vs {pct(joblib)}",
                         None if ours is None or joblib is None else ours >= joblib))
    return rows
