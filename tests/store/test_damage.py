"""A damaged, foreign or unwritable store never loses a run: set aside or kept in memory."""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import shutil
import sqlite3
import subprocess
import warnings

import pytest

import nbtasks as nt
from nbtasks.store import StoreReader, schema
from nbtasks.store.reader import StoreUnreadable
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
    where = mounted("size=512k")
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


# -- a valid store in a place that cannot be written -------------------------------------------

#: how the store's files were left: by a closed store (the file alone), by a live kernel
#: (with its -wal and -shm), or with changes in a -wal whose -shm is gone
LEFT = {"closed": ["runs.db"], "live": ["runs.db", "runs.db-wal", "runs.db-shm"],
        "wal-without-shm": ["runs.db", "runs.db-wal"]}


def read_only_copy(source: str, where, left: str) -> str:
    """Copy the store at ``source`` into the tmpfs ``where`` as ``left`` describes, then make
    it read-only: modes 0444/0555, and a read-only remount (root ignores the modes)."""
    stage = os.path.join(os.path.dirname(source), "stage.db")
    staged = sqlite3.connect(stage)
    staged.execute("PRAGMA journal_mode = WAL")
    with contextlib.closing(sqlite3.connect(source)) as live:
        live.backup(staged)  # a consistent snapshot, though the kernel's store thread still writes
    if left == "closed":
        staged.close()  # the last connection folds the -wal into the file and removes both
    assert os.path.exists(stage + "-wal") == (left != "closed")
    for name in LEFT[left]:
        shutil.copyfile(stage + name[len("runs.db"):], where / name)
        os.chmod(where / name, 0o444)
    staged.close()
    os.chmod(where, 0o555)
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
    return str(where / "runs.db")


def contents(where) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in where.iterdir()}


@pytest.fixture
def stored(cluster, tmp_path):
    """A store of its own holding two finished runs, and what a reader sees of it."""
    path = str(tmp_path / "runs.db")
    squares(cluster, path)
    squares(cluster, path, n=5)
    Store.at(path).flush()
    reader = StoreReader(path)
    runs = reader.runs()
    assert runs["total"] == 2
    return path, runs, {r["id"]: reader.units(r["id"], limit=100) for r in runs["runs"]}


@pytest.mark.parametrize("left", ["closed", "live"])
def test_read_only_store_is_read_with_all_its_runs(stored, mounted, left):
    source, runs, units = stored
    path = read_only_copy(source, mounted("size=4m"), left)
    reader = StoreReader(path)
    assert reader.runs() == runs
    for run in runs["runs"]:
        assert reader.run(run["id"])["total"] == run["total"]
        assert reader.units(run["id"], limit=100) == units[run["id"]]


@pytest.mark.parametrize("left", ["closed", "live"])
def test_read_only_store_is_never_taken_for_damage(cluster, stored, mounted, monkeypatch, caplog, left):
    where = mounted("size=4m")
    path = read_only_copy(stored[0], where, left)
    before = contents(where)

    def set_aside(path: str, why: str) -> str:
        raise AssertionError(f"a read-only store was taken for a damaged one: {why}")

    monkeypatch.setattr(schema, "_set_aside", set_aside)
    with caplog.at_level(logging.WARNING, logger="nbtasks"), \
            pytest.warns(RuntimeWarning, match="cannot be written"):
        assert squares(cluster, path) == [x * x for x in range(20)]
    store = Store.at(path)
    assert store.in_memory and "cannot be written" in store.warning
    assert "moved to" not in caplog.text and "damaged" not in caplog.text
    assert contents(where) == before  # nothing moved aside, not a byte changed
    assert StoreReader(path).runs() == stored[1]  # the run just made lives in memory only


def test_store_that_cannot_be_read_raises_naming_path_and_cause(stored, mounted):
    path = read_only_copy(stored[0], mounted("size=4m"), "wal-without-shm")
    reader = StoreReader(path)
    for query in (reader.runs, reader.clusters, lambda: reader.run("0123456789ab")):
        with pytest.raises(StoreUnreadable, match=f"run store {path} cannot be read: .*-shm"):
            query()


@pytest.mark.parametrize("kind", ["missing", "garbage", "foreign", "folder"])
def test_reader_reads_no_store_as_empty_and_raises_when_it_cannot_read(tmp_path, kind):
    path = tmp_path / "runs.db"
    if kind == "garbage":
        path.write_bytes(b"this is not SQLite" * 100)
    elif kind == "foreign":
        with contextlib.closing(sqlite3.connect(path)) as other:
            other.execute("CREATE TABLE photos (id INTEGER, name TEXT)")
    elif kind == "folder":
        path.mkdir()  # a folder where the file should be
    reader = StoreReader(path)
    if kind == "folder":
        with pytest.raises(StoreUnreadable, match=f"run store {path} cannot be read"):
            reader.runs()
    else:
        assert reader.runs()["total"] == 0 and reader.clusters() == [] and reader.run("0123456789ab") is None


def test_a_store_of_an_older_schema_keeps_its_runs_and_gains_the_new_columns(cluster, tmp_path):
    """A user's months of results survive an upgrade of nbtasks."""
    path = tmp_path / "runs.db"
    old_tables = (pathlib.Path(__file__).parent / "schema1.sql").read_text()  # as nbtasks made it then
    with sqlite3.connect(path) as old:
        old.executescript(old_tables)
        old.execute("INSERT INTO meta VALUES ('app', 'nbtasks'), ('schema', '1')")
        old.execute("INSERT INTO runs (id, name, params, tree, counts, state, submitted, updated) "
                    "VALUES ('0123456789ab', 'before', '{}', '{}', '{}', 'done', 1.0, 1.0)")
    assert squares(cluster, str(path)) == [x * x for x in range(20)]
    Store.at(str(path)).flush()
    assert len({run["name"] for run in StoreReader(str(path)).runs()["runs"]} - {"before"}) == 1
    with sqlite3.connect(path) as new:
        assert dict(new.execute("SELECT key, value FROM meta"))["schema"] == str(schema.SCHEMA_VERSION)
        assert "leaf_key" in {row[1] for row in new.execute("PRAGMA table_info(parts)")}
