"""The store's size and pruning through the API: real runs write the store (as a kernel
does), the in-process server says how much it holds and removes runs by age or name."""

from __future__ import annotations

import os
import sqlite3

import pytest

import nbtasks as nt
from nbtasks.store import LIMIT_ENV, set_size_limit
from nbtasks.store.recorder import Store


def chunky(x: int) -> bytes:
    return os.urandom(10_000)


def submit(cluster, store_path, inputs, name=None):
    run = nt.ParallelTask(chunky, name=name).submit(list(inputs), cluster=cluster, store=store_path, progress=False)
    run.result(60)
    Store.at(store_path).flush()
    return run


async def test_an_empty_store_holds_nothing(api, store_path, monkeypatch):
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    reply = await api("store")
    assert reply.status == 200
    assert reply.body["store"] == store_path and reply.body["runs"] == 0 and reply.body["results"] == 0
    assert 0 < reply.body["limit"] <= 10 * 10 ** 9
    assert (await api("store/prune", method="POST", body=b'{"older_than": 0}')).body == {
        "runs": [], "bytes": 0, "live": 0}


async def test_size_and_prune_by_age_and_name(api, cluster, store_path, monkeypatch):
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    old = submit(cluster, store_path, range(5), name="old")
    kept = submit(cluster, store_path, range(10, 15), name="kept")
    other = submit(cluster, store_path, range(20, 25), name="other")
    with sqlite3.connect(store_path) as conn:
        conn.execute("UPDATE runs SET submitted = submitted - 40 * 86400 WHERE id = ?", (old.id,))
    set_size_limit("5MB", store_path)

    size = (await api("store")).body
    assert size["runs"] == 3 and size["results"] >= 3 * 100_000 and size["limit"] == 5 * 10 ** 6
    assert size["database"] > 0

    pruned = await api("store/prune", method="POST", body=b'{"older_than": 2592000}')
    assert pruned.status == 200 and pruned.body["runs"] == [old.id] and pruned.body["bytes"] >= 100_000
    pruned = await api("store/prune", method="POST", body=b'{"name": "other"}')
    assert pruned.body["runs"] == [other.id]
    assert [r["id"] for r in (await api("runs")).body["runs"]] == [kept.id]
    after = (await api("store")).body
    assert after["runs"] == 1 and after["results"] < size["results"]


async def test_the_limit_the_server_sees(api, store_path, monkeypatch):
    monkeypatch.setenv(LIMIT_ENV, "none")
    assert (await api("store")).body["limit"] is None
    monkeypatch.setenv(LIMIT_ENV, "7GB")
    assert (await api("store")).body["limit"] == 7 * 10 ** 9
    monkeypatch.setenv(LIMIT_ENV, "plenty")
    reply = await api("store")
    assert reply.status == 503 and LIMIT_ENV in reply.body["message"]


@pytest.mark.parametrize("body, message", [
    (b"", "say which runs"), (b"{}", "say which runs"), (b"{not json", "not JSON"), (b"[]", "JSON object"),
    (b'{"older_than": -1}', "older_than"), (b'{"older_than": "30d"}', "older_than"),
    (b'{"older_than": true}', "older_than"), (b'{"older_than": 1e300}', "older_than"),
    (b'{"name": ""}', "name"), (b'{"name": 3}', "name"), (b'{"older_than": 1, "all": true}', "unknown field"),
    (b'{"name": null}', "name"), (b'{"older_than": null, "name": "x"}', "older_than"),
])
async def test_bad_prune_requests(api, body, message):
    reply = await api("store/prune", method="POST", body=body)
    assert reply.status == 400 and message in reply.body["message"]


async def test_a_file_that_is_not_a_store_is_neither_sized_nor_pruned(api, store_path):
    os.makedirs(os.path.dirname(store_path))
    with sqlite3.connect(store_path) as conn:
        conn.execute("CREATE TABLE notes (text)")
    assert (await api("store")).status == 503
    reply = await api("store/prune", method="POST", body=b'{"older_than": 0}')
    assert reply.status == 409 and "not an nbtasks run store" in reply.body["message"]
    with sqlite3.connect(store_path) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["notes"]
