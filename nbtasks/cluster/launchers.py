"""Which of ipyparallel's launchers starts a cluster's engines, and what follows from where they run.

    Cluster(n, engines=..., hosts=..., **ipp options)
        -> check_options()              a launcher ipyparallel knows, hosts for SSH
        -> make_ipp_cluster()           ipyparallel.Cluster with ipyparallel's own options, plus:
             local engines ("local", the default)      100 ms heartbeats; controller and engines
                                                       forked at once by a fork server (forked.py)
             engines elsewhere (ssh, slurm, pbs, mpi,  a controller bound where they can reach it,
               sge, lsf, htcondor, a class...)         1 s heartbeats, engines that give up alone
        -> started_here()               the processes the guard may stop (never a remote pid)

Remote engines cannot be stopped from here when their owner dies without stopping them (a
kernel killed with SIGKILL): they stop by themselves after missing the controller's
heartbeats, which the guard's end of the controller silences.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import socket
import subprocess
from typing import Any

import psutil

from .processes import descendants

__all__ = ["LOCAL_CONTROLLER", "NETWORK_CONTROLLER", "NETWORK_ENGINE", "check_options", "forkable",
           "is_local", "launcher_name", "make_ipp_cluster", "ssh_engines", "started_here"]

log = logging.getLogger("nbtasks")

# Local engines: ipyparallel's default period (3 s) delays registration by seconds; at 100 ms
# engines register in about a second, and 50 misses tolerate a 2 s stall (a busy engine still
# answers: its heart beats in a zmq thread).
LOCAL_CONTROLLER = ["--HeartMonitor.period=100", "--HeartMonitor.max_heartmonitor_misses=50", "--nodb"]
# Over a network 100 ms beats are noise and lost packets; a host whose link is cut is noticed in
# about 4 s at 1 s x 3 misses (36 s at ipyparallel's defaults), its units then run elsewhere.
NETWORK_CONTROLLER = ["--HeartMonitor.period=1000", "--HeartMonitor.max_heartmonitor_misses=3", "--nodb"]
# An engine checks for the controller's beats every period + 0.5 s: after 2 empty checks (no
# beat for 3 s: the controller drops it about then too) it exits, so remote engines end 3-4.5 s
# after their controller, however that ended (their nannies ~3 s later: ipyparallel lingers to
# tell the dead controller). An engine busy in a unit checks when the unit returns.
NETWORK_ENGINE = ["--IPEngine.max_heartbeat_misses=2"]


def check_options(n: int | None, options: dict[str, Any]) -> None:
    """A clear error now, not when the cluster starts: a launcher ipyparallel does not have,
    or ``hosts`` that are not a list of names (or a dict) for SSH engines. (Without options,
    nothing to check: ipyparallel is not imported yet, the cluster may start sooner.)"""
    if not options:
        return
    from ipyparallel.cluster.launcher import BaseLauncher
    from ipyparallel.traitlets import Launcher

    engines = options.get("engines")
    if isinstance(engines, str):
        known = Launcher(entry_point_group="ipyparallel.engine_launchers").load_entry_points()
        if engines.lower() not in known and "." not in engines:  # a name, or 'package.module.Class'
            raise ValueError(f"Cluster(engines={engines!r}): ipyparallel has no such engine launcher; "
                             f"installed: {', '.join(sorted(known))} (or pass a launcher class)")
    elif not (engines is None or isinstance(engines, type) and issubclass(engines, BaseLauncher)):
        raise TypeError(f"Cluster(engines=...) takes a launcher name or class, got {engines!r}")
    if options.get("hosts") is not None:
        if launcher_name(engines) != "ssh":
            raise ValueError(f"Cluster(hosts=...) is for engines='ssh', not {launcher_name(engines)!r}")
        ssh_engines(options["hosts"], n)


def launcher_name(engines: Any) -> str:
    """The short name of an ``engines`` option: ``"local"``, ``"ssh"``, ``"slurm"``..."""
    from ipyparallel.cluster.launcher import abbreviate_launcher_class

    if engines is None:
        return "local"
    if isinstance(engines, type):
        return abbreviate_launcher_class(engines).rsplit(":", 1)[-1]
    return str(engines).lower()


def is_local(launcher_class: type) -> bool:
    """Engines started as child processes on this machine (what ``Cluster(n)`` does)."""
    from ipyparallel.cluster.launcher import LocalEngineSetLauncher, SSHLauncher

    return issubclass(launcher_class, LocalEngineSetLauncher) and not issubclass(launcher_class, SSHLauncher)


def ssh_engines(hosts: Any, n: int | None) -> dict[str, int]:
    """``SSHEngineSetLauncher.engines`` from ``hosts``: a dict (name -> engines) as it is, or a
    list of names sharing ``n`` engines round-robin (one per host when ``n`` is None)."""
    if isinstance(hosts, dict):
        return dict(hosts)
    if isinstance(hosts, str) or not hosts or not all(isinstance(h, str) for h in hosts):
        raise ValueError(f"Cluster(hosts=...) takes a list of host names or a dict of name -> engines, "
                         f"got {hosts!r}")
    hosts = list(hosts)
    total = n or len(hosts)
    return {h: total // len(hosts) + (i < total % len(hosts)) for i, h in enumerate(hosts)
            if total // len(hosts) + (i < total % len(hosts))}


def forkable(options: dict[str, Any]) -> bool:
    """Whether ``Cluster(**options)`` may fork its processes: local engines, ipyparallel's
    own controller (a profile's config may still say otherwise: ``make_ipp_cluster`` checks),
    where fork servers work (``forks.SUPPORTED``)."""
    from .forks import SUPPORTED

    return SUPPORTED and options.get("engines") in (None, "local") and options.get("controller") is None


def make_ipp_cluster(n: int | None, options: dict[str, Any], forks: Any = None) -> tuple[Any, int]:
    """An ipyparallel ``Cluster`` (not started) for ``Cluster(n, **options)``, and the number
    of engines it starts. ipyparallel's options pass through; what they leave unsaid is
    chosen for where the engines run (see the module's docstring). With ``forks`` (a
    ``ForkServer``), ipyparallel's plain local launchers become forked ones (then
    ``forks.server_for(cluster.cluster_id)`` is ``forks``)."""
    import ipyparallel as ipp
    from traitlets.config import Config

    options = dict(options)
    hosts = options.pop("hosts", None)
    config = copy.deepcopy(options.pop("config", None) or Config())  # the caller's stays as it was
    user_controller_args = list(options.pop("controller_args", []))
    options.setdefault("shutdown_atexit", False)  # nbtasks' own stop() runs at exit, quietly
    cluster = ipp.Cluster(n=n, delay=0, config=config, log_level=logging.WARNING, **options)
    launcher = cluster.engine_launcher_class
    config = cluster.config  # with the profile's config merged in: launchers read theirs from it
    if hosts is not None:  # check_options made sure the launcher is SSH's
        config.SSHEngineSetLauncher.engines = ssh_engines(hosts, n)
    if is_local(launcher):
        config.LocalEngineSetLauncher.delay = 0
        cluster.controller_args = _with_defaults(LOCAL_CONTROLLER, user_controller_args)
        _use_forks(cluster, forks)
    else:
        cluster.controller_args = _with_defaults(NETWORK_CONTROLLER, user_controller_args)
        section = config[launcher.__name__]
        user_engine_args = section.get("engine_args") or config.EngineLauncher.get("engine_args") or []
        section.engine_args = _with_defaults(NETWORK_ENGINE, list(user_engine_args))
        if not cluster.controller_ip:
            cluster.controller_ip = _reachable_ip(launcher, config)
    # like ipyparallel: as many engines as this machine has cores, or the SSH hosts' total
    cluster.n = n or _ssh_total(launcher, config) or psutil.cpu_count() or 1
    return cluster, cluster.n


def _with_defaults(defaults: list[str], given: list[str]) -> list[str]:
    """Our ``--Class.option=value`` defaults that the user's arguments leave unset, then the
    user's: a controller or engine refuses an option given twice."""
    set_by_user = {arg.split("=", 1)[0] for arg in given if arg.startswith("--")}
    return [arg for arg in defaults if arg.split("=", 1)[0] not in set_by_user] + list(given)


