"""``Cluster``: an ipyparallel cluster started on demand (local engines, or engines on other
hosts through ipyparallel's launchers), or an existing one.

Start-up is tuned for notebooks: a local cluster's controller, engines and nannies are
forked at once from a fork server that imported ipyparallel once (``forkserver.py``), and
get 100 ms heartbeats; engines elsewhere get heartbeats fit for a network and a controller
they can reach (``launchers.py``). The nanny stays: it gives a prompt death notice and lets
cancel interrupt a running unit. The default cluster may be started when nbtasks is
imported (``prestart.py``), and is then stopped if another local cluster starts first.
"""

from __future__ import annotations

import atexit
import enum
import logging
import os
import socket
import threading
import time
from typing import Any

import psutil

from ..core import shared as _shared
from ..core.states import check_transition
from ..core.hooks import hooks
from ..core.serialize import dump
from ..core.travel import imported_on_engines
from .checks import check_engines
from .dispatcher import Dispatcher
from .errors import ClusterError, ClusterStopped, ControllerLost
from .forks import ForkServer, forget as forget_server, give_back as give_back_fork_server, server_for
from .forks import take as take_fork_server
from .launchers import check_options, forkable, launcher_name, make_ipp_cluster, started_here
from .packages import pack
from .processes import OwnProcesses, descendants, in_plain_thread
from .replacements import Replacements
from .shipments import Shipments

__all__ = ["Cluster", "ClusterError", "ClusterState"]

log = logging.getLogger("nbtasks")


def _load_serializer() -> None:
    """ipyparallel imports what it may have to serialize (numpy: a tenth of a second) with
    the first message a client sends; done ahead, it does not delay that message. Not in
    two threads at once: two clusters starting would both import, and one would fail."""
    from ipyparallel.serialize import can

    with _serializer_lock:
        can(None)


_serializer_lock = threading.Lock()


