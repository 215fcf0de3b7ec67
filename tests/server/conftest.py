"""Fixtures for the server extension: an in-process Jupyter server (pytest-jupyter's
``jp_fetch``) with the extension reading a temporary store, and a real
``jupyter server`` subprocess enabled by the shipped config file.

pytest-jupyter is not a registered plugin and ``pytest_plugins`` is only
allowed in the top-level conftest, so its fixtures and hooks are imported here:
they apply to this folder only (its autouse fixtures close the event loop
after each test, which other folders must not get).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (fixtures and hooks, see above)
from tornado.httpclient import HTTPResponse

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG_FILE = ROOT / "jupyter-config" / "server-config" / "nbtasks.json"
START_TIMEOUT = 60


@pytest.fixture
def store_path(tmp_path: pathlib.Path) -> str:
    """The store the in-process server reads (and the tests' runs write to)."""
    return str(tmp_path / "store" / "runs.db")


@pytest.fixture
def jp_server_config(store_path: str) -> dict:
    return {
        "ServerApp": {"jpserver_extensions": {"nbtasks.server": True}},
        "NbtasksExtension": {"store": store_path},
    }


@dataclass
class Reply:
    """A response, whatever its status (tornado raises on 4xx by default)."""

    status: int
    body: Any
    headers: Any

    @classmethod
    def of(cls, response: HTTPResponse) -> "Reply":
        text = response.body.decode() if response.body else ""
        try:
            body = json.loads(text) if text else None
        except json.JSONDecodeError:
            body = text
        return cls(response.code, body, response.headers)


@pytest.fixture
def api(http_server_client: Any, jp_base_url: str, jp_auth_header: dict) -> Any:
    """``await api("runs?limit=5")`` -> ``Reply``: the path after ``nbtasks/api/`` is sent
    exactly as written (no escaping, so tests can send odd ids); with the token unless
    ``token=False``."""

    async def call(path: str = "", method: str = "GET", token: bool = True, headers: dict | None = None,
                   body: bytes | str | None = None) -> Reply:
        headers = dict(headers or {})
        if token:
            headers.update(jp_auth_header)
        if method == "POST" and body is None:
            body = b""
        response = await http_server_client.fetch(
            f"{jp_base_url}nbtasks/api/{path}", method=method, headers=headers, body=body,
            raise_error=False, follow_redirects=False, request_timeout=20)
        return Reply.of(response)

    return call


# -- a real server in its own process -----------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A ``jupyter server`` subprocess: its API URL, token, store and log."""

    url: str            # http://127.0.0.1:<port>/nbtasks/api
    token: str
    store: str
    log: pathlib.Path
    process: subprocess.Popen

    def get(self, path: str, token: bool = True) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path)
        if token:
            request.add_header("Authorization", f"token {self.token}")
        return _send(request)

    def post(self, path: str, body: dict | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(self.url + path, data=data, method="POST",
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        return _send(request)


def _send(request: urllib.request.Request) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def start_server(home: pathlib.Path, store: str) -> ServerProcess:
    """Start ``python -m jupyter_server`` with every Jupyter directory in ``home``
    and the extension enabled only by the project's config file."""
    config = home / "config"
    (config / "jupyter_server_config.d").mkdir(parents=True)
    shutil.copy(CONFIG_FILE, config / "jupyter_server_config.d" / CONFIG_FILE.name)
    for name in ("data", "runtime", "root", "ipython"):
        (home / name).mkdir()
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"),
               NBTASKS_STORE=store)
    env.pop("JUPYTER_CONFIG_PATH", None)
    port, token = _free_port(), os.urandom(8).hex()
    log = home / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={home / 'root'}", "--allow-root"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = ServerProcess(f"http://127.0.0.1:{port}/nbtasks/api", token, store, log, process)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter server exited:\n{log.read_text()}")
        try:
            if server.get("/")[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"jupyter server did not answer in {START_TIMEOUT} s:\n{log.read_text()}")


def stop_server(server: ServerProcess) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(5)


@pytest.fixture(scope="module")
def server_home() -> Iterator[pathlib.Path]:
    home = pathlib.Path(tempfile.mkdtemp(prefix="nbtasks-test-server-"))
    yield home
    shutil.rmtree(home, ignore_errors=True)
