"""Hosts on one machine: network namespaces on a private bridge, each with its own hostname and
a view of the disk where the client's files are hidden.

    client (root namespace) --- bridge nbtbr<S> 10.77.<S>.1/24 (no route out)
                                   |-- veth nbt<S>v0 --- netns nbt<S>-node1  10.77.<S>.2  "node1"
                                   |-- veth nbt<S>v1 --- netns nbt<S>-node2  10.77.<S>.3  "node2"

Each host is a small holder process (``sleep infinity``) inside its network namespace, with
its own UTS namespace (hostname) and mount namespace (a tmpfs over every hidden path, and an
``/etc/hosts`` naming every host and the client, as a cluster's DNS would). Everything run
"on" a host enters those three namespaces with ``nsenter``. ``S``, the slot, is free on the
machine and reserved under a lock in ``/run/nbtasks-hosts``, so several test sessions can run
at once; a slot whose owner died without cleaning up is reclaimed by the next session.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from .system import HostsError, end_processes, require_program, require_root, run

__all__ = ["Host", "Network"]

STATE_DIR = Path("/run/nbtasks-hosts")
PREFIX = "10.77"  # 10.77.<slot>.0/24: private, and unlikely to be used by anything else
READY_TIMEOUT = 10.0


class Host:
    """One host of a :class:`Network`: a name, an address, processes that run there."""

    def __init__(self, network: "Network", index: int, name: str) -> None:
        self.network = network
        self.name = name
        self.address = f"{PREFIX}.{network.slot}.{index + 2}"
        self.netns = f"nbt{network.slot}-{name}"
        self.veth = f"nbt{network.slot}v{index}"  # its end of the link, in the client's namespace
        #: a directory of this host's own (e.g. its IPython profiles); on the shared disk
        self.home = network.root / name
        self._holder: subprocess.Popen | None = None
        self._own: set[int] = set()  # the holder and the daemons started with daemon()

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.address}>"

    # -- running things there -------------------------------------------------------------
    def command(self, argv: list[str], cwd: str | os.PathLike | None = None) -> list[str]:
        """``argv`` as a command that runs on this host (its network, hostname and disk view)."""
        if self._holder is None:
            raise HostsError(f"{self} is not started")
        return ["nsenter", f"--target={self._holder.pid}", "--net", "--uts", "--mount",
                f"--wd={cwd or self.home}", "--", *map(str, argv)]

    def run(self, argv: list[str], *, cwd: str | os.PathLike | None = None, timeout: float = 30,
            check: bool = True, **kwargs) -> str:
        """Run a command on this host and return its stdout (``HostsError`` if it fails)."""
        return run(self.command(argv, cwd), timeout=timeout, check=check, **kwargs)

    def popen(self, argv: list[str], *, cwd: str | os.PathLike | None = None, **kwargs) -> subprocess.Popen:
        """Start a command on this host; its pid is the command's own (nsenter execs it)."""
        return subprocess.Popen(self.command(argv, cwd), **kwargs)

    def daemon(self, argv: list[str], log: str | os.PathLike, **kwargs) -> subprocess.Popen:
        """Start a long-lived service of the host itself (sshd, slurmd): it does not count among
        :meth:`processes`, and stops with the network. Its output goes to ``log``."""
        with open(log, "ab") as out:
            process = self.popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        self._own.add(process.pid)
        return process

    # -- looking at it ------------------------------------------------------------------
    def pids(self) -> list[int]:
        """Every process running on this host (in its network namespace)."""
        out = run(["ip", "netns", "pids", self.netns], check=False)
        return [int(word) for word in out.split()]

    def processes(self) -> list[psutil.Process]:
        """The live processes on this host that are not the host's own (holder, daemons):
        whatever tests started there, such as engines and the ssh sessions that started them."""
        found = []
        for pid in self.pids():
            if pid in self._own:
                continue
            try:
                process = psutil.Process(pid)
                if process.status() != psutil.STATUS_ZOMBIE:
                    found.append(process)
            except psutil.Error:
                pass
        return found

    # -- its link ------------------------------------------------------------------------
    def cut(self) -> None:
        """Cut this host's link: nothing reaches it, or leaves it, until :meth:`restore`."""
        run(["ip", "link", "set", self.veth, "down"])

    def restore(self) -> None:
        """Bring the link back (packets flow again at once; connections that timed out meanwhile stay dead)."""
        run(["ip", "link", "set", self.veth, "up"])

    @property
    def linked(self) -> bool:
        return run(["ip", "-br", "link", "show", self.veth]).split()[1] == "UP"

    # -- life cycle (by its Network) -----------------------------------------------------
    def _create(self, bridge: str, hosts_file: Path, hidden: list[Path]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        run(["ip", "netns", "add", self.netns])
        run(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns])
        run(["ip", "link", "set", self.veth, "master", bridge, "up"])
        run(["ip", "-n", self.netns, "addr", "add", f"{self.address}/24", "dev", "eth0"])
        run(["ip", "-n", self.netns, "link", "set", "eth0", "up"])
        run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        # no default route: the host reaches the bridge's /24 and nothing else
        script = [f"hostname {shlex.quote(self.name)}", f"mount --bind {shlex.quote(str(hosts_file))} /etc/hosts"]
        script += [f"mount -t tmpfs -o size=256m,mode=0755 nbtasks-hidden {shlex.quote(str(path))}"
                   for path in hidden]
        script += ["echo ready", "exec sleep infinity"]
        self._holder = subprocess.Popen(
            # nsenter, not `ip netns exec`: that remounts /sys, without the cgroup mounts slurmd needs
            ["nsenter", f"--net=/run/netns/{self.netns}", "unshare", "--uts", "--mount", "--propagation", "private",
             "--", "sh", "-ec", " && ".join(script)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._own.add(self._holder.pid)
        line = _read_line(self._holder, READY_TIMEOUT)
        if line != "ready":
            self._holder.kill()
            error = self._holder.stderr.read().decode(errors="replace").strip()
            raise HostsError(f"host {self.name} did not start: {line} {error}")

    def _stop(self) -> None:
        end_processes(self.pids(), grace=2.0)
        if self._holder is not None:
            self._holder.wait(5)
            self._holder.stdout.close()
            self._holder.stderr.close()
            self._holder = None
        self._own.clear()


class Network:
    """A private bridge and ``n`` hosts on it (see the module's docstring).

    ``hide`` lists directories (that exist) the hosts must not read: each host sees an empty
    tmpfs there, writable, its own. The Python environment and the nbtasks checkout stay
    visible (engines import them), so hiding a directory that holds them is refused.
    Use it as a context manager, or ``start()`` and ``close()``; ``close()`` stops every
    process on the hosts and removes what ``start()`` made, also after a half-done start.
    """

    def __init__(self, n: int = 2, *, names: list[str] | None = None,
                 hide: list[str | os.PathLike] = ()) -> None:
        names = list(names) if names is not None else [f"node{i + 1}" for i in range(n)]
        if not names or len(set(names)) != len(names) or socket.gethostname() in names:
            raise ValueError(f"host names must be distinct, and not this machine's name: {names}")
        self.names = names
        self.hidden = [Path(p).resolve() for p in hide]
        for path in self.hidden:
            if not path.is_dir():
                raise ValueError(f"cannot hide {path}: not a directory")
            for needed in (Path(sys.prefix).resolve(), Path(__file__).resolve().parents[2]):
                if needed == path or path in needed.parents:
                    raise ValueError(f"cannot hide {path}: the hosts need {needed} in it")
        self.slot: int | None = None
        self.root: Path | None = None  # the temp dir for everything the hosts' services keep
        self.hosts: list[Host] = []
        self._state_file: Path | None = None

    @property
    def bridge(self) -> str:
        return f"nbtbr{self.slot}"

    @property
    def address(self) -> str:
        """The client's address on the bridge: where the hosts reach this machine."""
        return f"{PREFIX}.{self.slot}.1"

    def __getitem__(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def __repr__(self) -> str:
        return f"<Network {PREFIX}.{self.slot}.0/24 {[h.name for h in self.hosts]}>"

    def __enter__(self) -> "Network":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> "Network":
        require_root("the test hosts")
        for program, package in (("ip", "iproute2"), ("unshare", "util-linux"), ("nsenter", "util-linux")):
            require_program(program, package)
        self.root = Path(tempfile.mkdtemp(prefix="nbtasks-hosts-"))
        self.root.chmod(0o755)  # daemons run as other users (munge) read their files below it
        try:
            self._reserve()
            run(["ip", "link", "add", self.bridge, "type", "bridge"])
            run(["ip", "addr", "add", f"{self.address}/24", "dev", self.bridge])
            run(["ip", "link", "set", self.bridge, "up"])
            self.hosts = [Host(self, i, name) for i, name in enumerate(self.names)]
            hosts_file = self.root / "hosts"
            hosts_file.write_text("127.0.0.1 localhost\n"
                                  f"{self.address} {socket.gethostname()} client\n"
                                  + "".join(f"{h.address} {h.name}\n" for h in self.hosts))
            for host in self.hosts:
                host._create(self.bridge, hosts_file, self.hidden)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every process on the hosts, delete the namespaces, the bridge, the temp dir."""
        if self.slot is None:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
            return
        for host in self.hosts:
            host._stop()
        _remove(self.bridge, [h.netns for h in self.hosts] or _planned(self.slot, self.names), self.root)
        if self._state_file is not None:
            self._state_file.unlink(missing_ok=True)
        self.slot = None
        self.hosts = []

    # -- slots ------------------------------------------------------------------------------
    def _reserve(self) -> None:
        """Take a free slot: no address or route of the machine in its /24, no live owner."""
        STATE_DIR.mkdir(mode=0o700, exist_ok=True)
        with open(STATE_DIR / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _reclaim_abandoned()
            used = run(["ip", "-4", "-o", "addr"]) + run(["ip", "-4", "route"])
            for slot in range(1, 255):
                if (STATE_DIR / f"{slot}.json").exists() or f"{PREFIX}.{slot}." in used \
                        or Path(f"/sys/class/net/nbtbr{slot}").exists():
                    continue
                me = psutil.Process()
                state = {"owner": me.pid, "started": me.create_time(), "bridge": f"nbtbr{slot}",
                         "netns": _planned(slot, self.names), "root": str(self.root)}
                self._state_file = STATE_DIR / f"{slot}.json"
                self._state_file.write_text(json.dumps(state))
                self.slot = slot
                return
        raise HostsError(f"no free {PREFIX}.x.0/24 slot for the test hosts")


def _planned(slot: int, names: list[str]) -> list[str]:
    return [f"nbt{slot}-{name}" for name in names]


def _remove(bridge: str, namespaces: list[str], root: Path | None) -> None:
    existing = set(run(["ip", "netns", "list"], check=False).split())
    slot = bridge.removeprefix("nbtbr")
    for i, netns in enumerate(namespaces):
        if netns in existing:
            end_processes([int(p) for p in run(["ip", "netns", "pids", netns], check=False).split()], grace=2.0)
        veth = f"nbt{slot}v{i}"
        if Path(f"/sys/class/net/{veth}").exists():  # a namespace's devices go only some time after it
            run(["ip", "link", "del", veth], check=False)
        if netns in existing:
            run(["ip", "netns", "del", netns], check=False)
    if Path(f"/sys/class/net/{bridge}").exists():
        run(["ip", "link", "del", bridge], check=False)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


def _reclaim_abandoned() -> None:
    """Remove the hosts of sessions that died without closing them (say, pytest killed)."""
    for state_file in STATE_DIR.glob("*.json"):
        try:
            state = json.loads(state_file.read_text())
            owner = psutil.Process(state["owner"])
            if abs(owner.create_time() - state["started"]) < 0.01 and owner.status() != psutil.STATUS_ZOMBIE:
                continue  # still running: its slot stays taken
        except psutil.Error:
            pass
        except (ValueError, KeyError):
            state_file.unlink(missing_ok=True)
            continue
        _remove(state["bridge"], state["netns"], Path(state["root"]))
        state_file.unlink(missing_ok=True)


def _read_line(process: subprocess.Popen, timeout: float) -> str:
    """The first line a process prints, or what it printed if no full line came within ``timeout``."""
    deadline = time.monotonic() + timeout
    fd = process.stdout.fileno()
    buffer = b""
    while b"\n" not in buffer and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:  # it exited
                break
            buffer += chunk
    return buffer.split(b"\n", 1)[0].decode(errors="replace").strip()
