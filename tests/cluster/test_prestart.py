"""The default cluster starts when the main program imports nbtasks (``nbtasks/_prestart.py``):
in scripts and notebooks, not on engines, in the Jupyter server, under pytest or in
``python -m nbtasks...`` tools; ``NBTASKS_PRESTART=0`` turns it off. What it started stops
with its owner, a failed start is the first use's error, and an unused one makes way.

Each test runs a real Python process with prestart allowed (this session's conftest turns it
off for everything else the tests start).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

import nbtasks as nt
from tests.waiting import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def env(tmp_path):
    """The environment of a process that may prestart: its own IPython directory and store."""
    environ = {k: v for k, v in os.environ.items() if k != "NBTASKS_PRESTART"}
    environ.update(IPYTHONDIR=str(tmp_path / "ipython"), NBTASKS_STORE=str(tmp_path / "runs.db"))
    return environ


def cluster_processes(env: dict) -> list[psutil.Process]:
    """Live processes of clusters started under ``env``'s IPython directory (forked ones keep
    the environment of the fork server, which has it too)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "environ", "status"]):
        info = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
            continue
        cmdline = " ".join(info["cmdline"] or ())
        if "ipyparallel" in cmdline or "nbtasks.cluster" in cmdline:
            if (info["environ"] or {}).get("IPYTHONDIR") == env["IPYTHONDIR"]:
                found.append(proc)
    return found


# runs on an engine: an engine imports nbtasks but starts no cluster (no fork server, no threads;
# an engine that ipyparallel started as a new interpreter has its nanny as a child)
ENGINE_SIDE_SOURCE = '''
def ENGINE_SIDE():
    import threading
    import psutil
    return {"children": [p.cmdline()[:3] for p in psutil.Process().children() if "nanny" not in " ".join(p.cmdline())],
            "threads": sorted(t.name for t in threading.enumerate() if t.name.startswith("nbtasks"))}
'''


