"""Watching an ipyparallel controller from outside: the messages it handles and the CPU it,
its engines and the client use (``bench/scale.py``'s measuring instruments).

- Requests: the hub's own count (``Client.queue_status``: requests completed per engine); each
  is a message in and its reply out.
- IOPub: a SUB socket of our own on the controller's IOPub port counts every message by type.
- CPU (psutil; Linux counts 10 ms ticks): the hub (the controller's main process), its child
  processes (relays, schedulers, heart monitor), the engines and their nannies (found by
  ``$IPP_CLUSTER_ID`` and in ipyparallel's cluster file), this client without the counting
  thread, and nbtasks' store thread.
- The controller's log: it writes a line per request and per IOPub message it cannot file.
"""

from __future__ import annotations

import collections
import contextlib
import glob
import json
import os
import re
import threading
import time
from typing import Any, Iterator

__all__ = ["IopubCounter", "Watch", "client_file", "cluster_processes", "controller_pid", "iopub_url", "messages",
           "recorded_pids"]

Result = dict[str, Any]

_MSG_TYPE = re.compile(rb'"msg_type"\s*:\s*"([^"]+)"')


class IopubCounter:
    """Counts every message the controller's IOPub relay publishes, by type, on a socket of
    its own (the client's IOPub socket is ipyparallel's; this one only counts)."""

    def __init__(self, url: str) -> None:
        import zmq

        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.RCVHWM = 0
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.connect(url)
        self._counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.native_id: int | None = None  # so its CPU is not counted as the client's
        self._thread = threading.Thread(target=self._loop, name="scale-iopub-counter", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        self.native_id = threading.get_native_id()
        while not self._stop.is_set():
            if not self._socket.poll(100):
                continue
            frames = self._socket.recv_multipart()
            try:
                header = frames[frames.index(b"<IDS|MSG>") + 2]
                match = _MSG_TYPE.search(header)
                kind = match.group(1).decode() if match else "?"
            except (ValueError, IndexError):
                kind = "?"
            with self._lock:
                self._counts[kind] += 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._socket.close(linger=0)
        self._context.term()


def cpu_seconds(proc: Any) -> float:
    import psutil

    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


def cluster_processes(cluster_id: str) -> list[Any]:
    """The processes of one ipyparallel cluster on this host (controller and its children,
    engines, nannies): ipyparallel gives each ``$IPP_CLUSTER_ID`` in its environment."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if "ipyparallel" not in " ".join(proc.info["cmdline"] or []):
            continue
        try:
            if proc.environ().get("IPP_CLUSTER_ID") == cluster_id:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def recorded_pids(profile_dir: str, cluster_id: str) -> tuple[int | None, list[int]]:
    """The controller's pid and the engines' pids as ipyparallel's cluster file records them
    (``security/cluster-<id>.json``, what ``ipcluster list`` reads). It holds for processes an
    ``$IPP_CLUSTER_ID`` search misses: forked ones (nbtasks' fork server) keep the environment
    and command line of the process they were forked from."""
    path = os.path.join(profile_dir, "security", f"cluster-{cluster_id}.json")
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None, []
    controller = ((record.get("controller") or {}).get("state") or {}).get("pid")
    engines = []
    for engine_set in ((record.get("engines") or {}).get("sets") or {}).values():
        engines += [e.get("pid") for e in (engine_set.get("engines") or {}).values()]
        engines.append(engine_set.get("pid"))
    return (controller if isinstance(controller, int) and controller > 0 else None,
            [pid for pid in engines if isinstance(pid, int) and pid > 0])


def controller_pid(profile_dir: str, cluster_id: str) -> int:
    """The pid of the cluster's controller: from the cluster file, else the one process with
    ``$IPP_CLUSTER_ID`` and "controller" in its command line whose parent is not one too."""
    recorded, _ = recorded_pids(profile_dir, cluster_id)
    if recorded is not None:
        return recorded
    controllers = [p for p in cluster_processes(cluster_id) if "controller" in " ".join(p.cmdline())]
    pids = {p.pid for p in controllers}
    roots = [p.pid for p in controllers if p.ppid() not in pids]
    if len(roots) != 1:
        raise RuntimeError(f"expected one controller of cluster {cluster_id}, found {len(roots)}")
    return roots[0]


class Watch:
    """CPU of the controller (hub and children), the engines and this client, and the
    messages the controller handled, over a stretch of time."""

    def __init__(self, client: Any, iopub: IopubCounter, cluster_id: str, log_dir: str) -> None:
        import psutil

        self.client = client
        self.iopub = iopub
        self.cluster_id = cluster_id
        self.me = psutil.Process()
        self.profile_dir = os.path.dirname(log_dir)
        self.hub = psutil.Process(controller_pid(self.profile_dir, cluster_id))
        self.children = {p.pid: p for p in self.hub.children(recursive=True)}
        self.log_dir = log_dir
        #: CPU seconds spent so far, i.e. on starting: registering every engine, the check
        self.spent = {"hub": cpu_seconds(self.hub), "engines": sum(map(cpu_seconds, self._engines())),
                      "controller_children": sum(map(cpu_seconds, self.children.values()))}

    def _engines(self) -> list[Any]:
        """Engines (and nannies) found by ``$IPP_CLUSTER_ID``, and those the cluster file records
        with what they started (forked engines' nannies are the fork server's: not counted)."""
        import psutil

        found = {p.pid: p for p in cluster_processes(self.cluster_id)}
        for pid in recorded_pids(self.profile_dir, self.cluster_id)[1]:
            with contextlib.suppress(psutil.Error):
                engine = psutil.Process(pid)
                found.update((p.pid, p) for p in [engine, *engine.children(recursive=True)])
        return [p for pid, p in found.items() if pid != self.hub.pid and pid not in self.children]

    def _client_cpu(self) -> tuple[float, float]:
        """This process's CPU without the counting thread, and the part of it nbtasks' store thread used."""
        store = next((t.native_id for t in threading.enumerate() if t.name == "nbtasks-store"), None)
        total, recording = cpu_seconds(self.me), 0.0
        for thread in self.me.threads():
            if thread.id == self.iopub.native_id:
                total -= thread.user_time + thread.system_time
            elif thread.id == store:
                recording = thread.user_time + thread.system_time
        return total, recording

    def _requests(self) -> int:
        status = self.client.queue_status()
        return sum(v["completed"] for k, v in status.items() if k != "unassigned")

    def _log_bytes(self) -> int:
        """The controller writes a line per request and per IOPub message it cannot file."""
        return sum(os.path.getsize(f) for f in glob.glob(os.path.join(self.log_dir, "ipcontroller-*.log")))

    def _sample(self) -> dict[str, Any]:
        return {"t": time.perf_counter(), "requests": self._requests(), "iopub": self.iopub.counts(),
                "client": self._client_cpu(), "hub": cpu_seconds(self.hub), "log": self._log_bytes(),
                "children": {pid: cpu_seconds(p) for pid, p in self.children.items()},
                "engines": {p.pid: cpu_seconds(p) for p in self._engines()}}

    @contextlib.contextmanager
    def over(self, out: Result) -> Iterator[None]:
        """Fill ``out`` with what happened while the block ran."""
        time.sleep(0.3)  # IOPub messages of what came before are counted before the start
        before = self._sample()
        t0 = time.perf_counter()
        yield
        wall = out.get("wall", time.perf_counter() - t0)  # the block may time the part that matters
        time.sleep(0.3)  # the run's last IOPub messages (status idle) reach the counter
        after = self._sample()
        span = after["t"] - before["t"]
        iopub = {k: after["iopub"].get(k, 0) - before["iopub"].get(k, 0) for k in after["iopub"]}
        children = [after["children"][pid] - before["children"].get(pid, 0.0) for pid in after["children"]]
        engines = sum(after["engines"][pid] - before["engines"].get(pid, 0.0) for pid in after["engines"])
        out.update(wall=wall, span=span, requests=after["requests"] - before["requests"],
                   log_bytes=after["log"] - before["log"],
                   iopub={k: v for k, v in iopub.items() if v}, cpu={
                       "client": after["client"][0] - before["client"][0], "hub": after["hub"] - before["hub"],
                       "store": after["client"][1] - before["client"][1],
                       "children": sum(children), "busiest_child": max(children, default=0.0),
                       "engines": engines})


def messages(sample: Result) -> int:
    """Messages through the controller: each request in and its reply out, and every IOPub message."""
    return 2 * sample["requests"] + sum(sample["iopub"].values())


def client_file(profile_dir: str, cluster_id: str) -> str:
    found = glob.glob(os.path.join(profile_dir, "security", f"ipcontroller-{cluster_id}-client.json"))
    if not found:
        raise RuntimeError(f"no client connection file for cluster {cluster_id!r} in {profile_dir}")
    return found[0]


def iopub_url(connection_file: str) -> str:
    with open(connection_file) as f:
        info = json.load(f)
    return f"{info['interface']}:{info['iopub']}"
