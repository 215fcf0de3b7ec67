"""The JupyterLab extension (labextension/, the Tasks sidebar) as installed with the package.

`pip install` builds labextension/ into nbtasks/labextension/ and copies that into
``<prefix>/share/jupyter/labextensions/<name>/`` (pyproject.toml's shared-data). These tests
check that JupyterLab finds it enabled and that the copy is the current build. Its
TypeScript unit tests run with `make test-labext` (part of `make test`).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCE = ROOT / "labextension"
BUILD = ROOT / "nbtasks" / "labextension"
NAME = json.loads((SOURCE / "package.json").read_text())["name"]
INSTALLED = pathlib.Path(sys.prefix) / "share" / "jupyter" / "labextensions" / NAME


def clean_env(tmp_path: pathlib.Path) -> dict[str, str]:
    """Jupyter looking only at this interpreter's prefix (no user or system config)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        path = tmp_path / name.lower()
        path.mkdir()
        env[name] = str(path)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    return env


@pytest.fixture(scope="module")
def installed() -> pathlib.Path:
    if not (INSTALLED / "package.json").exists():
        pytest.fail(f"{INSTALLED} is missing: install the project with `pip install -e .` "
                    "(`make setup`), which builds and installs the extension", pytrace=False)
    return INSTALLED


def test_jupyter_lists_the_extension_enabled_and_ok(installed: pathlib.Path,
                                                    tmp_path: pathlib.Path) -> None:
    command = pathlib.Path(sys.executable).parent / "jupyter-labextension"
    if not command.exists():
        pytest.fail("jupyterlab is not installed (the `lab` or `test` extra brings it)", pytrace=False)
    result = subprocess.run([str(command), "list"], env=clean_env(tmp_path), capture_output=True,
                            text=True, timeout=120)
    output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
    line = next((line for line in output.splitlines() if line.strip().startswith(NAME + " ")), None)
    assert line is not None, f"{NAME} not listed:\n{output}"
    version = json.loads((SOURCE / "package.json").read_text())["version"]
    assert f"{NAME} v{version}" in line
    assert "enabled" in line and "OK" in line, line
    assert "(python, nbtasks)" in line, line     # install.json names the Python package


def test_installed_copy_is_the_current_build(installed: pathlib.Path) -> None:
    built = json.loads((BUILD / "package.json").read_text())
    copied = json.loads((installed / "package.json").read_text())
    # The webpack entry point's name carries a hash of the build.
    assert copied["jupyterlab"]["_build"] == built["jupyterlab"]["_build"], (
        f"{installed} holds an older build than {BUILD}: run `make labext` (or `pip install -e .`)")
    entry = installed / copied["jupyterlab"]["_build"]["load"]
    assert entry.is_file(), f"{entry} is missing"
    assert (installed / "static" / "style.js").is_file()


def test_build_is_newer_than_the_sources() -> None:
    newest = max(p.stat().st_mtime for p in (SOURCE / "src").glob("*.ts"))
    assert (BUILD / "package.json").stat().st_mtime >= newest, (
        f"labextension/src changed after the last build: run `make labext`")