def run(source: str, env: dict, timeout: float = 120) -> list:
    """Run ``source`` as a script; returns what it printed, one JSON value a line."""
    done = subprocess.run([sys.executable, "-c", source], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_all_gone(env: dict, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while (left := cluster_processes(env)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"left running: {[_described(p) for p in left]}"


def _described(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())[:100]}"
    except psutil.Error:
        return f"{process.pid} (gone)"


def test_importing_nbtasks_starts_the_default_cluster_which_the_first_submit_uses(env):
    [state, started, same, engines] = run(ENGINE_SIDE_SOURCE + '''
import json, os, sys, threading, time
import nbtasks as nt

deadline = time.monotonic() + 60
while nt.Cluster.default().state.value != "running" and time.monotonic() < deadline:
    time.sleep(0.02)  # nothing was submitted: the import started it
cluster = nt.Cluster.default()
print(json.dumps(cluster.state.value))
print(json.dumps(len(cluster.engines)))
assert nt.task(abs).submit(-3, progress=False).result(60) == 3
print(json.dumps(nt.Cluster.default() is cluster))

print(json.dumps(cluster.client[:].apply_sync(ENGINE_SIDE)))
''', env)
    assert state == "running" and started == os.cpu_count() and same is True
    assert engines == [{"children": [], "threads": []}] * started
    assert_all_gone(env)


def test_engines_started_as_new_interpreters_import_nbtasks_and_start_nothing(monkeypatch, tmp_path):
    import ipyparallel as ipp

    from nbtasks.cluster.launchers import LOCAL_CONTROLLER

    monkeypatch.delenv("NBTASKS_PRESTART")  # the engines get this environment
    raw = ipp.Cluster(n=1, controller_args=LOCAL_CONTROLLER, log_level=40)
    raw.start_cluster_sync()
    try:
        cluster = nt.Cluster.connect(connection_file=os.path.join(
            raw.profile_dir, "security", f"ipcontroller-{raw.cluster_id}-client.json"), timeout=60)
        try:  # the nbtasks check imported nbtasks there, in the engine's __main__ namespace
            namespace: dict = {}
            exec(ENGINE_SIDE_SOURCE, namespace)
            time.sleep(1.5)
            assert cluster.client[:].apply_sync(namespace["ENGINE_SIDE"]) == [{"children": [], "threads": []}]
        finally:
            cluster.stop()
    finally:
        raw.stop_cluster_sync()


def test_a_notebook_kernel_that_imports_nbtasks_has_its_cluster_started_and_stopped(env):
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3", env=env, cwd=ROOT)
    printed: list[str] = []
    try:
        reply = client.execute_interactive('''
import time
import nbtasks as nt
deadline = time.monotonic() + 60
while nt.Cluster.default().state.value != "running" and time.monotonic() < deadline:
    time.sleep(0.02)
print(nt.Cluster.default().state.value, len(nt.Cluster.default().engines))
''', timeout=90, output_hook=lambda msg: printed.append(msg["content"].get("text", "")))
        assert reply["content"]["status"] == "ok", reply["content"]
        assert "".join(printed).split() == ["running", str(os.cpu_count())]
        assert cluster_processes(env)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=False)
    assert_all_gone(env)


def test_NBTASKS_PRESTART_0_keeps_the_default_cluster_for_the_first_use(env):
    env["NBTASKS_PRESTART"] = "0"
    [state, children] = run('''
import json, time
import psutil
import nbtasks as nt

time.sleep(1.5)
print(json.dumps(nt.Cluster.default().state.value))
print(json.dumps(len(psutil.Process().children(recursive=True))))
''', env)
    assert (state, children) == ("new", 0)


@pytest.mark.parametrize("importer", [
    pytest.param("runpy.run_module('nbtasks.cluster.forks', run_name='__main__')", id="python -m nbtasks..."),
    pytest.param("importlib.import_module('library_of_mine')", id="a library's import"),
])
def test_no_prestart_where_the_main_program_did_not_import_nbtasks(env, tmp_path, importer):
    (tmp_path / "library_of_mine.py").write_text("import nbtasks\n")
    env["PYTHONPATH"] = str(tmp_path)
    [children, imported] = run(f'''
import importlib, json, runpy, sys, time
import psutil
{importer}
time.sleep(1.5)
print(json.dumps(len(psutil.Process().children(recursive=True))))
print(json.dumps("nbtasks" in sys.modules))
''', env)
    assert (children, imported) == (0, True)


def test_no_prestart_in_a_pytest_run(env, tmp_path):
    (tmp_path / "test_uses_nbtasks.py").write_text('''
import time
import psutil
import nbtasks

def test_nothing_started():
    time.sleep(1.5)
    assert psutil.Process().children(recursive=True) == []
''')
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]