def _use_forks(cluster: Any, forks: Any) -> None:
    """Fork the controller and engines through ``forks`` where ipyparallel's plain local
    launchers would start them (not where a profile or the options chose others)."""
    from ipyparallel.cluster.launcher import LocalControllerLauncher, LocalEngineSetLauncher

    from . import forked
    from .forks import serve

    plain_engines = cluster.engine_launcher_class is LocalEngineSetLauncher
    plain_controller = cluster.controller_launcher_class is LocalControllerLauncher
    if forks is None or not (plain_engines or plain_controller):
        return
    serve(cluster.cluster_id, forks)
    if plain_controller:
        cluster.controller_launcher_class = forked.ForkedControllerLauncher
    if plain_engines:
        cluster.engine_launcher_class = forked.ForkedEngineSetLauncher
        cluster.send_engines_connection_env = False  # they start with the controller, and wait for its file


def started_here(cluster: Any) -> list[int]:
    """Pids of the controller and engine processes ``cluster`` started as our descendants
    (local engines, mpiexec, the controller): never an SSH launcher's pid, which is remote."""
    from .forks import server_for

    mine = descendants()
    launchers = [cluster.controller, server_for(cluster.cluster_id)]
    for engine_set in (cluster.engines or {}).values():
        launchers += [engine_set, *getattr(engine_set, "launchers", {}).values()]
    pids = [getattr(launcher, "pid", None) for launcher in launchers]
    return [pid for pid in pids if isinstance(pid, int) and pid in mine]


