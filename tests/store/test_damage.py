"""A damaged, foreign or unwritable store never loses a run: set aside or kept in memory."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import warnings

import pytest

import nbtasks as nt
from nbtasks.store import StoreReader
from nbtasks.store.recorder import Store


def square(x: int) -> int:
    return x * x


def squares(cluster, store, n=20):
    return nt.ParallelTask(square).submit(list(range(n)), cluster=cluster, store=store,
                                          progress=False).result(60)


@pytest.mark.parametrize("kind", ["garbage", "foreign"])
def test_damaged_or_foreign_file_is_set_aside_and_a_fresh_store_started(cluster, tmp_path, caplog, kind):
    path = tmp_path / "runs.db"
    if kind == "garbage":
        path.write_bytes(b"SQLite format 3\x00" + os.urandom(5000))
    else:
        with sqlite3.connect(path) as other:
            other.execute("CREATE TABLE photos (id INTEGER, name TEXT)")
            other.execute("INSERT INTO photos VALUES (1, 'cat')")
    original = path.read_bytes()
    with caplog.at_level(logging.WARNING, logger="nbtasks"):
        assert squares(cluster, str(path)) == [x * x for x in range(20)]
    assert "moved to" in caplog.text
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("runs.db.damaged-") and
               not p.name.endswith(("-wal", "-shm"))]
    assert aside.read_bytes() == original  # kept as it was, for the user to look at
    Store.at(str(path)).flush()
    assert StoreReader(str(path)).runs()["total"] == 1


@pytest.fixture
def mounted(tmp_path):
    """A small tmpfs the test can fill or make read-only (needs root, as on CI)."""
    made = []

    def mount(options: str):
        where = tmp_path / f"mnt{len(made)}"
        where.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
        made.append(where)
        return where

    yield mount
    for where in made:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_read_only_place_keeps_records_in_memory_with_a_warning(cluster, mounted):
    where = mounted("ro,size=1m")
    path = str(where / "runs.db")
    with pytest.warns(RuntimeWarning, match="cannot be written"):
        assert squares(cluster, path) == [x * x for x in range(20)]
    store = Store.at(path)
    assert store.in_memory and "cannot be written" in store.warning
    again = nt.ParallelTask(square).submit(list(range(20)), cluster=cluster, store=path, progress=False)
    assert again.result(60) == [x * x for x in range(20)] and again.reused == 20  # memory still reuses


def test_full_disk_degrades_to_memory_and_the_run_completes(cluster, mounted):
    where = mounted("size=256k")
    path = str(where / "runs.db")
    squares(cluster, path)  # fine while there is room
    blob = nt.ParallelTask(lambda x: os.urandom(200_000)).submit(list(range(8)), cluster=cluster,
                                                                  store=path, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(blob.result(60)) == 8
        Store.at(path).flush()
    store = Store.at(path)
    assert store.in_memory and "full" in store.warning
    assert any("cannot be written" in str(w.message) for w in caught)