def test_no_prestart_in_the_jupyter_server_that_loads_the_extension(env, tmp_path):
    config = tmp_path / "config" / "jupyter_server_config.d"
    config.mkdir(parents=True)
    (config / "nbtasks.json").write_text(open(os.path.join(ROOT, "jupyter-config", "server-config",
                                                           "nbtasks.json")).read())
    (tmp_path / "root").mkdir()
    env.update(JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    env.pop("JUPYTER_CONFIG_PATH", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1", f"--port={_free_port()}",
         "--ServerApp.port_retries=0",
         "--IdentityProvider.token=t", f"--ServerApp.root_dir={tmp_path / 'root'}", "--allow-root"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        log = []
        for line in server.stderr:  # the extension is loaded (so nbtasks imported) before it serves
            log.append(line)
            if "Jupyter Server" in line and "is running at" in line:
                break
        assert any("nbtasks" in line and "extension was successfully loaded" in line for line in log), log
        time.sleep(1.5)
        assert psutil.Process(server.pid).children(recursive=True) == []
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_a_script_ending_while_the_cluster_starts_leaves_nothing(env):
    run('''
import time
import nbtasks
time.sleep(0.3)  # the fork server is importing, the controller may be forked
''', env)
    assert_all_gone(env)


def test_an_owner_killed_while_the_cluster_starts_takes_it_along(env):
    owner = subprocess.Popen([sys.executable, "-c", "import time, nbtasks\nprint(1, flush=True)\ntime.sleep(60)"],
                             env=env, stdout=subprocess.PIPE, text=True)
    try:
        owner.stdout.readline()
        wait_until(lambda: len(cluster_processes(env)) >= 3, 60, "the prestarted cluster's processes")
        owner.send_signal(signal.SIGKILL)  # no exit handler runs
        owner.wait(10)
        assert_all_gone(env)
    finally:
        if owner.poll() is None:
            owner.kill()
        for proc in cluster_processes(env):  # whatever was missed: not left for the next test
            try:
                proc.kill()
            except psutil.Error:
                pass


def test_a_failed_prestart_is_the_error_of_the_first_use_not_of_the_import(env, tmp_path):
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipcontroller_config.py").write_text('c.IPController.ip = "256.1.1.1"\n')  # cannot bind
    [error, state] = run('''
import json
import nbtasks as nt

try:
    nt.task(abs).submit(-1, progress=False).result(60)
except nt.ClusterError as exc:
    print(json.dumps(str(exc)))
print(json.dumps(nt.Cluster.default().state.value))
''', env)
    assert "failed to start" in error and "Controller stopped" in error
    assert state == "new"  # the next use tries again, with a new cluster
    assert_all_gone(env)


def test_the_users_own_cluster_gets_the_warm_fork_server_of_an_unused_prestarted_one(env):
    [prestarted_server, own_server, left] = run('''
import json, time
import psutil
import nbtasks as nt
from nbtasks.cluster.cluster import Cluster

deadline = time.monotonic() + 60
while getattr(Cluster._default, "state", None) is not nt.cluster.ClusterState.RUNNING \\
        and time.monotonic() < deadline:  # (not default(): that is a use)
    time.sleep(0.02)
def engines():
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "ipyparallel.engine" in p.cmdline():
                found.append(p)
        except psutil.Error:  # it ended while we looked
            pass
    return found
prestarted = engines()
print(json.dumps(prestarted[0].ppid()))
with nt.Cluster(n=1) as own:
    assert nt.task(abs).run(-2, cluster=own, progress=False) == 2
    print(json.dumps(psutil.Process(own.engine_info[own.engines[0]]["pid"]).ppid()))
    deadline = time.monotonic() + 20
    while any(p.is_running() and p.status() != "zombie" for p in prestarted) and time.monotonic() < deadline:
        time.sleep(0.05)
    print(json.dumps([p.pid for p in prestarted if p.is_running() and p.status() != "zombie"]))
''', env)
    assert own_server == prestarted_server and left == []
    assert_all_gone(env)


def test_an_unused_prestarted_cluster_makes_way_for_the_users_own(env):
    [prestarted, own, default] = run('''
import json, os, time
import psutil
import nbtasks as nt

def engines():
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "ipyparallel.engine" in p.cmdline():
                found.append(p.pid)
        except psutil.Error:  # it ended while we looked (the prestarted ones are stopping)
            pass
    return sorted(found)

deadline = time.monotonic() + 60
while len(engines()) < os.cpu_count() and time.monotonic() < deadline:
    time.sleep(0.02)
prestarted = engines()
print(json.dumps(prestarted))
with nt.Cluster(n=1) as own:
    assert nt.task(abs).run(-2, cluster=own, progress=False) == 2
    deadline = time.monotonic() + 20
    while set(prestarted) & set(engines()) and time.monotonic() < deadline:
        time.sleep(0.05)
    print(json.dumps(engines()))
print(json.dumps(nt.Cluster.default().state.value))
''', env)
    assert len(prestarted) == os.cpu_count()
    assert len(own) == 1 and not set(own) & set(prestarted)
    assert default == "new"
    assert_all_gone(env)
