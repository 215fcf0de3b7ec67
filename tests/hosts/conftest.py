"""The test hosts' session fixtures (``fixtures.py``), for every test in ``tests/hosts/``."""

from .fixtures import mpi, network, slurm, ssh_hosts

__all__ = ["mpi", "network", "slurm", "ssh_hosts"]