def _ssh_total(launcher: type, config: Any) -> int | None:
    from ipyparallel.cluster.launcher import SSHEngineSetLauncher

    if not issubclass(launcher, SSHEngineSetLauncher):
        return None
    engines = config.SSHEngineSetLauncher.get("engines") or {}
    total = sum(v.get("n", 1) if isinstance(v, dict) else v for v in engines.values())
    return total or None


def _reachable_ip(launcher: type, config: Any) -> str:
    """Where the controller listens when the user did not say (``controller_ip``).

    SSH engines: this machine's address on the route to the first engine host (as ssh
    resolves it, aliases of ``~/.ssh/config`` included), so the engines reach it whatever
    their own name resolution. Other launchers place engines on hosts unknown here: every
    interface (``*``), and engines find the controller by this machine's hostname
    (ipyparallel's ``controller_location``), as nodes of a batch system usually can.
    """
    from ipyparallel.cluster.launcher import SSHEngineSetLauncher

    if issubclass(launcher, SSHEngineSetLauncher):
        engines = config.SSHEngineSetLauncher.get("engines") or {}
        if engines:
            first = next(iter(engines)).split("@")[-1].split(":")[0]
            ssh = list(config.SSHLauncher.get("ssh_cmd") or ["ssh"])
            args = list(config.SSHEngineSetLauncher.get("ssh_args") or config.SSHLauncher.get("ssh_args") or [])
            address = _address_towards(_ssh_hostname(ssh, args, first))
            if address is not None:
                return address
    return "*"


def _ssh_hostname(ssh: list[str], args: list[str], host: str) -> str:
    """The address ssh would connect to for ``host`` (``ssh -G`` applies its config)."""
    try:
        out = subprocess.run([*ssh, *args, "-G", host], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return host
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        if key == "hostname" and value:
            return value.strip()
    return host


def _address_towards(host: str) -> str | None:
    """This machine's address on the route to ``host`` (a UDP connect sends nothing)."""
    try:
        family, _, _, _, target = socket.getaddrinfo(host, 22, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(target[:2])
            address = probe.getsockname()[0]
    except OSError as exc:
        log.info("nbtasks: no route to %s (%s): the controller listens on every interface", host, exc)
        return None
    return "127.0.0.1" if ipaddress.ip_address(address).is_loopback else address
