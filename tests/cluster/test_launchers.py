"""Which launcher a Cluster uses, and what follows from where its engines run (launchers.py):
checked with ipyparallel's own Cluster objects, built but not started. Engines really
started on other hosts are in tests/hosts/."""

from __future__ import annotations

import pytest
from traitlets.config import Config

import nbtasks as nt
from nbtasks.cluster.launchers import (LOCAL_CONTROLLER, NETWORK_CONTROLLER, NETWORK_ENGINE, make_ipp_cluster,
                                       ssh_engines)


def test_unknown_launchers_and_misplaced_hosts_are_refused_when_the_cluster_is_made():
    with pytest.raises(ValueError, match="no such engine launcher; installed: .*slurm.*ssh"):
        nt.Cluster(n=2, engines="slurmm")
    with pytest.raises(TypeError, match="launcher name or class"):
        nt.Cluster(n=2, engines=4)
    with pytest.raises(ValueError, match="hosts=.*is for engines='ssh', not 'slurm'"):
        nt.Cluster(n=2, engines="slurm", hosts=["a"])
    with pytest.raises(ValueError, match="list of host names or a dict"):
        nt.Cluster(n=2, engines="ssh", hosts="node1")
    assert repr(nt.Cluster(n=2, engines="SSH", hosts=["a"])).startswith("<nbtasks.Cluster ssh new")


def test_hosts_share_the_engines():
    assert ssh_engines(["a", "b"], 5) == {"a": 3, "b": 2}
    assert ssh_engines(["a", "b", "c"], 2) == {"a": 1, "b": 1}
    assert ssh_engines(["a", "b"], None) == {"a": 1, "b": 1}
    assert ssh_engines({"a": 4, "b": {"n": 2}}, 3) == {"a": 4, "b": {"n": 2}}


def test_local_engines_keep_fast_heartbeats_and_the_users_arguments_win():
    cluster, n = make_ipp_cluster(3, {"controller_args": ["--HeartMonitor.period=250"]})
    assert n == cluster.n == 3
    assert cluster.controller_args == [a for a in LOCAL_CONTROLLER if "period" not in a] + ["--HeartMonitor.period=250"]
    assert cluster.controller_ip == ""  # ipyparallel's default: this machine only
    assert cluster.config.LocalEngineSetLauncher.delay == 0


def test_ssh_engines_get_a_reachable_controller_network_heartbeats_and_their_hosts_total():
    user_config = Config()
    user_config.SSHEngineSetLauncher.engine_args = ["--log-level=DEBUG"]
    cluster, n = make_ipp_cluster(None, {"engines": "ssh", "hosts": {"localhost": 2, "127.0.0.1": 1},
                                         "config": user_config})
    assert n == cluster.n == 3
    assert cluster.controller_ip == "127.0.0.1"  # this machine's address towards the first host
    assert cluster.controller_args == NETWORK_CONTROLLER
    assert cluster.config.SSHEngineSetLauncher.engine_args == NETWORK_ENGINE + ["--log-level=DEBUG"]
    assert cluster.config.SSHEngineSetLauncher.engines == {"localhost": 2, "127.0.0.1": 1}
    assert user_config.SSHEngineSetLauncher.engine_args == ["--log-level=DEBUG"]  # the caller's, unchanged


def test_batch_engines_find_a_controller_listening_everywhere_unless_told_otherwise():
    cluster, n = make_ipp_cluster(8, {"engines": "slurm"})
    assert (n, cluster.controller_ip, cluster.controller_args) == (8, "*", NETWORK_CONTROLLER)
    assert cluster.config.SlurmEngineSetLauncher.engine_args == NETWORK_ENGINE
    cluster, _ = make_ipp_cluster(8, {"engines": "mpi", "controller_ip": "10.1.2.3"})
    assert cluster.controller_ip == "10.1.2.3"
