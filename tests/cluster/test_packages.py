"""Task packages (``cluster.sync``): folders shipped to engines, re-sent only when they changed.

Code itself needs no sync (tests/cluster/test_travel.py); synced modules are imported there."""

import importlib
import os
import signal
import sys
import time

import pytest

import nbtasks as nt
from nbtasks.core.serialize import UnpicklableError


@pytest.fixture
def local_package(tmp_path, monkeypatch):
    """A package the notebook can import but the engines cannot (yet)."""
    root = tmp_path / "src"
    package = root / "nbt_demo_pkg"
    (package / "lib").mkdir(parents=True)
    (package / "__init__.py").write_text("from .core import triple\n")
    (package / "core.py").write_text("import helper\n\ndef triple(x):\n    return helper.times(x, 3)\n")
    (package / "lib" / "helper.py").write_text("def times(x, k):\n    return x * k\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.syspath_prepend(str(package / "lib"))
    yield package
    for name in [m for m in sys.modules if m.startswith("nbt_demo_pkg") or m == "helper"]:
        del sys.modules[name]


def test_local_code_needs_no_sync_and_synced_files_are_what_engines_import(local_package):
    """Code travels by value; a folder sent with ``cluster.sync`` is imported by engines from
    its files instead, so an edit on disk reaches them with the next sync, reloaded here or not."""
    module = importlib.import_module("nbt_demo_pkg")
    with nt.Cluster(n=2) as own:
        assert nt.task(module.triple).run(2, cluster=own, progress=False, timeout=60) == 6  # no sync
        assert own.sync(local_package) is True
        assert nt.ParallelTask(module.triple).run([1, 2], cluster=own, progress=False, timeout=60) == [3, 6]
        assert own.sync(local_package) is False  # unchanged: nothing re-sent

        (local_package / "lib" / "helper.py").write_text("def times(x, k):\n    return x * k + 1\n")
        assert own.sync(local_package) is True  # changed: the engines load the new code
        assert nt.ParallelTask(module.triple).run([1, 2], cluster=own, progress=False, timeout=60) == [4, 7]

        [first, second] = own.engines
        os.kill(own.client[first].apply_sync(os.getpid), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while len(own.engines) < 2 or first in own.engines:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        results = nt.ParallelTask(module.triple).run(list(range(40)), cluster=own, progress=False, timeout=60)
        assert results == [3 * x + 1 for x in range(40)]  # the newcomer got the package too


def test_a_single_module_and_requirements(tmp_path, monkeypatch, cluster):
    (tmp_path / "nbt_base_mod.py").write_text("BASE = 100\n")
    (tmp_path / "nbt_top_mod.py").write_text("import nbt_base_mod\n\ndef add(x):\n    return x + nbt_base_mod.BASE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    top = importlib.import_module("nbt_top_mod")
    with pytest.raises(ValueError, match="requires \\['nbt_base_mod'\\]"):
        cluster.sync(tmp_path / "nbt_top_mod.py", requires=["nbt_base_mod"])
    cluster.sync(tmp_path / "nbt_base_mod.py")
    cluster.sync(tmp_path / "nbt_top_mod.py", requires=["nbt_base_mod"])
    assert nt.task(top.add).run(1, cluster=cluster, progress=False, timeout=60) == 101


def test_sync_of_nothing_is_a_clear_error(tmp_path, cluster):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cluster.sync(tmp_path / "missing")
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="neither a directory nor a .py module"):
        cluster.sync(tmp_path / "data.csv")


def test_a_module_whose_globals_cannot_travel_by_value_is_synced_instead(tmp_path, monkeypatch, cluster):
    """By value, a function goes with the globals it uses; a module holding a lock cannot,
    so it is refused before dispatch, and once synced the engines import it instead."""
    (tmp_path / "nbt_locked_mod.py").write_text(
        "import threading\n\nLOCK = threading.Lock()\n\n\ndef guarded(x):\n    with LOCK:\n        return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    locked = importlib.import_module("nbt_locked_mod")
    with pytest.raises(UnpicklableError, match="global 'LOCK' of guarded"):
        nt.task(locked.guarded).submit(1, cluster=cluster)
    cluster.sync(tmp_path / "nbt_locked_mod.py")
    assert nt.ParallelTask(locked.guarded).run([1, 2], cluster=cluster, progress=False, timeout=60) == [2, 4]
