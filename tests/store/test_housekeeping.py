"""The store keeps to a size limit (the oldest runs' results go first, their records stay),
``prune`` removes whole runs by age or name, never a live one, and ``python -m nbtasks.store``
does both from a shell. Real runs on the session's cluster, into a store of the test's own."""

from __future__ import annotations

import datetime
import os
import sqlite3
import subprocess
import sys
import time

import pytest

import nbtasks as nt
from nbtasks.store import StoreReader, prune, set_size_limit, size_limit, usage
from nbtasks.store.amounts import parse_age, parse_size
from nbtasks.store.housekeeping import DEFAULT_LIMIT, LIMIT_ENV
from nbtasks.store.recorder import Store
from tests.waiting import wait_until

KB = 1000


def payload(x: int) -> bytes:
    """20 kB that cannot be shared with any other unit's."""
    return os.urandom(20 * KB)


def slow_payload(x: int) -> bytes:
    time.sleep(0.3)
    return os.urandom(20 * KB)


def small(x: int) -> bytes:
    return os.urandom(5 * KB)


def big(x: int) -> bytes:
    return os.urandom(1_200 * KB)  # over 1 MiB: a file in <store>-results/


def submit(cluster, store, inputs, fn=payload, **kwargs):
    run = nt.ParallelTask(fn).submit(list(inputs), cluster=cluster, store=store, progress=False, **kwargs)
    run.result(60)
    Store.at(store).flush()
    return run


def blobs_of(store, run_id) -> dict[int, tuple]:
    """blob id -> (dropped, has data) of the run's parts."""
    with sqlite3.connect(store) as conn:
        return {b: (d, has) for b, d, has in conn.execute(
            "SELECT b.id, b.dropped, b.data IS NOT NULL OR b.path IS NOT NULL FROM blobs b "
            "WHERE b.id IN (SELECT blob FROM parts WHERE run = ?)", (run_id,))}


def dropped(store, run_id) -> bool:
    blobs = blobs_of(store, run_id)
    return bool(blobs) and all(d is not None for d, _ in blobs.values())


def kept(store, run_id) -> bool:
    blobs = blobs_of(store, run_id)
    return bool(blobs) and all(d is None for d, _ in blobs.values())


def age(store, run_id, days: float) -> None:
    """Make a run look ``days`` old (nobody waits a month in a test)."""
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE runs SET submitted = submitted - ? WHERE id = ?", (days * 86400, run_id))


# -- sizes, ages, the limit's setting ---------------------------------------------------------------

def test_sizes_and_ages_as_people_write_them():
    assert parse_size("5GB") == 5 * 10 ** 9 and parse_size("5GiB") == 5 * 2 ** 30
    assert parse_size("500M") == 500 * 10 ** 6 and parse_size(" 1.5 tb ") == 1_500_000_000_000
    assert parse_size(1024) == 1024 and parse_size("0") == 0
    assert parse_age("30d") == 30 * 86400 and parse_age("12h") == 43200 and parse_age("90min") == 5400
    assert parse_age(datetime.timedelta(weeks=2)) == 14 * 86400 and parse_age(45) == 45.0
    for bad in ("5 apples", "", "GB", "5iB", "-3GB"):
        with pytest.raises(ValueError, match="not a size"):
            parse_size(bad)
    with pytest.raises(ValueError, match="minutes or months"):
        parse_age("3m")
    with pytest.raises(ValueError, match="0 or more"):
        parse_age(-1)
    with pytest.raises(TypeError):
        parse_age([30])


def test_the_limit_has_a_default_a_setting_in_the_store_and_an_environment_override(store, monkeypatch):
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    assert 0 < size_limit(store) <= DEFAULT_LIMIT
    assert set_size_limit("5MB", store) == 5 * 10 ** 6
    assert size_limit(store) == usage(store).limit == 5 * 10 ** 6  # kept in the store: every reader sees it
    monkeypatch.setenv(LIMIT_ENV, "2GB")
    assert size_limit(store) == 2 * 10 ** 9
    monkeypatch.setenv(LIMIT_ENV, "none")
    assert size_limit(store) is None
    monkeypatch.setenv(LIMIT_ENV, "lots")
    with pytest.raises(ValueError, match=LIMIT_ENV):
        size_limit(store)
    monkeypatch.delenv(LIMIT_ENV)
    assert set_size_limit(None, store) <= DEFAULT_LIMIT
    with pytest.raises(ValueError, match="in-memory"):
        set_size_limit("1GB", ":memory:")


# -- the size limit ---------------------------------------------------------------------------------

