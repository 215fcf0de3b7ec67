"""Real test hosts on one machine (root only): engines on "other hosts" without mocks.

    network namespaces on a private bridge   netns.Network, netns.Host
    sshd in each host, for engines="ssh"     ssh.SSH
    a single-node Slurm, for engines="slurm" slurm.Slurm
    MPICH + the mpi4py wheel, for "mpi"      mpi.MPI

Each host has its own address (10.77.<slot>.2, .3, ...; the client is .1 on the bridge, and
nothing routes out), its own hostname (node1, node2, ...), and a view of the disk where the
directories given as ``hide`` are empty (the client's files: a notebook, its ``helpers.py``),
while the Python environment and the nbtasks checkout stay readable. Every piece is torn down
by ``close()`` (or ``with``), also after a failed start; a session killed before that is
cleaned up by the next one. Nothing is skipped: not root, or a missing program, fails with a
message saying what to install (``bash tools/system-deps.sh``).

In tests, use the session fixtures of ``tests/hosts/fixtures.py`` (``network``, ``ssh_hosts``,
``slurm``, ``mpi``); every test's ``tmp_path`` is hidden from the hosts there. By hand::

    from tests.hosts import Network, SSH

    with Network(2, hide=[client_dir]) as net, SSH(net) as ssh:
        node1 = net["node1"]
        node1.run(["hostname"])                   # "node1\\n": runs on that host
        engine = node1.popen(["ipengine", "--file", connection_file])
        node1.cut(); node1.restore()              # lose the host's link, and bring it back
        node1.processes()                         # what runs there (not its own sshd)
        # engines on node1 and node2; the controller listens on net.address, the
        # client's side of the bridge (nbtasks finds it: the route towards node1)
        cluster = nt.Cluster(engines="ssh", config=ssh.launcher_config(per_host=1))
"""

from .mpi import MPI
from .netns import Host, Network
from .slurm import Slurm
from .ssh import SSH
from .system import HostsError

__all__ = ["MPI", "SSH", "Host", "HostsError", "Network", "Slurm"]
