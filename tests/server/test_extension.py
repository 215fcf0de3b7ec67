"""Loading the extension: entry points, the shipped config file, the store setting,
and an import that stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from jupyter_server.extension.manager import ExtensionPackage

from nbtasks.server import _jupyter_server_extension_points
from nbtasks.server.extension import SETTINGS_KEY, load

from .conftest import CONFIG_FILE


def test_entry_points_validate_with_jupyter_server():
    assert _jupyter_server_extension_points() == [{"module": "nbtasks.server"}]
    assert ExtensionPackage(name="nbtasks.server", enabled=True).validate()


def test_config_file_enables_the_extension():
    config = json.loads(CONFIG_FILE.read_text())
    assert config == {"ServerApp": {"jpserver_extensions": {"nbtasks.server": True}}}


def test_importing_the_extension_loads_no_kernel_side_modules():
    code = ("import sys, nbtasks.server, nbtasks.server.extension, nbtasks.server.handlers\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'ipyparallel', 'zmq', 'ipykernel', 'ipywidgets', 'IPython'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    bare = "import sys, nbtasks.server\nprint('jupyter_server' in sys.modules, 'tornado' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", bare], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


class TestDefaultStore:
    """Without ``NbtasksExtension.store`` the API reads the kernels' default store."""

    @pytest.fixture(autouse=True)
    def store_env(self, tmp_path, monkeypatch):
        path = str(tmp_path / "from-env" / "runs.db")
        monkeypatch.setenv("NBTASKS_STORE", path)
        return path

    @pytest.fixture
    def jp_server_config(self):
        return {"ServerApp": {"jpserver_extensions": {"nbtasks.server": True}}}

    async def test_store_from_environment(self, api, store_env):
        assert (await api("")).body["store"] == store_env


async def test_loading_twice_registers_once(api, jp_serverapp, store_path):
    service = jp_serverapp.web_app.settings[SETTINGS_KEY]
    assert load(jp_serverapp) is service and service.store_path == store_path
    assert (await api("runs")).status == 200
