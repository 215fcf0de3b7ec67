"""The bench leaves nothing behind and reads a process tree's memory whole: real processes,
found by the environment the bench gives them (bench/leftovers.py, bench/memory.py), and a real
cold-start run of one peer through the orchestrator (bench/run.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import leftovers  # noqa: E402  (bench/ is not a package)
import memory  # noqa: E402
import run  # noqa: E402

# a parent that forks one child; both sleep until ended; the parent prints both pids
FORKING = ("import os, sys, time\n"
           "pid = os.fork()\n"
           "if pid == 0:\n"
           "    time.sleep(120); os._exit(0)\n"
           "print(os.getpid(), pid, flush=True)\n"
           "time.sleep(120)\n")


def start_tree(env: dict[str, str]) -> tuple[subprocess.Popen, int, int]:
    proc = subprocess.Popen([sys.executable, "-c", FORKING], env=env, stdout=subprocess.PIPE, text=True)
    parent, child = map(int, proc.stdout.readline().split())
    return proc, parent, child


def gone(pid: int, timeout: float = 10.0) -> bool:
    """The process has exited (a zombie no parent has reaped yet counts as exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def end(proc: subprocess.Popen, *pids: int) -> None:
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=10)


def test_processes_started_under_the_bench_directory_are_found_and_ended():
    with leftovers.bench_environment() as (env, ipython_dir):
        assert env["IPYTHONDIR"] == ipython_dir and env["NBTASKS_PRESTART"] == "0"
        proc, parent, child = start_tree(env)
        stranger, s_parent, s_child = start_tree({k: v for k, v in env.items() if k != "IPYTHONDIR"})
        try:
            assert {p.pid for p in leftovers.started_under(ipython_dir)} == {parent, child}
            ended = leftovers.reap_orphans(ipython_dir, grace=0.5)
            assert sorted(int(d.split()[0]) for d in ended) == sorted([parent, child])
            assert all("os.fork()" in d or "import os" in d for d in ended)
            proc.wait(timeout=10)
            assert gone(child), "the forked child was not ended"
            assert leftovers.started_under(ipython_dir) == []
            assert psutil.Process(s_parent).is_running() and psutil.Process(s_child).is_running()
        finally:
            end(proc, parent, child)
            end(stranger, s_parent, s_child)


def test_a_process_trees_rss_is_the_sum_over_the_process_and_its_children():
    proc, parent, child = start_tree(dict(os.environ))
    try:
        tree = memory.ProcessTree(parent)
        assert sorted(p.pid for p in tree.processes) == sorted([parent, child])
        alone = sum(psutil.Process(pid).memory_info().rss for pid in (parent, child)) / 2**20
        assert tree.rss_mb() == pytest.approx(alone, abs=1.0)  # two sleeping processes: their RSS holds still
        psutil.Process(child).kill()
        assert gone(child)
        assert tree.rss_mb() <= psutil.Process(parent).memory_info().rss / 2**20 + 1.0  # a gone child counts 0
    finally:
        end(proc, parent, child)


def test_a_cold_start_runs_in_a_fresh_process_and_leaves_nothing():
    args = run.parse_args(["--only", "cold-joblib", "--repeats", "1"])
    with leftovers.bench_environment() as (env, ipython_dir):
        result = run.run_worker("cold-joblib", args, env, 1)
        assert "error" not in result, result.get("error")
        assert 0 < result["best"] <= result["since_launch"] and result["peak_mb"] > 0
        assert leftovers.reap_orphans(ipython_dir, grace=10.0) == []
