"""Cluster life cycle: start, default cluster, connect, engine checks, clean-up."""

import json
import os
import subprocess
import time

import ipyparallel as ipp
import psutil
import pytest

import nbtasks as nt
from nbtasks.cluster.launchers import LOCAL_CONTROLLER


def _wait_gone(pids, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


def test_default_cluster_starts_lazily_is_reused_and_leaves_no_engines(python_script):
    script = python_script('''
import json, os
import nbtasks as nt

cluster = nt.Cluster.default()
assert cluster.state.value == "new"           # nothing started yet
run = nt.task(lambda x: x * x).submit(7, progress=False)
assert run.result(60) == 49
assert nt.Cluster.default() is cluster and cluster.state.value == "running"
pids = cluster.client[:].apply_sync(os.getpid)
assert nt.task(os.getpid).run(progress=False) in pids
print(json.dumps(pids))
''')
    out = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    pids = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(pids) == os.cpu_count()
    assert _wait_gone(pids) == [], "engine processes outlived the kernel that started them"


def test_context_manager_stops_engines_and_fails_unfinished_runs():
    with nt.Cluster(n=1) as c:
        pids = c.client[:].apply_sync(os.getpid)
        run = nt.task(time.sleep).submit(30, cluster=c, progress=False)
        while run.counts()["running"] == 0:
            time.sleep(0.05)
    assert c.state.value == "stopped"
    assert isinstance(run.exception(10), RuntimeError) and "stopped" in str(run.exception())
    assert _wait_gone(pids) == []
    with pytest.raises(RuntimeError, match="stopped"):
        nt.task(abs).submit(1, cluster=c)


@pytest.mark.parametrize("n", [0, -2, 1.5, "2"])
def test_bad_engine_count(n):
    with pytest.raises(ValueError, match="positive int"):
        nt.Cluster(n=n)


@pytest.fixture(scope="module")
def raw_cluster():
    """A plain ipyparallel cluster, started without nbtasks."""
    c = ipp.Cluster(n=1, controller_args=LOCAL_CONTROLLER, log_level=40)
    client = c.start_and_connect_sync()
    client.wait_for_engines(1, timeout=60)
    yield c, client
    client.close()
    c.stop_cluster_sync()


def _client_file(c):
    return os.path.join(c.profile_dir, "security", f"ipcontroller-{c.cluster_id}-client.json")


def test_connect_by_connection_file_and_by_cluster_id(raw_cluster):
    raw, _ = raw_cluster
    for cluster in (nt.Cluster.connect(connection_file=_client_file(raw)),
                    nt.Cluster.connect(profile="default", cluster_id=raw.cluster_id)):
        try:
            assert nt.ParallelTask(abs).run([-1, -2], cluster=cluster, progress=False, timeout=30) == [1, 2]
        finally:
            cluster.stop()
    # stopping a connected cluster leaves its engines running
    assert len(raw_cluster[1].ids) == 1


def test_engines_without_nbtasks_are_a_clear_error(raw_cluster):
    _, client = raw_cluster
    client[:].execute("import sys; _saved = sys.modules.pop('nbtasks', None); sys.modules['nbtasks'] = None",
                      block=True)
    try:
        with pytest.raises(nt.ClusterError, match="cannot import nbtasks"):
            nt.Cluster.connect(connection_file=_client_file(raw_cluster[0]))
    finally:
        client[:].execute("import sys\nif _saved is None: del sys.modules['nbtasks']\n"
                          "else: sys.modules['nbtasks'] = _saved", block=True)


def test_engines_with_another_nbtasks_version_are_a_clear_error(raw_cluster):
    _, client = raw_cluster
    client[:].execute("import nbtasks; _v = nbtasks.__version__; nbtasks.__version__ = '0.0.0-other'",
                      block=True)
    try:
        with pytest.raises(nt.ClusterError, match=r"another nbtasks version.*0\.0\.0-other"):
            nt.Cluster.connect(connection_file=_client_file(raw_cluster[0]))
    finally:
        client[:].execute("nbtasks.__version__ = _v", block=True)


def test_connecting_to_nothing_fails_fast_with_a_clear_error(tmp_path):
    started = time.monotonic()
    with pytest.raises(nt.ClusterError, match="cannot connect"):
        nt.Cluster.connect(connection_file=tmp_path / "missing.json", timeout=2)
    assert time.monotonic() - started < 30
