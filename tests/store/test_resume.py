"""A kernel killed mid-run loses nothing finished: the same script run again
executes only the units the store does not have (counted with files)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil

from nbtasks.store import StoreReader

SCRIPT = r'''
import os, sys, time
import nbtasks as nt

marks, store = sys.argv[1], sys.argv[2]

def work(x):
    time.sleep(0.02)
    open(os.path.join(marks, f"{x}.{os.getpid()}.{time.monotonic_ns()}"), "w").close()
    return 3 * x

with nt.Cluster(2, store=store) as cluster:
    run = nt.ParallelTask(work).submit(list(range(300)), cluster=cluster, progress=False)
    print("RESULT", sum(run.result()), run.reused, run.id, flush=True)
'''


def kill_tree(proc: subprocess.Popen) -> None:
    """kill -9 the 'kernel' and everything it started (controller, engines)."""
    parent = psutil.Process(proc.pid)
    family = [parent] + parent.children(recursive=True)
    for p in family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=10)


def test_rerun_after_a_killed_kernel_executes_only_missing_units(tmp_path, python_script):
    marks = tmp_path / "marks"
    marks.mkdir()
    store = str(tmp_path / "runs.db")
    env = dict(os.environ, IPYTHONDIR=str(tmp_path / "ipython"))
    command = python_script(SCRIPT) + [str(marks), store]

    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(os.listdir(marks)) < 120 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.02)
    assert first.poll() is None, "the first run ended before it could be killed"
    kill_tree(first)
    executed_first = len(os.listdir(marks))
    assert 0 < executed_first < 300

    [lost] = StoreReader(store, stale_after=0.5).runs()["runs"]
    time.sleep(0.6)
    assert StoreReader(store, stale_after=0.5).run(lost["id"])["state"] == "lost"
    recorded = {u["unit"] for u in StoreReader(store).units(lost["id"], state="done", limit=1000)["units"]}
    assert recorded, "nothing finished was recorded before the kill"

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-3000:]
    _, total, reused, _ = next(line for line in second.stdout.splitlines() if line.startswith("RESULT")).split()
    assert int(total) == 3 * sum(range(300))
    assert int(reused) == len(recorded)

    per_unit = {x: 0 for x in range(300)}
    for name in os.listdir(marks):
        per_unit[int(name.split(".")[0])] += 1
    assert all(n >= 1 for n in per_unit.values())  # nothing lost
    assert all(per_unit[x] == 1 for x in recorded)  # nothing recorded ran again
    assert len(os.listdir(marks)) == executed_first + 300 - len(recorded)