def test_over_the_limit_the_oldest_runs_results_go_first_and_their_records_stay(cluster, store, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    set_size_limit(500 * KB, store)  # room for two runs of 200 kB (5 units and the list of them), not three
    first = submit(cluster, store, range(0, 5))
    second = submit(cluster, store, range(10, 15))
    assert kept(store, first.id) and kept(store, second.id)
    third = submit(cluster, store, range(20, 25))
    wait_until(lambda: dropped(store, first.id), 10, "the oldest run's results were dropped")
    assert kept(store, second.id) and kept(store, third.id)
    assert all(not has for _, has in blobs_of(store, first.id).values())  # data gone, not just marked
    assert usage(store).results <= 500 * KB

    reader = StoreReader(store)  # its records stay: the run, its units, their output and engines
    assert reader.run(first.id)["counts"]["done"] == 5
    units = reader.units(first.id)
    assert units["total"] == 5 and all(u["engine"] is not None for u in units["units"])

    again = submit(cluster, store, range(0, 5))  # its results are gone: the units run again
    assert again.reused == 0 and len(again.result()) == 5
    assert "result dropped by the store's size limit" in str(again.explain())
    assert nt.ParallelTask(payload).submit(list(range(20, 25)), cluster=cluster, store=store,
                                           progress=False).wait(60)


def test_a_result_a_newer_run_shares_is_kept(cluster, store, monkeypatch):
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    old = submit(cluster, store, range(5))
    middle = submit(cluster, store, range(10, 15))
    reuser = submit(cluster, store, range(5))  # the newest run names old's results
    assert reuser.reused == 5
    set_size_limit(350 * KB, store)  # 500 kB held: the old run's own result and the middle run's must go
    submit(cluster, store, range(30, 31))
    wait_until(lambda: dropped(store, middle.id), 10, "the unshared older run's results were dropped")
    assert kept(store, old.id)


def test_a_live_run_keeps_its_results_however_small_the_limit(cluster, store, monkeypatch):
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    old = submit(cluster, store, range(5))
    set_size_limit(1, store)
    live = nt.ParallelTask(slow_payload).submit(list(range(100, 112)), cluster=cluster, store=store,
                                                progress=False)
    try:
        wait_until(lambda: blobs_of(store, live.id), 10, "the live run's first units were written")
        wait_until(lambda: dropped(store, old.id), 10, "the old run's results were dropped")
        assert kept(store, live.id) and not live.done()
        pruned = prune(older_than=0, store=store)  # prune, too, leaves a live run alone
        assert pruned.runs == (old.id,) and pruned.live == 1
        assert kept(store, live.id)
    finally:
        assert len(live.result(60)) == 12
    submit(cluster, store, [200])  # once it is over, its results are as droppable as any
    wait_until(lambda: dropped(store, live.id), 10, "the finished run's results were dropped")


def test_a_bad_limit_in_the_environment_warns_once_and_recording_goes_on(cluster, store, monkeypatch, caplog):
    monkeypatch.setenv(LIMIT_ENV, "lots")
    first = submit(cluster, store, range(3))
    second = submit(cluster, store, range(10, 13))
    reader = StoreReader(store)
    assert reader.run(first.id)["state"] == reader.run(second.id)["state"] == "done"
    assert kept(store, first.id) and kept(store, second.id)
    warnings = [r for r in caplog.records if "size limit failed" in r.getMessage()]
    assert len(warnings) == 1 and LIMIT_ENV in warnings[0].getMessage()


def test_big_results_in_files_are_deleted_when_dropped(cluster, store, monkeypatch):
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    results = store + "-results"
    first = submit(cluster, store, range(2), fn=big)
    assert len(os.listdir(results)) >= 1
    before = set(os.listdir(results))
    set_size_limit(6_000 * KB, store)  # a run holds 4.8 MB: its units' and its result's files
    second = submit(cluster, store, range(10, 12), fn=big)
    wait_until(lambda: dropped(store, first.id), 10, "the first run's files were dropped")
    assert kept(store, second.id)
    assert not before & set(os.listdir(results))  # its files are gone from the disk
    assert usage(store).results <= 6_000 * KB


# -- prune --------------------------------------------------------------------------------------------

def test_prune_by_age_and_by_name(cluster, store, monkeypatch):
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    old = submit(cluster, store, range(5))
    other = nt.ParallelTask(big, name="bigger").submit([1], cluster=cluster, store=store, progress=False)
    other.result(60)
    recent = submit(cluster, store, range(10, 15))
    Store.at(store).flush()
    age(store, old.id, 40)
    age(store, other.id, 40)
    files = os.listdir(store + "-results")
    before = usage(store)

    pruned = prune(older_than=datetime.timedelta(days=30), name="parallel(payload)", store=store)  # both must match
    assert pruned.runs == (old.id,) and pruned.bytes >= 100 * KB
    reader = StoreReader(store)
    assert reader.run(old.id) is None and reader.units(old.id) is None
    assert reader.run(recent.id) is not None and kept(store, recent.id)
    assert usage(store).results == before.results - pruned.bytes

    pruned = prune(name="bigger", store=store)
    assert pruned.runs == (other.id,) and pruned.bytes >= 1_200 * KB
    assert not set(files) & set(os.listdir(store + "-results"))
    assert prune(older_than="30d", store=store).runs == ()
    assert [r["id"] for r in reader.runs()["runs"]] == [recent.id]
    with sqlite3.connect(store) as conn:  # nothing of the pruned runs is left behind
        assert conn.execute("SELECT count(*) FROM parts WHERE run != ?", (recent.id,)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM blobs WHERE id NOT IN (SELECT blob FROM parts UNION "
                            "SELECT result_blob FROM runs WHERE result_blob IS NOT NULL)").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM requests WHERE key NOT IN "
                            "(SELECT request_key FROM parts)").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM leaves WHERE key NOT IN "
                            "(SELECT leaf_key FROM parts WHERE leaf_key IS NOT NULL)").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM leaves").fetchone()[0] == 1  # the remaining run's


