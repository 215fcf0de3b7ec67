"""A single-node Slurm for ipyparallel's Slurm launcher: munged and slurmctld on the client
machine, slurmd on one host of a :class:`~tests.hosts.netns.Network` (the compute node).

No systemd: each daemon runs in the foreground as a child of the test session, with its
config, key, state, spool, logs and pid files under ``<network.root>/slurm``, and ports
picked free. ``env`` (``SLURM_CONF``) is what ``sbatch``/``squeue``/``scancel`` need to find
this Slurm; jobs' output goes to the same directory, never the current one.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from .netns import Host, Network
from .system import HostsError, end_processes, free_port, require_program, run, wait_for_port

__all__ = ["Slurm"]

START_TIMEOUT = 20.0

# ipyparallel's default engine template, plus: a job may have more tasks than the node has
# CPUs (--overcommit; else engines past the CPU count stay PENDING for good), and its files
# stay in our directory (the default --output and batch file go to the current directory).
ENGINE_TEMPLATE = """#!/bin/sh
#SBATCH --export=ALL
#SBATCH --job-name=ipengine-{{cluster_id}}
#SBATCH --ntasks={{n}}
#SBATCH --overcommit
#SBATCH --chdir={dir}
#SBATCH --output={dir}/slurm-%j.out
srun {{program_and_args}}
"""


class Slurm:
    """munged + slurmctld here, slurmd on ``node`` (``start()``/``close()``, or ``with``)."""

    def __init__(self, network: Network, node: Host) -> None:
        if network.root is None:
            raise HostsError("start the network before its Slurm")
        self.network = network
        self.node = node
        self.dir = network.root / "slurm"
        self.conf = self.dir / "slurm.conf"
        self.munge_socket = self.dir / "munge" / "munge.socket.2"
        #: the environment Slurm's commands need (merge it into os.environ, or pass it on)
        self.env = {"SLURM_CONF": str(self.conf)}
        self._daemons: list[subprocess.Popen] = []

    def __enter__(self) -> "Slurm":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> "Slurm":
        munged = require_program("/usr/sbin/munged", "munge")
        slurmctld = require_program("/usr/sbin/slurmctld", "slurm-wlm")
        slurmd = require_program("/usr/sbin/slurmd", "slurm-wlm")
        for program in ("sbatch", "sinfo", "squeue", "scancel", "srun"):
            require_program(program, "slurm-wlm")
        self.dir.mkdir(mode=0o755)
        (self.dir / "state").mkdir()
        (self.dir / "spool").mkdir()
        try:
            self._start_munge(munged)
            ports = free_port("0.0.0.0"), free_port("0.0.0.0")
            self._write_conf(*ports)
            self._daemons.append(_daemon([slurmctld, "-D", "-f", str(self.conf)], self.dir / "slurmctld.out"))
            wait_for_port(self.network.address, ports[0], START_TIMEOUT, "slurmctld", self._daemons[-1])
            self._daemons.append(self.node.daemon([slurmd, "-D", "-f", str(self.conf), "-N", self.node.name],
                                                  log=self.dir / "slurmd.out"))
            self._wait_until_idle()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Cancel every job, then stop the daemons (processes of jobs stop with the network)."""
        if self._daemons and self._daemons[0].poll() is None:
            run(["scancel", "--full", "--user=root"], check=False, env=self._environ())
        end_processes([d.pid for d in reversed(self._daemons)], grace=3.0)
        for daemon in self._daemons:
            daemon.wait(5)
        self._daemons.clear()

    def jobs(self) -> list[str]:
        """Ids of the jobs Slurm knows about, pending or running."""
        return run(["squeue", "-h", "-o", "%i"], env=self._environ()).split()

    def launcher_config(self, config: Any = None) -> Any:
        """A traitlets ``Config`` for ``engines="slurm"``: our template and batch file."""
        from traitlets.config import Config

        config = config if config is not None else Config()
        config.SlurmEngineSetLauncher.batch_template = ENGINE_TEMPLATE.format(dir=self.dir)
        config.SlurmEngineSetLauncher.batch_file_name = str(self.dir / "engines.sbatch")
        return config

    # -- parts ------------------------------------------------------------------------------
    def _environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def _start_munge(self, munged: str) -> None:
        """munged runs as its own user, with a key of ours (its checks want them owned by it)."""
        try:
            user = pwd.getpwnam("munge")
        except KeyError as exc:
            raise HostsError("there is no 'munge' user: install the Debian package 'munge'") from exc
        where = self.munge_socket.parent
        where.mkdir(mode=0o755)
        key = where / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        for path in (where, key):
            os.chown(path, user.pw_uid, user.pw_gid)
        self._daemons.append(_daemon(
            [munged, "--foreground", f"--socket={self.munge_socket}", f"--key-file={key}",
             f"--pid-file={where / 'munged.pid'}", f"--log-file={where / 'munged.log'}",
             f"--seed-file={where / 'munged.seed'}"], self.dir / "munged.out",
            user=user.pw_uid, group=user.pw_gid, extra_groups=[]))
        deadline = time.monotonic() + START_TIMEOUT
        while not self.munge_socket.exists():
            if self._daemons[-1].poll() is not None or time.monotonic() > deadline:
                raise HostsError(f"munged did not start: {_tail(self.dir / 'munged.out')} "
                                 f"{_tail(where / 'munged.log')}")
            time.sleep(0.05)

    def _write_conf(self, controller_port: int, node_port: int) -> None:
        d = self.dir
        self.conf.write_text(f"""\
ClusterName=nbtasks
SlurmctldHost={socket.gethostname()}({self.network.address})
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
SlurmctldPort={controller_port}
SlurmdPort={node_port}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=10
SlurmdTimeout=30
NodeName={self.node.name} NodeHostname={self.node.name} NodeAddr={self.node.address} CPUs=2 State=UNKNOWN
PartitionName=test Nodes={self.node.name} Default=YES MaxTime=INFINITE State=UP
""")

    def _wait_until_idle(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        state = ""
        while time.monotonic() < deadline:
            for daemon, name in zip(self._daemons[1:], ("slurmctld", "slurmd")):
                if daemon.poll() is not None:
                    raise HostsError(f"{name} exited (code {daemon.returncode}): {_tail(self.dir / (name + '.log'))}")
            state = run(["sinfo", "-h", "-N", "-o", "%T"], check=False, env=self._environ()).strip()
            if state == "idle":
                return
            time.sleep(0.1)
        raise HostsError(f"the Slurm node {self.node.name} is {state or 'unknown'}, not idle, after "
                         f"{START_TIMEOUT:g}s: {_tail(self.dir / 'slurmd.log')}")


def _daemon(argv: list[str], log: Path, **kwargs) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **kwargs)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""
