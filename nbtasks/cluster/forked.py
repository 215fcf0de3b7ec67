"""ipyparallel launchers for a local cluster whose controller and engines are forked by a
fork server (``forkserver.py``, ``forks.py``) instead of started as new interpreters.

They behave as ipyparallel's local launchers (pids, signals, stop, output files, the
cluster file) and fall back to them when no fork server serves the cluster or when the
command was changed (``engine_cmd``, ``controller_cmd``: the user's command runs as given).
Engines are started together with the controller and wait for its connection file
themselves, so ``make_ipp_cluster`` turns ipyparallel's ``send_engines_connection_env`` off.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import psutil
from ipyparallel.cluster.launcher import (
    LocalControllerLauncher,
    LocalEngineLauncher,
    LocalEngineSetLauncher,
    ProcessStateError,
    ipcontroller_cmd_argv,
    ipengine_cmd_argv,
)

from .forks import server_for

__all__ = ["ForkedControllerLauncher", "ForkedEngineLauncher", "ForkedEngineSetLauncher"]

CONNECTION_POLL = 0.01  # seconds between two looks for the controller's connection files


class _Forked:
    """The part both launchers share: ``LocalProcessLauncher.start`` with a fork for a Popen."""

    role = ""  # what the fork server makes: "controller" or "engine"
    default_cmd: list[str] = []  # ipyparallel's own command for it
    command = ""  # the launcher's trait holding the command (the user may change it)
    arguments = ""  # the launcher's trait holding the arguments after ``cluster_args``

    def start(self) -> Any:
        server = server_for(self.cluster_id)
        if server is None or list(getattr(self, self.command)) != list(self.default_cmd):
            return super().start()
        if self.state != "before":
            raise ProcessStateError(f"The process was already started and has state: {self.state}")
        env = os.environ.copy()
        env.update(self.get_env())
        self.pid = server.fork(self.role, self.cluster_args + getattr(self, self.arguments), env,
                               os.path.abspath(self.work_dir), self.output_file, **self._fork_options())
        self.process = psutil.Process(self.pid)
        self.notify_start(self.pid)
        self._start_waiting()
        return self.pid

    def _fork_options(self) -> dict[str, Any]:
        return {}


class ForkedControllerLauncher(_Forked, LocalControllerLauncher):
    role = "controller"
    default_cmd = ipcontroller_cmd_argv
    command, arguments = "controller_cmd", "controller_args"

    async def get_connection_info(self, timeout: float | None = None) -> dict:
        """ipyparallel looks for the files every 0.1 s; a forked controller writes them
        sooner than that, and the first result waits for them."""
        deadline = time.monotonic() + (self.connection_info_timeout if timeout is None else timeout)
        paths = list(self.connection_files.values())
        while not all(os.path.exists(p) for p in paths) and time.monotonic() < deadline:
            if self.process is not None and not self.process.is_running():
                break  # ipyparallel's own wait says that the controller stopped
            await asyncio.sleep(CONNECTION_POLL)
        return await super().get_connection_info(timeout=max(0.2, deadline - time.monotonic()))


class ForkedEngineLauncher(_Forked, LocalEngineLauncher):
    role = "engine"
    default_cmd = ipengine_cmd_argv
    command, arguments = "engine_cmd", "engine_args"

    def _fork_options(self) -> dict[str, Any]:
        return {"connection_file": self.connection_files["engine"]}


class ForkedEngineSetLauncher(LocalEngineSetLauncher):
    launcher_class = ForkedEngineLauncher
