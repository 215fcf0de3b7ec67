"""A local cluster's processes come from a fork server (``nbtasks/cluster/forkserver.py``):
what users and tools see of them must be what ipyparallel's own launchers would give."""

from __future__ import annotations

import os
import signal
import time

import psutil

import nbtasks as nt
from tests.waiting import wait_until


def test_forked_engines_draw_different_random_numbers(cluster):
    def draw():
        import random

        import numpy

        return random.random(), float(numpy.random.rand())

    draws = cluster.client[:].apply_sync(draw)
    assert len(draws) == 2 and len({d[0] for d in draws}) == 2 and len({d[1] for d in draws}) == 2


def test_ps_shows_the_controller_engines_and_nannies_under_their_usual_names(cluster):
    server = psutil.Process(cluster.engine_info[cluster.engines[0]]["pid"]).parent()
    assert server.cmdline()[1:3] == ["-m", "nbtasks.cluster.forkserver"]
    names = [" ".join(p.cmdline()[1:3]) for p in server.children()]
    assert names.count("-m ipyparallel.controller") == 1 and names.count("-m ipyparallel.engine") == 2
    assert names.count("-m ipyparallel.engine.nanny") >= 2  # (one of an engine gone may linger)
    assert sorted(e["pid"] for e in cluster.engine_info.values()) == sorted(
        p.pid for p in server.children() if p.cmdline()[2] == "ipyparallel.engine")


def test_engines_start_without_the_debugger_and_units_may_still_import_it(cluster):
    def debugger():
        import debugpy
        from ipykernel import debugger

        return debugger._is_debugpy_available, debugpy.__name__

    assert cluster.client[:].apply_sync(debugger) == [(False, "debugpy")] * 2


def test_a_killed_forked_engine_is_noticed_at_once_and_replaced(cluster):
    """Its nanny (forked too) tells the controller: the engine leaves within a second or so
    (not after the controller's heartbeat misses), and the cluster starts another."""
    before = set(cluster.engines)
    victim = cluster.engines[0]
    os.kill(cluster.engine_info[victim]["pid"], signal.SIGKILL)
    started = time.monotonic()
    wait_until(lambda: victim not in cluster.engines, 10, "the killed engine left the cluster")
    noticed = time.monotonic() - started
    assert noticed < 4, f"noticed after {noticed:.1f}s: the nanny did not tell"  # heartbeats: 5 s
    assert nt.ParallelTask(abs).run([-1, -2, -3], cluster=cluster, progress=False, timeout=60) == [1, 2, 3]
    wait_until(lambda: len(set(cluster.engines) - before) == 1 and len(cluster.engines) == 2, 60,
               "a replacement engine joined")


def test_an_owner_gone_before_the_answer_to_a_fork_leaves_nothing_forked(tmp_path):
    """The owner killed while a fork is under way: the fork server's answer goes to a closed
    pipe. It must still end what it forked (an engine waiting for its controller), not die
    and leave it to init."""
    import json

    from nbtasks.cluster.forks import ForkServer

    server = ForkServer()
    owner_side = server._process
    request = {"role": "engine", "argv": [], "env": dict(os.environ), "cwd": str(tmp_path),
               "output": str(tmp_path / "engine.log"), "connection_file": str(tmp_path / "never.json"),
               "wait": 60}

    def forked_engines():
        found = []
        for p in psutil.process_iter(["cmdline", "cwd"]):
            if "ipyparallel.engine" in (p.info["cmdline"] or []) and p.info["cwd"] == str(tmp_path):
                found.append(p)
        return found

    owner_side.stdout.close()  # the owner never reads the answer
    owner_side.stdin.write(json.dumps(request).encode() + b"\n")
    owner_side.stdin.flush()
    try:
        wait_until(lambda: owner_side.poll() is not None, 30, "the fork server to end on its closed pipe")
        wait_until(lambda: not [p for p in forked_engines() if p.status() != psutil.STATUS_ZOMBIE], 15,
                   "what it forked to end")
    finally:
        for p in forked_engines():
            p.kill()
        owner_side.stdin.close()
