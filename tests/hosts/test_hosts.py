"""The test hosts themselves: what the tests of remote engines rely on them for."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from . import HostsError, Network

LISTEN = ("import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 7000)); s.listen(); print('up', flush=True)\n"
          "while True: s.accept()[0].close()")


def _connects(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def test_each_host_has_its_name_and_cannot_read_the_clients_files(network, tmp_path):
    (tmp_path / "helpers.py").write_text("SECRET = 1\n")
    for host in network.hosts:
        assert host.run(["hostname"]).strip() == host.name
        assert host.run(["ls", "-A", str(tmp_path.parent)]) == ""  # an empty tmpfs of its own
        listing = host.run(["ls", os.path.dirname(sys.executable), os.path.dirname(__file__)])
        assert "python" in listing and "netns.py" in listing  # the venv and the checkout stay readable
        names = host.run([sys.executable, "-c", "import socket; print(socket.gethostbyname(socket.gethostname()), "
                          "socket.gethostbyname('node1'), socket.gethostbyname('client'))"]).split()
        assert names == [host.address, network["node1"].address, network.address]
    assert (tmp_path / "helpers.py").read_text() == "SECRET = 1\n"  # the client still sees it


def test_a_cut_link_stops_traffic_until_it_is_restored(network):
    node = network["node2"]
    server = node.popen([sys.executable, "-c", LISTEN, node.address], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline() == "up\n"
        assert [p.pid for p in node.processes()] == [server.pid]
        assert _connects(node.address, 7000)
        node.cut()
        try:
            assert not node.linked
            assert not _connects(node.address, 7000)
        finally:
            node.restore()
        assert node.linked and _connects(node.address, 7000)
    finally:
        server.kill()
        server.wait()
    assert node.processes() == []


def test_ssh_reaches_each_host_by_its_name(ssh_hosts):
    for host in ssh_hosts.network.hosts:
        out = subprocess.run(ssh_hosts.command(host.name, ["sh", "-c", "hostname; echo $IPYTHONDIR"]),
                             capture_output=True, text=True, timeout=30, check=True).stdout.split()
        assert out == [host.name, str(host.home / "ipython")]
    config = ssh_hosts.launcher_config(per_host=2, hosts=["node1"])
    assert config.SSHEngineSetLauncher.engines == {
        "node1": {"n": 2, "remote_profile_dir": ssh_hosts.profile_dir("node1")}}


def test_slurm_runs_jobs_on_its_compute_node(slurm):
    out = subprocess.run(["srun", "-N1", "hostname"], capture_output=True, text=True, timeout=30, check=True,
                         cwd=slurm.dir).stdout
    assert out.strip() == slurm.node.name


def test_mpi_ranks_see_each_other(mpi):
    out = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-c",
                          "from mpi4py import MPI; c = MPI.COMM_WORLD; ranks = c.gather(c.Get_rank())\n"
                          "if c.Get_rank() == 0: print(ranks)"],  # one print: the ranks' own could interleave
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[0, 1]"


def test_close_stops_every_process_and_removes_every_piece(tmp_path):
    hidden = tmp_path / "client"
    hidden.mkdir()
    with Network(1, names=["solo"], hide=[hidden]) as net:
        sleeper = net["solo"].popen(["sleep", "600"])
        pieces = [f"/run/netns/{net['solo'].netns}", f"/sys/class/net/{net.bridge}",
                  f"/sys/class/net/{net['solo'].veth}", str(net.root)]
        assert all(Path(p).exists() for p in pieces)
    deadline = time.monotonic() + 5
    while psutil.pid_exists(sleeper.pid) and sleeper.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sleeper.poll() is not None
    assert [p for p in pieces if Path(p).exists()] == []


def test_hiding_what_engines_need_is_refused():
    with pytest.raises(ValueError, match="the hosts need"):
        Network(1, hide=[Path(sys.prefix).parent])
    with pytest.raises(ValueError, match="not this machine's name"):
        Network(names=[socket.gethostname()])
    assert issubclass(HostsError, RuntimeError)