def test_prune_keeps_what_a_remaining_run_reuses(cluster, store, monkeypatch):
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    first = submit(cluster, store, range(5))
    second = submit(cluster, store, range(5))
    assert second.reused == 5
    age(store, first.id, 10)
    assert prune(older_than="1d", store=store).runs == (first.id,)
    third = submit(cluster, store, range(5))  # still found: through the second run's parts
    assert third.reused == 5


def test_prune_gives_the_space_back(cluster, store, monkeypatch):
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    run = submit(cluster, store, range(100), fn=small)  # 1 MB in the database itself, whatever the chunks
    assert os.path.getsize(store) + os.path.getsize(store + "-wal") > 1_000 * KB
    assert prune(name="parallel(small)", store=store).runs == (run.id,)
    with sqlite3.connect(store) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert os.path.getsize(store) < 300 * KB and os.path.getsize(store + "-wal") < 300 * KB


def test_prune_refuses_unclear_requests(store, tmp_path):
    with pytest.raises(ValueError, match="older_than= and/or name="):
        prune(store=store)
    with pytest.raises(ValueError, match="not an age"):
        prune(older_than="a while", store=store)
    with pytest.raises(TypeError, match="name"):
        prune(name="", store=store)
    with pytest.raises(ValueError, match="in-memory"):
        prune(older_than=0, store=":memory:")
    assert prune(older_than=0, store=store).runs == ()  # no store yet: nothing to do, nothing made
    assert not os.path.exists(store)
    foreign = tmp_path / "notes.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (text)")
    with pytest.raises(ValueError, match="not an nbtasks run store"):
        prune(older_than=0, store=foreign)
    with pytest.raises(ValueError, match="not an nbtasks run store"):
        set_size_limit("1GB", store=foreign)
    with sqlite3.connect(foreign) as conn:  # left as it was
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["notes"]


# -- the command ----------------------------------------------------------------------------------------

def command(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = dict(os.environ)
    environment.pop(LIMIT_ENV, None)
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "nbtasks.store", *args], capture_output=True, text=True,
                          timeout=60, env=environment)


def test_the_command_shows_the_size_and_prunes(cluster, store):
    old = submit(cluster, store, range(5))
    recent = submit(cluster, store, range(10, 15))
    age(store, old.id, 40)

    size = command("size", "--store", store)
    assert size.returncode == 0, size.stderr
    assert "2 run(s)" in size.stdout and "kB of results" in size.stdout

    pruned = command("prune", "--older-than", "30d", "--store", store)
    assert pruned.returncode == 0, pruned.stderr
    assert "removed 1 run(s)" in pruned.stdout and old.id in pruned.stdout
    assert [r["id"] for r in StoreReader(store).runs()["runs"]] == [recent.id]

    limit = command("limit", "5MB", "--store", store)
    assert limit.returncode == 0 and "5.0 MB" in limit.stdout
    assert size_limit(store) == 5 * 10 ** 6

    bad = command("prune", "--older-than", "3 months", "--store", store)
    assert bad.returncode == 2 and "not an age" in bad.stderr and "Traceback" not in bad.stderr
    bare = command("prune", "--store", store)
    assert bare.returncode == 2 and "--older-than" in bare.stderr
    assert "--older-than" in command("prune", "--help").stdout
    assert command().returncode == 2
