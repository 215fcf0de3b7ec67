"""sshd on every host of a :class:`~tests.hosts.netns.Network`, and what ipyparallel's SSH
launcher needs to start engines there.

Each sshd has its own config, host key, pid file and log under ``<network.root>/<host>/ssh``,
listens on the host's address only and lets in one key, the client's. The client's
``ssh_config`` names each host (``ssh -F <config_file> node1``), so the launcher's
``engines`` dict uses host names, as it would with a user's ``~/.ssh/config``. ssh sessions
get the host's own ``IPYTHONDIR`` (``<network.root>/<host>/ipython``).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from .netns import Host, Network
from .system import HostsError, require_program, run, wait_for_port

__all__ = ["SSH"]

START_TIMEOUT = 10.0


class SSH:
    """sshd on each host (``start()``/``close()``, or ``with``); ``close()`` stops them."""

    def __init__(self, network: Network) -> None:
        if network.root is None:
            raise HostsError("start the network before its sshd")
        self.network = network
        self.dir = network.root / "ssh-client"
        self.key = self.dir / "id_ed25519"
        #: the client's ssh_config: pass it as ``ssh -F config_file``
        self.config_file = self.dir / "ssh_config"
        self._daemons: dict[str, Any] = {}

    def __enter__(self) -> "SSH":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> "SSH":
        sshd = require_program("/usr/sbin/sshd", "openssh-server")
        keygen = require_program("ssh-keygen", "openssh-client")
        require_program("ssh", "openssh-client")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self.dir.mkdir(mode=0o700, exist_ok=True)
        run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "nbtasks-test-client", "-f", str(self.key)])
        self._write_client_config()
        try:
            for host in self.network.hosts:
                self._daemons[host.name] = host.daemon([sshd, "-D", "-f", self._write_server_config(host, keygen)],
                                                       log=self._dir(host) / "sshd.log")
            for host in self.network.hosts:
                wait_for_port(host.address, 22, START_TIMEOUT, f"sshd on {host.name}", self._daemons[host.name])
                got = run(self.command(host.name, ["hostname"]), timeout=START_TIMEOUT).strip()
                if got != host.name:
                    raise HostsError(f"ssh {host.name} reached a host named {got!r}")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the sshd daemons (their sessions' processes stop with the network)."""
        for daemon in self._daemons.values():
            daemon.terminate()
        for daemon in self._daemons.values():
            daemon.wait(5)
        self._daemons.clear()

    # -- for tests and launchers --------------------------------------------------------------
    @property
    def ssh_args(self) -> list[str]:
        """Arguments for ``ssh`` and ``scp`` (ipyparallel's ``SSHLauncher.ssh_args``/``scp_args``)."""
        return ["-F", str(self.config_file)]

    def command(self, host: str, argv: list[str]) -> list[str]:
        """An ssh command line that runs ``argv`` on ``host`` (a name of the network); quoted,
        since ssh joins its arguments into one line for the remote shell."""
        return ["ssh", *self.ssh_args, host, "--", shlex.join(argv)]

    def profile_dir(self, host: str) -> str:
        """Where the SSH launcher keeps a cluster's files on ``host`` (its ``remote_profile_dir``):
        one per host, or hosts on the shared disk would overwrite each other's copies."""
        return str(self.network[host].home / "ipython" / "profile_nbtasks")

    def engines(self, per_host: int = 1, hosts: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """``SSHEngineSetLauncher.engines``: ``per_host`` engines on each host (default: every host)."""
        return {name: {"n": per_host, "remote_profile_dir": self.profile_dir(name)}
                for name in (hosts or [h.name for h in self.network.hosts])}

    def launcher_config(self, per_host: int = 1, hosts: list[str] | None = None, config: Any = None) -> Any:
        """A traitlets ``Config`` for ``engines="ssh"``: ssh/scp through our config file, the
        engines' Python (this one: the hosts share the disk), ``per_host`` engines on each host."""
        from traitlets.config import Config

        config = config if config is not None else Config()
        config.SSHLauncher.ssh_args = self.ssh_args
        config.SSHLauncher.scp_args = self.ssh_args
        config.SSHLauncher.remote_python = sys.executable
        config.SSHEngineSetLauncher.engines = self.engines(per_host, hosts)
        return config

    # -- files ---------------------------------------------------------------------------------
    def _dir(self, host: Host) -> Path:
        path = host.home / "ssh"
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def _write_client_config(self) -> None:
        hosts = "".join(f"Host {h.name}\n    HostName {h.address}\n" for h in self.network.hosts)
        self.config_file.write_text(
            hosts
            + "Host *\n"
            "    User root\n"
            f"    IdentityFile {self.key}\n"
            "    IdentitiesOnly yes\n"
            "    StrictHostKeyChecking no\n"
            "    UserKnownHostsFile /dev/null\n"
            "    GlobalKnownHostsFile /dev/null\n"
            "    BatchMode yes\n"
            "    ConnectTimeout 5\n"
            "    LogLevel ERROR\n")

    def _write_server_config(self, host: Host, keygen: str) -> str:
        where = self._dir(host)
        host_key = where / "ssh_host_ed25519_key"
        run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", host.name, "-f", str(host_key)])
        authorized = where / "authorized_keys"
        authorized.write_text(self.key.with_suffix(".pub").read_text())
        ipython = host.home / "ipython"
        ipython.mkdir(exist_ok=True)
        config = where / "sshd_config"
        config.write_text(
            f"ListenAddress {host.address}:22\n"
            f"HostKey {host_key}\n"
            f"PidFile {where / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {authorized}\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "UseDNS no\n"
            "PrintMotd no\n"
            "MaxStartups 100\n"
            "Subsystem sftp internal-sftp\n"  # scp speaks SFTP since OpenSSH 9
            f"SetEnv IPYTHONDIR={ipython}\n")
        return str(config)