class ClusterState(str, enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"


CONTROLLER_CHECK_EVERY = 0.5  # seconds between two looks at our controller's process
ABORT_WAIT = 2.0  # seconds stop() waits for a start it cut short to give up

_C = ClusterState
_CLUSTER_MOVES = {
    _C.NEW: {_C.STARTING, _C.STOPPED},
    _C.STARTING: {_C.RUNNING, _C.FAILED, _C.STOPPED},
    _C.RUNNING: {_C.STOPPED, _C.FAILED},  # FAILED: its controller died
    _C.FAILED: {_C.STARTING, _C.STOPPED},  # connecting failed: starting a local one may still work
    _C.STOPPED: set(),
}


class Cluster:
    """A set of ipyparallel engines that runs nbtasks units.

    ``Cluster(n)`` describes a local cluster of ``n`` engines (the core count by
    default) that starts on first use, or at ``start()`` / ``with``.
    ``Cluster.connect(...)`` attaches to one that is already running.

    Engines elsewhere come from ipyparallel's launchers, with its option names:
    ``Cluster(n, engines="ssh" | "slurm" | "pbs" | "mpi" | ... | a launcher class,
    controller_ip=..., config=...)``; launcher settings go through ``config``
    (``config.SlurmEngineSetLauncher.timelimit = "1:00:00"``). For SSH,
    ``hosts=["node1", "node2"]`` (``n`` spread over them) or ``{"node1": 4}`` is short
    for ``config.SSHEngineSetLauncher.engines``. Without ``controller_ip``, the
    controller listens where such engines can reach it: for SSH, this machine's address
    on the route to the first host; otherwise every interface (``"*"``), the engines
    finding it by this machine's hostname. They get 1 s heartbeats, and end by
    themselves seconds after their controller does, so none outlives its owner.
    """

    _default: "Cluster | None" = None
    _default_lock = threading.Lock()

    def __init__(self, n: int | None = None, *, engine_timeout: float = 60.0,
                 store: str | os.PathLike | None = None, **ipp_options: Any) -> None:
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"Cluster(n=...) must be a positive int, got {n!r}")
        check_options(n, ipp_options)
        self._n_asked = n  # None: the core count, or the SSH hosts' total (known at start)
        self.n = n or os.cpu_count() or 1
        #: where runs on this cluster are recorded (None: ``$NBTASKS_STORE`` or the default)
        self.store = store
        self.engine_timeout = engine_timeout
        self.ipp_options = ipp_options
        self._state = ClusterState.NEW
        self.client: Any = None
        self._ipp: Any = None  # the ipyparallel.Cluster we started, if any
        self._owned = True
        self._checked: set[int] = set()
        self._processes = OwnProcesses()  # engines we started, and their nannies
        self.engine_info: dict[int, dict[str, Any]] = {}  # id -> host, pid (from the version check)
        self._replacements: Replacements | None = None  # stops and replaces engines that left
        self._replaced: set[int] = set()  # engines that left, handed to _replacements
        self._shipments = Shipments(self._send)  # shared values and task packages
        self._start_lock = threading.Lock()
        self._stop_lock = threading.Lock()
        self._start_error: BaseException | None = None
        self._forks: ForkServer | None = None  # forks a local cluster's processes
        self._prestarted = False  # started when nbtasks was imported, before anyone asked
        self._used = False  # asked for (by a submit, share, sync...): a prestarted one is kept
        self._unreported = False  # failed where no one saw it (a prestart): the next user is told
        self._stopping = False  # stop() was called: a start under way gives up
        self._abandoned = False  # stop() cut a start short and left it to fail by itself
        self._controller_checked = 0.0  # when lost() last looked at the controller process
        self._dispatcher = Dispatcher(self)

    # -- life cycle ---------------------------------------------------------------
    @property
    def state(self) -> ClusterState:
        return self._state

    def _move(self, new: ClusterState) -> None:
        check_transition(self._state, new, _CLUSTER_MOVES, "a cluster")
        self._state = new

    @classmethod
    def default(cls) -> "Cluster":
        """The kernel's shared local cluster, made on first use (or started when nbtasks was
        imported: ``prestart.py``) and kept for its life."""
        with cls._default_lock:
            current = cls._default
            if current is None or current.state is ClusterState.STOPPED \
                    or current.state is ClusterState.FAILED and not current._unreported:
                cls._default = current = cls()
            current._used = True
            return current

    @classmethod
    def prestart(cls) -> "Cluster":
        """Start the default cluster in a background thread (made now if there is none);
        returns at once. A failure is kept for the first use, which raises it."""
        with cls._default_lock:
            cluster = cls._default
            if cluster is None or cluster.state in (ClusterState.STOPPED, ClusterState.FAILED):
                cls._default = cluster = cls()
                cluster._prestarted = True
            elif cluster.state is not ClusterState.NEW:
                return cluster
        threading.Thread(target=cluster._start, kwargs={"quiet": True}, name="nbtasks-prestart",
                         daemon=True).start()
        return cluster

    @classmethod
    def _free_cores(cls, starting: "Cluster") -> None:
        """Another local cluster starts: a prestarted default cluster no one used yet would
        only take cores from it, so it stops (in the background), and is forgotten. If it
        was up, the new cluster gets its fork server, warm."""
        with cls._default_lock:
            unused = cls._default
            if unused is None or unused is starting or not unused._prestarted or unused._used:
                return
            cls._default = None
        log.info("nbtasks: stopping the prestarted default cluster, unused: %r starts", starting)
        with unused._stop_lock:
            forks = unused._forks
            if unused.state is ClusterState.RUNNING and forks is not None:
                unused._forks = None  # its stop ends its processes, not the fork server
                unused._processes.forget(forks.pid)
                forget_server(unused._ipp.cluster_id)
                give_back_fork_server(forks)
        threading.Thread(target=unused.stop, name="nbtasks-stop-unused", daemon=True).start()

    @classmethod
    def connect(cls, profile: str | None = None, cluster_id: str | None = None,
                connection_file: str | os.PathLike | None = None, timeout: float = 10.0,
                n: int | None = None, store: str | os.PathLike | None = None) -> "Cluster":
        """Attach to a running ipyparallel cluster (by profile, cluster id or connection file).

        Waits up to ``timeout`` seconds for ``n`` engines (at least one), then
        checks that every engine has this version of nbtasks.
        """
        import ipyparallel as ipp

        self = cls.__new__(cls)
        cls.__init__(self, n, store=store)
        self._owned = False
        self._move(ClusterState.STARTING)
        try:
            if connection_file is not None:
                client = ipp.Client(str(connection_file), timeout=timeout)
            else:
                client = ipp.Client(profile=profile, cluster_id=cluster_id or "", timeout=timeout)
            self.client = client
            self._wait_for_engines(n or 1, timeout)
            self._check_engines(client.ids)
        except ClusterError:
            self._fail_start()
            raise
        except Exception as exc:
            self._fail_start()
            raise ClusterError(f"cannot connect to the ipyparallel cluster "
                               f"({connection_file or profile or cluster_id or 'default profile'}): {exc}") from exc
        self._move(ClusterState.RUNNING)
        self._report_engines()
        return self

    def start(self) -> "Cluster":
        """Start (or wait for) the engines; returns self. Safe from any thread, idempotent."""
        self.ensure_started()
        return self

    def ensure_started(self) -> None:
        self._start()

    def _start(self, quiet: bool = False) -> None:
        """Start, or wait for the start under way. ``quiet`` (a prestart): a failure is
        logged, kept, and raised to whoever uses the cluster next."""
        with self._start_lock:
            if self.state is ClusterState.RUNNING:
                return
            if quiet and self.state is not ClusterState.NEW:
                return
            if isinstance(self._start_error, ControllerLost):
                raise ControllerLost(str(self._start_error))
            if self.state is ClusterState.FAILED and self._start_error is not None:
                self._unreported = False
                raise ClusterError(f"{self!r} failed to start: {self._start_error}") from self._start_error
            if self.state is ClusterState.STOPPED:
                raise ClusterStopped(f"{self!r} is stopped")
            if self._owned and forkable(self.ipp_options):
                Cluster._free_cores(self)
            self._move(ClusterState.STARTING)
            try:
                in_plain_thread(self._start_owned)
            except BaseException as exc:
                self._start_error = exc
                self._fail_start()
                if quiet:
                    self._unreported = True
                    log.debug("nbtasks: the prestarted cluster did not start", exc_info=True)
                    return
                if isinstance(exc, ClusterError):
                    raise
                raise ClusterError(f"could not start a cluster of {self.n} {self.launcher} engines: {exc}") from exc
            self._move(ClusterState.RUNNING)
        self._dispatcher.start()
        self._report_engines()

    def _report_engines(self) -> None:
        """Let the run store show this cluster's engines (the JupyterLab sidebar does)."""
        if hooks.store is not None and self.store is not False:
            try:
                hooks.store(self.store).watch(self)
            except Exception:
                log.warning("nbtasks: the run store cannot show this cluster's engines", exc_info=True)

    def _start_owned(self) -> None:
        atexit.register(self.stop)
        self._give_up_if_stopping("before it started")
        if forkable(self.ipp_options):  # first: it imports ipyparallel while we do
            self._forks = take_fork_server()
        self._ipp, self.n = make_ipp_cluster(self._n_asked, self.ipp_options, self._forks)
        # a start cut short by stop() (an unused prestart, a prestart at exit) makes ipyparallel
        # warn that the processes it started stopped: expected then, so not shown
        self._ipp.log.addFilter(lambda record: not self._stopping)
        if self._forks is not None and server_for(self._ipp.cluster_id) is not self._forks:
            self._close_forks()  # a profile chose other launchers
        if self._forks is not None:
            self._processes.forked_by(self._forks.pid)
        self._replacements = Replacements(
            self._ipp, lambda: self.state is ClusterState.RUNNING and not self._dispatcher.stopped)
        self._give_up_if_stopping("while it started")
        # start and connect separately: start_and_connect_sync would draw ipyparallel's
        # own engine progress bar in a notebook, stuck at 0% in any saved output
        self._ipp.start_cluster_sync()
        self._processes.remember(started_here(self._ipp))  # from now on, they die with this process
        self._give_up_if_stopping("while it started")
        self.client = self._ipp.connect_client_sync()
        _load_serializer()  # while the engines register
        self._wait_for_engines(self.n, self.engine_timeout)
        self._check_engines(self.client.ids)

    def _give_up_if_stopping(self, when: str) -> None:
        """A start cut short by ``stop()`` gives up at its next step."""
        if self._stopping:
            raise ClusterStopped(f"{self!r} was stopped {when}")

    def _wait_for_engines(self, n: int, timeout: float) -> None:
        try:
            self.client.wait_for_engines(n, timeout=timeout, block=True, interactive=False)
        except Exception as exc:
            raise ClusterError(f"only {len(self.client.ids)} of {n} engine(s) registered within "
                               f"{timeout:g}s") from exc

    def _check_engines(self, ids: list[int], timeout: float = 15.0) -> None:
        """Every engine must import nbtasks at our version, or no work goes there."""
        ids = [i for i in ids if i not in self._checked]
        if not ids:
            return
        found = check_engines(self.client, ids, timeout)
        if self._owned:  # ours to stop: the engines our launchers started here (not an SSH host's pids)
            mine = descendants()
            self._processes.remember([info["pid"] for info in found.values() if info["pid"] in mine])
        self.engine_info.update(found)
        self._checked.update(ids)

    # -- shared data --------------------------------------------------------------------
    def share(self, **values: Any) -> None:
        """Send each value once to every engine (and to engines that join later);
        tasks read it with ``nt.shared("name")``. Sharing a name again replaces it."""
        blobs = {name: dump(value, f"shared value {name!r}") for name, value in values.items()}
        self.ensure_started()
        for name, value in values.items():
            _shared.put(name, value)  # a task called here, in the notebook, sees it too
        self._shipments.share(blobs, self._checked_engines, values)

    def unshare(self, *names: str) -> None:
        """Delete shared values, here and on every engine."""
        for name in names:
            _shared.remove(name)
        running = self.state is ClusterState.RUNNING
        self._shipments.unshare(names, self._checked_engines if running else list)

    def sync(self, path: str | os.PathLike, requires: tuple[str, ...] | list[str] = ()) -> bool:
        """Ship a directory (data files, a ``lib/`` folder) or module to every engine, and to
        engines that join later, so tasks can open or import it there. Code needs no sync:
        local modules travel by value with each task (``core/travel.py``); modules synced
        here are imported by engines from the synced files instead. ``requires`` names
        packages synced before that this one depends on. Returns False when nothing changed."""
        package = pack(path, tuple(requires))
        self.ensure_started()
        changed = self._shipments.sync(package, self._checked_engines)
        imported_on_engines(path)
        return changed

    def shared_digests(self) -> dict[str, bytes]:
        """A digest of each shared value: results that read them depend on it."""
        return self._shipments.digests()

    @property
    def shared(self) -> list[str]:
        """Names of the values shared with this cluster's engines."""
        return list(self._shipments.names())

    def _checked_engines(self) -> list[int]:
        return [i for i in self.engines if i in self._checked]

    def _send(self, ids: list[int], fn: Any, *args: Any) -> Any:
        with self._dispatcher.engines_wanted(ids):  # not behind a lane that goes on and on
            return self.client.direct_view(targets=ids).apply_sync(fn, *args)

    def lane_hosts(self) -> tuple[str, str] | None:
        """Where the dispatcher's lanes listen, and the address engines dial: where the
        controller listens for them, as it runs here (None: a cluster we only connected
        to, whose engines may not reach this machine; its chunks go by apply)."""
        if not self._owned or self._ipp is None:
            return None
        ip = self._ipp.controller_ip or "127.0.0.1"
        if ip in ("*", "0.0.0.0"):  # engines find the controller by this machine's name
            return "*", self._ipp.controller_location or socket.gethostname()
        return ip, ip

    def lost(self) -> Exception | None:
        """A cluster we started whose controller died is failed for good, its engines
        stopped; the dispatcher fails the runs on it (connected clusters: not checked)."""
        if not self._owned or self._ipp is None or self.state is not ClusterState.RUNNING:
            return None
        # the dispatch loop may go round hundreds of times a second: look at most twice
        # (ipyparallel's own exit notice goes to the event loop of a thread long gone)
        now = time.monotonic()
        if now - self._controller_checked < CONTROLLER_CHECK_EVERY:
            return None
        self._controller_checked = now
        controller = getattr(self._ipp.controller, "process", None)
        try:
            if controller is None or controller.is_running() and controller.status() != psutil.STATUS_ZOMBIE:
                return None
        except psutil.Error:  # gone (and reaped)
            pass
        error = ControllerLost(f"the controller of {self!r} died (pid {controller.pid}); "
                               f"runs on it stopped, their finished units are in the store")
        log.warning("nbtasks: %s", error)
        with self._start_lock:
            self._start_error = error
            self._move(ClusterState.FAILED)
        self._processes.reap(grace=0)  # its engines have no controller left to serve
        return error

    def keep_size(self) -> None:
        """A cluster we started replaces engines that left it, so it keeps its size.

        Called on the dispatch thread. An engine that left may still be alive (cut
        off from the controller): it is stopped first, then replaced on its host
        (``replacements.py``); new engines get work once they pass the version check.
        """
        if not self._owned or self._ipp is None or self.state is not ClusterState.RUNNING:
            return
        present = set(self.client.ids)
        for engine in [e for e in self.engine_info if e not in present and e not in self._replaced]:
            self._replaced.add(engine)
            log.info("nbtasks: engine %s of %r left; stopping it for good and starting another", engine, self)
            self._replacements.replace(engine, self.engine_info[engine].get("pid"))

    def usable_engines(self) -> list[int]:
        """Registered engines that passed the version check (new ones are checked here)."""
        if self.client is None:  # it never started
            return []
        ids = list(self.client.ids)
        fresh = [i for i in ids if i not in self._checked]
        if fresh:
            try:
                with self._shipments.lock:  # a newcomer gets shared values and packages before any work
                    self._check_engines(fresh)
                    self._shipments.welcome(fresh)
            except ClusterError as exc:
                log.warning("nbtasks: not using engine(s) %s: %s", fresh, exc)
        return [i for i in ids if i in self._checked]

    def _fail_start(self) -> None:
        self._move(ClusterState.FAILED)
        self._close_client()
        if self._ipp is not None:
            try:
                self._ipp.stop_cluster_sync()
            except Exception:
                log.debug("stopping a half-started cluster failed", exc_info=True)
        self._close_forks()

    def _close_forks(self) -> None:
        """Stop the fork server, and with it whatever it forked that still runs."""
        forks, self._forks = self._forks, None
        if forks is not None:
            if self._ipp is not None:
                forget_server(self._ipp.cluster_id)
            forks.close()

    def _close_client(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                log.debug("closing the ipyparallel client failed", exc_info=True)

    def stop(self) -> None:
        """Fail unfinished runs, close the client, stop engines nbtasks started. Safe from
        any thread; a start under way (a prestart at exit) is cut short first."""
        with self._stop_lock:
            if self.state is ClusterState.STOPPED or self._abandoned:
                return
            self._stopping = True  # a start under way gives up at its next step
            forks = self._forks
            if self.state is ClusterState.STARTING and forks is not None:
                forks.close()  # its processes end, so a start waiting for them fails soon
                # ... or within ipyparallel's own timeouts (a client waits 10 s for a controller
                # that is gone): nothing is left to stop, so the start fails in the background
                if not self._start_lock.acquire(timeout=ABORT_WAIT):
                    self._abandoned = True
                    return
            else:
                self._start_lock.acquire()  # the start under way, if any, ends first
            self._start_lock.release()
            self._stop_now()

    def _stop_now(self) -> None:
        self._dispatcher.stop()
        if self._replacements is not None:
            self._replacements.join(30)  # do not stop the cluster under engines being started
        self._close_client()
        if self._owned and self._ipp is not None:
            try:
                in_plain_thread(self._ipp.stop_cluster_sync)
            except Exception:
                log.warning("nbtasks: stopping the local cluster failed", exc_info=True)
            self._close_forks()  # it ends what is left (the nannies) and exits
            self._processes.reap()
        self._move(ClusterState.STOPPED)
        atexit.unregister(self.stop)

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- the backend protocol -----------------------------------------------------------
    @property
    def owned(self) -> bool:
        """Started by nbtasks (False: connected to a cluster started elsewhere)."""
        return self._owned

    def start_run(self, run: Any) -> None:
        if self.state in (ClusterState.STOPPED, ClusterState.FAILED) and self._owned is False:
            raise ClusterError(f"{self!r} is {self.state.value}")
        self._dispatcher.post("run", run)

    def cancel_run(self, run: Any, reason: str) -> None:
        if not self._dispatcher.stopped:
            self._dispatcher.post("cancel", run, reason)

    # -- looking at it ---------------------------------------------------------------------
    @property
    def engines(self) -> list[int]:
        return [] if self.client is None else list(self.client.ids)

    def engines_status(self) -> list[dict[str, Any]]:
        """One row per engine: id, host, pid, busy, units done (a plain snapshot)."""
        live = self._dispatcher.engine_snapshot()
        rows = []
        for engine in self.engines:
            info = self.engine_info.get(engine, {})
            stats = live.get(engine, {})
            rows.append({"id": engine, "host": info.get("host"), "pid": info.get("pid"),
                         "busy": stats.get("busy", False), "units_done": stats.get("units_done", 0)})
        return rows

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        """In a notebook a cluster shows its engines in a live widget."""
        if hooks.display is None:
            return {"text/plain": repr(self)}
        return hooks.display(self, include, exclude)

    @property
    def profile_dir(self) -> str | None:
        return None if self._ipp is None else self._ipp.profile_dir

    @property
    def cluster_id(self) -> str | None:
        return None if self._ipp is None else self._ipp.cluster_id

    @property
    def launcher(self) -> str:
        """How the engines were started: ``"local"``, ``"ssh"``, ``"slurm"``... (``"connected"``:
        by someone else)."""
        return launcher_name(self.ipp_options.get("engines")) if self._owned else "connected"

    def __repr__(self) -> str:
        where = self.launcher
        return f"<nbtasks.Cluster {where} {self.state.value}, {len(self.engines)}/{self.n} engines>"

