"""No process outlives its owner: a local cluster's controller, engines and nannies stop
when the process that started them dies, SIGKILL included (what an out-of-memory kill does)."""

import json
import os
import signal
import subprocess
import time

import psutil

OWNER = '''
import json, sys, time
import psutil
import nbtasks as nt

cluster = nt.Cluster(n=2).start()
assert nt.ParallelTask(abs).run([-1, -2], cluster=cluster, progress=False, timeout=60) == [1, 2]
mine = psutil.Process().children(recursive=True)
print(json.dumps([[p.pid, p.create_time()] for p in mine]), flush=True)
if sys.argv[1] == "stop":
    cluster.stop()
    left = [p.pid for p in mine if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    print(json.dumps(left), flush=True)
else:
    time.sleep(120)  # until killed
'''


def _alive(processes):
    out = []
    for pid, started in processes:
        try:
            p = psutil.Process(pid)
            if abs(p.create_time() - started) < 0.01 and p.status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.Error:
            pass
    return out


def test_a_killed_owner_takes_its_local_cluster_with_it(python_script, tmp_path):
    env = dict(os.environ, IPYTHONDIR=str(tmp_path / "ipython"))
    owner = subprocess.Popen(python_script(OWNER) + ["kill"], env=env, stdout=subprocess.PIPE, text=True)
    processes = []
    try:
        processes = json.loads(owner.stdout.readline())
        assert len(processes) >= 4, processes  # controller, 2 engines (and their nannies), the guard
        assert len(_alive(processes)) == len(processes)
        owner.send_signal(signal.SIGKILL)  # no exit handler runs
        owner.wait(10)
        deadline = time.monotonic() + 10
        while _alive(processes) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _alive(processes) == [], "left running after their owner was killed"
    finally:
        if owner.poll() is None:
            owner.kill()
        for pid in _alive(processes):  # whatever the guard missed: not left for the next test
            os.kill(pid, signal.SIGKILL)


def test_a_stopped_cluster_leaves_nothing_behind_not_even_its_guard(python_script, tmp_path):
    env = dict(os.environ, IPYTHONDIR=str(tmp_path / "ipython"))
    done = subprocess.run(python_script(OWNER) + ["stop"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    started, left = (json.loads(line) for line in done.stdout.splitlines()[:2])
    assert len(started) >= 4 and left == []
