"""No process outlives its owner, on other hosts too: a kernel with SSH engines on two hosts is
killed with SIGKILL mid-run (what an out-of-memory kill does); 10 s later nothing of its
cluster runs, here (controller, guard, ssh) or on the hosts (engines, nannies, ssh sessions).

Here the guard stops the controller; the remote engines, which nothing here can signal once
the owner is gone, exit by themselves when the controller's heartbeats stop.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psutil

OWNER = r'''
import json, sys, time
import psutil
from traitlets.config import Config
import nbtasks as nt

ssh_args, engines = json.loads(sys.argv[1]), json.loads(sys.argv[2])
config = Config()
config.SSHLauncher.ssh_args = config.SSHLauncher.scp_args = ssh_args
config.SSHLauncher.remote_python = sys.executable
config.SSHEngineSetLauncher.engines = engines
cluster = nt.Cluster(engines="ssh", config=config).start()

def step(x):
    time.sleep(0.2)
    return x

run = nt.ParallelTask(step).submit(list(range(2000)), cluster=cluster, progress=False)
while run.counts()["done"] < 10:
    time.sleep(0.05)
hosts = sorted(row["host"] for row in cluster.engines_status())
mine = [[p.pid, p.create_time()] for p in psutil.Process().children(recursive=True)]
print(json.dumps({"hosts": hosts, "local": mine}), flush=True)
time.sleep(300)  # until killed, mid-run
'''


def _alive(processes: list[list]) -> list[str]:
    out = []
    for pid, started in processes:
        try:
            p = psutil.Process(pid)
            if abs(p.create_time() - started) < 0.01 and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{pid} {' '.join(p.cmdline())[:100]}")
        except psutil.Error:
            pass
    return out


def _on_hosts(hosts) -> list[str]:
    return [f"{h.name}: {p.pid} {' '.join(p.cmdline())[:100]}" for h in hosts for p in h.processes()]


def test_a_killed_owner_leaves_no_process_of_its_cluster_on_any_host(ssh_hosts, network, python_script, tmp_path):
    hosts = [network["node1"], network["node2"]]
    deadline = time.monotonic() + 15  # what earlier tests started there has ended
    while _on_hosts(hosts) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _on_hosts(hosts) == [], "the hosts were not idle before the test"

    env = dict(os.environ, IPYTHONDIR=str(tmp_path / "ipython"))
    engines = ssh_hosts.engines(per_host=1, hosts=[h.name for h in hosts])
    owner = subprocess.Popen(python_script(OWNER) + [json.dumps(ssh_hosts.ssh_args), json.dumps(engines)],
                             env=env, stdout=subprocess.PIPE, text=True)
    local = []
    try:
        seen = json.loads(owner.stdout.readline() or "null")
        assert seen is not None, "the owner did not start its cluster"
        assert seen["hosts"] == ["node1", "node2"]
        local = seen["local"]
        assert len(local) >= 2 and _on_hosts(hosts)  # controller and guard here, engines there

        owner.send_signal(signal.SIGKILL)  # no exit handler runs
        owner.wait(10)
        killed = time.monotonic()
        while (_alive(local) or _on_hosts(hosts)) and time.monotonic() < killed + 10:
            time.sleep(0.1)
        assert _alive(local) == [], "left running here after their owner was killed"
        assert _on_hosts(hosts) == [], "left running on the hosts after their owner was killed"
    finally:
        if owner.poll() is None:
            owner.kill()
        for line in _alive(local):  # not left for the next test
            os.kill(int(line.split()[0]), signal.SIGKILL)
        for host in hosts:
            for p in host.processes():
                p.kill()
