"""Session fixtures for the test hosts (see ``tests/hosts/__init__.py``).

Each is made on first use and torn down at the end of the session, also when tests fail.
Every test's ``tmp_path`` (pytest's base temp dir) is hidden from the hosts, so a notebook
or a ``helpers.py`` written there is the client's alone. ``tests/conftest.py`` offers
them to every test, so one session builds one network, whoever asks first.
"""

from __future__ import annotations

import pytest

from . import MPI, SSH, Network, Slurm


@pytest.fixture(scope="session")
def network(tmp_path_factory):
    """Three hosts, node1..node3, on a private bridge (``network.address`` is the client's)."""
    with Network(3, hide=[tmp_path_factory.getbasetemp()]) as net:
        yield net


@pytest.fixture(scope="session")
def ssh_hosts(network):
    """sshd on every host; ``ssh_hosts.launcher_config()`` is what ``engines="ssh"`` needs."""
    with SSH(network) as ssh:
        yield ssh


@pytest.fixture(scope="session")
def slurm(network):
    """A single-node Slurm whose compute node is node3; ``SLURM_CONF`` is set for the session."""
    with Slurm(network, network["node3"]) as s, pytest.MonkeyPatch.context() as patch:
        for name, value in s.env.items():
            patch.setenv(name, value)
        yield s


@pytest.fixture(scope="session")
def mpi(network):
    """mpiexec runs mpi4py ranks: its ``LD_LIBRARY_PATH`` is set for the session."""
    with MPI(network.root) as m, pytest.MonkeyPatch.context() as patch:
        for name, value in m.env.items():
            patch.setenv(name, value)
        yield m
