"""``Cluster``: a local ipyparallel cluster started on demand, or an existing one.

Start-up is tuned for notebooks: ipyparallel's default heartbeat period (3 s)
delays engine registration by seconds, so a cluster we start uses a 100 ms
period (engines then register in about a second) and keeps the nanny, which
gives a prompt death notice and lets cancel interrupt a running unit.
"""

from __future__ import annotations

import atexit
import enum
import hashlib
import logging
import os
import threading
import time
from typing import Any

import psutil

from .._version import __version__
from ..core import shared as _shared
from ..core.states import check_transition
from ..core.hooks import hooks
from ..core.serialize import dumps
from .dispatcher import Dispatcher
from .errors import ClusterError, ClusterStopped
from .engine import drop_shared, install_packages, store_shared
from .packages import Package, pack

__all__ = ["Cluster", "ClusterError", "ClusterState"]

log = logging.getLogger("nbtasks")

FAST_CONTROLLER = ["--HeartMonitor.period=100", "--HeartMonitor.max_heartmonitor_misses=50", "--nodb"]


class ClusterState(str, enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"


_C = ClusterState
_CLUSTER_MOVES = {
    _C.NEW: {_C.STARTING, _C.STOPPED},
    _C.STARTING: {_C.RUNNING, _C.FAILED, _C.STOPPED},
    _C.RUNNING: {_C.STOPPED},
    _C.FAILED: {_C.STARTING, _C.STOPPED},  # connecting failed: starting a local one may still work
    _C.STOPPED: set(),
}


class Cluster:
    """A set of ipyparallel engines that runs nbtasks units.

    ``Cluster(n)`` describes a local cluster of ``n`` engines (the core count by
    default) that starts on first use, or at ``start()`` / ``with``.
    ``Cluster.connect(...)`` attaches to one that is already running.
    """

    _default: "Cluster | None" = None
    _default_lock = threading.Lock()

    def __init__(self, n: int | None = None, *, engine_timeout: float = 60.0,
                 store: str | os.PathLike | None = None, **ipp_options: Any) -> None:
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"Cluster(n=...) must be a positive int, got {n!r}")
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
        self._processes: list[psutil.Process] = []
        self.engine_info: dict[int, dict[str, Any]] = {}  # id -> host, pid (from the version check)
        self._replacing: threading.Thread | None = None  # starting engines for dead ones
        self._shared: dict[str, bytes] = {}  # name -> pickled value, for engines that join later
        self._shared_lock = threading.Lock()
        self._packages: dict[str, Package] = {}  # name -> the last version synced
        self._start_lock = threading.Lock()
        self._start_error: BaseException | None = None
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
        """The kernel's shared local cluster, made on first use and kept for its life."""
        with cls._default_lock:
            if cls._default is None or cls._default.state in (ClusterState.STOPPED, ClusterState.FAILED):
                cls._default = cls()
            return cls._default

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
        with self._start_lock:
            if self.state is ClusterState.RUNNING:
                return
            if self.state is ClusterState.FAILED and self._start_error is not None:
                raise ClusterError(f"{self!r} failed to start: {self._start_error}") from self._start_error
            if self.state is ClusterState.STOPPED:
                raise ClusterStopped(f"{self!r} is stopped")
            self._move(ClusterState.STARTING)
            try:
                _in_plain_thread(self._start_local)
            except BaseException as exc:
                self._start_error = exc
                self._fail_start()
                if isinstance(exc, ClusterError):
                    raise
                raise ClusterError(f"could not start a local cluster of {self.n} engines: {exc}") from exc
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

    def _start_local(self) -> None:
        import ipyparallel as ipp
        from traitlets.config import Config

        options = dict(self.ipp_options)
        config = options.pop("config", None) or Config()
        config.LocalEngineSetLauncher.delay = 0
        controller_args = list(options.pop("controller_args", [])) + FAST_CONTROLLER
        options.setdefault("shutdown_atexit", False)  # our own stop() runs at exit, quietly
        self._ipp = ipp.Cluster(n=self.n, delay=0, controller_args=controller_args, config=config,
                                log_level=logging.WARNING, **options)
        atexit.register(self.stop)
        # start and connect separately: start_and_connect_sync would draw ipyparallel's
        # own engine progress bar in a notebook, stuck at 0% in any saved output
        self._ipp.start_cluster_sync()
        self.client = self._ipp.connect_client_sync()
        self._wait_for_engines(self.n, self.engine_timeout)
        self._check_engines(self.client.ids)

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
        view = self.client.direct_view(targets=ids)
        code = ("import os, socket, nbtasks as _nbtasks_probe\n"
                "_nbtasks_probe = (_nbtasks_probe.__version__, os.getpid(), socket.gethostname())")
        try:
            view.execute(code, block=False).get(timeout)
            answers = view.pull("_nbtasks_probe", block=False).get(timeout)
        except Exception as exc:
            text = str(exc)
            if "ModuleNotFoundError" in text or "ImportError" in text \
                    or getattr(exc, "ename", None) in ("ModuleNotFoundError", "ImportError"):
                raise ClusterError(f"engine(s) {ids} cannot import nbtasks: install nbtasks {__version__} "
                                   f"in the engines' Python environment ({text.strip().splitlines()[-1]})") from exc
            raise ClusterError(f"engine(s) {ids} did not answer the nbtasks check within {timeout:g}s: "
                               f"{exc}") from exc
        versions = [version for version, _, _ in answers]
        if self._owned:
            self._remember_processes([pid for _, pid, _ in answers])
        for engine, (_, pid, host) in zip(ids, answers):
            self.engine_info[engine] = {"host": host, "pid": pid}
        wrong = {e: v for e, v in zip(ids, versions) if v != __version__}
        if wrong:
            raise ClusterError(f"engine(s) run another nbtasks version than this client ({__version__}): "
                               + ", ".join(f"engine {e} has {v}" for e, v in wrong.items()))
        self._checked.update(ids)

    def _remember_processes(self, pids: list[int]) -> None:
        """Engines we started and their nannies, to make sure none outlives ``stop()``."""
        for pid in pids:
            try:
                engine = psutil.Process(pid)
                self._processes += [engine, *engine.children(recursive=True)]
            except psutil.Error:
                pass

    def _reap_processes(self, grace: float = 0.5) -> None:
        # a nanny runs in its own session, so stopping the engines' process group
        # misses it; it lingers for seconds, and one was seen hanging on for good
        # after its controller had gone. With the controller stopped it has no job left.
        _, alive = psutil.wait_procs(self._processes, timeout=grace)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        self._processes = []

    # -- shared data --------------------------------------------------------------------
    def share(self, **values: Any) -> None:
        """Send each value once to every engine (and to engines that join later);
        tasks read it with ``nt.shared("name")``. Sharing a name again replaces it."""
        blobs = {name: dumps(value, f"shared value {name!r}") for name, value in values.items()}
        self.ensure_started()
        for name, value in values.items():
            _shared.put(name, value)  # a task called here, in the notebook, sees it too
        with self._shared_lock:
            self._shared.update(blobs)
            ids = [i for i in self.client.ids if i in self._checked]
            if ids:
                self.client.direct_view(targets=ids).apply_sync(store_shared, blobs)

    def unshare(self, *names: str) -> None:
        """Delete shared values, here and on every engine."""
        for name in names:
            _shared.remove(name)
        with self._shared_lock:
            for name in names:
                self._shared.pop(name, None)
            ids = [i for i in self.engines if i in self._checked]
            if ids and self.state is ClusterState.RUNNING:
                self.client.direct_view(targets=ids).apply_sync(drop_shared, list(names))

    def sync(self, path: str | os.PathLike, requires: tuple[str, ...] | list[str] = ()) -> bool:
        """Ship a local module or directory (and its ``lib/``) to every engine, and to
        engines that join later, so tasks can import it. ``requires`` names packages
        synced before that this one depends on. Returns False when nothing changed."""
        package = pack(path, tuple(requires))
        missing = [r for r in package.requires if r not in self._packages]
        if missing:
            raise ValueError(f"cluster.sync: {package.name!r} requires {missing}, not synced yet: "
                             f"sync them first")
        self.ensure_started()
        with self._shared_lock:
            old = self._packages.get(package.name)
            if old is not None and old.digest == package.digest:
                return False
            self._packages[package.name] = package
            ids = [i for i in self.client.ids if i in self._checked]
            if ids:
                self.client.direct_view(targets=ids).apply_sync(install_packages, self._ordered([package.name]))
        return True

    def _ordered(self, names: list[str]) -> list[Package]:
        """Packages with everything they require, dependencies first."""
        out: list[Package] = []

        def visit(name: str) -> None:
            package = self._packages[name]
            for dependency in package.requires:
                visit(dependency)
            if package not in out:
                out.append(package)

        for name in names:
            visit(name)
        return out

    def shared_digest(self) -> bytes:
        """A digest of every shared value: results that read them depend on it."""
        with self._shared_lock:
            h = hashlib.blake2b(digest_size=16)
            for name in sorted(self._shared):
                h.update(name.encode() + b"\0" + self._shared[name])
            return h.digest()

    @property
    def shared(self) -> list[str]:
        """Names of the values shared with this cluster's engines."""
        return sorted(self._shared)

    def keep_size(self) -> None:
        """A cluster we started replaces engines that died, so it keeps its size.

        Called on the dispatch thread; the engines start in the background and
        receive work as soon as they register and pass the version check.
        """
        if not self._owned or self._ipp is None or self.state is not ClusterState.RUNNING:
            return
        if self._replacing is not None and self._replacing.is_alive():
            return
        missing = self.n - len(self.client.ids)
        if missing <= 0:
            return
        log.info("nbtasks: %d engine(s) of %r died; starting replacements", missing, self)

        before = set(self.client.ids)

        def start() -> None:
            # wait until the new engines registered (not for the full size: more may
            # die meanwhile), so the next check does not start the same ones twice
            try:
                self._ipp.start_engines_sync(n=missing)
                deadline = time.monotonic() + self.engine_timeout
                seen: set[int] = set()
                while len(seen) < missing and time.monotonic() < deadline:
                    if self.state is not ClusterState.RUNNING:
                        return
                    seen |= set(self.client.ids) - before
                    time.sleep(0.05)
            except Exception:
                log.warning("nbtasks: replacing engines failed", exc_info=True)

        self._replacing = threading.Thread(target=start, name="nbtasks-replace", daemon=True)
        self._replacing.start()

    def usable_engines(self) -> list[int]:
        """Registered engines that passed the version check (new ones are checked here)."""
        ids = list(self.client.ids)
        fresh = [i for i in ids if i not in self._checked]
        if fresh:
            try:
                with self._shared_lock:  # a newcomer gets the shared values before any work
                    self._check_engines(fresh)
                    if self._shared:
                        self.client.direct_view(targets=fresh).apply_sync(store_shared, dict(self._shared))
                    if self._packages:
                        self.client.direct_view(targets=fresh).apply_sync(
                            install_packages, self._ordered(list(self._packages)))
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

    def _close_client(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                log.debug("closing the ipyparallel client failed", exc_info=True)

    def stop(self) -> None:
        """Fail unfinished runs, close the client, stop engines nbtasks started."""
        if self.state is ClusterState.STOPPED:
            return
        self._dispatcher.stop()
        if self._replacing is not None:
            self._replacing.join(30)  # do not stop the cluster under engines being started
        self._close_client()
        if self._owned and self._ipp is not None:
            try:
                _in_plain_thread(self._ipp.stop_cluster_sync)
            except Exception:
                log.warning("nbtasks: stopping the local cluster failed", exc_info=True)
            self._reap_processes()
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

    def __repr__(self) -> str:
        where = "local" if self._owned else "connected"
        return f"<nbtasks.Cluster {where} {self.state.value}, {len(self.engines)}/{self.n} engines>"


def _in_plain_thread(fn: Any) -> Any:
    """Run ``fn`` in a thread without an event loop (ipyparallel's *_sync
    helpers refuse to run inside a running loop, as in a notebook cell)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="nbtasks-cluster", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")
