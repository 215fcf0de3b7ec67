"""The API over real runs: runs on the session's cluster write the store (as a
kernel does), the in-process server reads it and cancels through it."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import pytest

import nbtasks as nt

FAILING = 7
N = 40


def squares(x: int, scale: int = 1) -> int:
    if x == FAILING:
        raise ValueError(f"unit {x} refuses")
    print("unit", x)
    return x * x * scale


def sleepy(x: int) -> int:
    time.sleep(0.5)
    return x


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    """Poll ``check`` until it returns something true (the store is written every ~0.5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


async def run_in_store(api, run_id: str, states: tuple[str, ...]) -> dict | None:
    async def check():
        reply = await api(f"runs/{run_id}")
        return reply.body if reply.status == 200 and reply.body["state"] in states else None

    return await until(check)


@pytest.fixture
def failed_run(cluster, store_path, api, jp_asyncio_loop) -> dict:
    """A 40-unit run in which unit 7 failed (the others went on), as the API shows it."""
    run = nt.ParallelTask(squares, divide=range).submit(N, cluster=cluster, store=store_path,
                                                       on_error="continue", progress=False, scale=2)
    assert run.wait(60)
    assert run.state is nt.RunState.FAILED
    stored = jp_asyncio_loop.run_until_complete(run_in_store(api, run.id, ("failed",)))
    if stored is None:
        last = jp_asyncio_loop.run_until_complete(api(f"runs/{run.id}"))
        pytest.fail(f"the failed run never reached the store as failed: {last.status} {last.body}")
    return stored


async def test_failed_run_is_listed_with_its_counts(api, failed_run):
    run_id = failed_run["id"]
    listed = (await api("runs")).body
    assert listed["total"] == 1 and [r["id"] for r in listed["runs"]] == [run_id]
    summary = listed["runs"][0]
    assert summary["name"] == "parallel(squares)" and summary["state"] == "failed"
    assert summary["counts"]["done"] == N - 1 and summary["counts"]["failed"] == 1 and summary["total"] == N
    assert f"unit {FAILING}" in summary["error"] and summary["ended"] >= summary["started"]
    assert summary["cancel_requested"] is False
    assert failed_run["params"] == {"scale": "2"}
    tree = failed_run["tree"]
    assert tree["kind"] == "parallel" and tree["counts"]["failed"] == 1
    assert [c["name"] for c in tree["children"]] == ["squares"]
    assert tree["children"][0]["counts"]["done"] == N - 1


async def test_filters(api, failed_run):
    run_id, notebook = failed_run["id"], failed_run["notebook"]
    assert [r["id"] for r in (await api("runs?state=failed")).body["runs"]] == [run_id]
    assert (await api("runs?state=done")).body == {"runs": [], "total": 0, "offset": 0, "limit": 100}
    assert (await api("runs?state=running")).body["total"] == 0
    if notebook is not None:  # pytest's own script; a notebook's path under Jupyter
        from urllib.parse import quote

        assert (await api(f"runs?notebook={quote(notebook)}")).body["total"] == 1
    assert (await api("runs?notebook=elsewhere.ipynb")).body["total"] == 0
    assert (await api("runs?offset=1")).body["runs"] == []
    assert (await api("runs?limit=1")).body["total"] == 1


async def test_failed_unit_has_its_traceback(api, failed_run):
    page = (await api(f"runs/{failed_run['id']}/units?state=failed")).body
    assert page["total"] == 1 and len(page["units"]) == 1
    unit = page["units"][0]
    assert unit["state"] == "failed" and unit["unit"] == FAILING and unit["input"] == str(FAILING)
    assert unit["error"] == f"ValueError: unit {FAILING} refuses"
    assert "Traceback" in unit["traceback"] and "in squares" in unit["traceback"]
    assert unit["engine"] is not None and unit["host"]


async def test_paging_over_done_units(api, failed_run):
    run_id, seen, offset = failed_run["id"], [], 0
    while True:
        page = (await api(f"runs/{run_id}/units?state=done&limit=10&offset={offset}")).body
        assert page["total"] == N - 1 and page["offset"] == offset and page["limit"] == 10
        if not page["units"]:
            break
        assert len(page["units"]) <= 10
        seen += page["units"]
        offset += 10
    assert [u["unit"] for u in seen] == [x for x in range(N) if x != FAILING]
    assert all(u["state"] == "done" and u["error"] is None for u in seen)
    assert seen[4]["stdout"] == "unit 4\n" and seen[4]["end"] >= seen[4]["start"]
    everything = (await api(f"runs/{run_id}/units?limit=1000")).body
    assert everything["total"] == N and everything["units"][0]["state"] == "failed"
    assert [u["unit"] for u in everything["units"][1:]] == [u["unit"] for u in seen]


async def test_cancelling_a_finished_run_is_409(api, failed_run):
    reply = await api(f"runs/{failed_run['id']}/cancel", method="POST")
    assert reply.status == 409 and "is failed" in reply.body["message"]
    assert (await api(f"runs/{failed_run['id']}")).body["cancel_requested"] is False


async def test_engines_lists_the_cluster(api, failed_run):
    clusters = (await api("engines")).body["clusters"]
    assert len(clusters) == 1 and clusters[0]["id"] == failed_run["cluster"] and clusters[0]["live"]
    engines = clusters[0]["engines"]
    assert len(engines) >= 2 and sum(e["units_done"] for e in engines) >= N - 1


async def test_cancel_through_the_api_stops_the_kernels_run(cluster, store_path, api):
    run = nt.ParallelTask(sleepy).submit(list(range(40)), cluster=cluster, store=store_path, progress=False)
    try:
        assert await run_in_store(api, run.id, ("running",)), "the run never showed as running"
        asked = time.monotonic()
        reply = await api(f"runs/{run.id}/cancel", method="POST", body=b'{"reason": "stopped by a test"}')
        assert reply.status == 202, reply.body
        assert reply.body["id"] == run.id and reply.body["cancel_requested"] is True
        assert reply.body["cancel_reason"] == "stopped by a test" and "tree" in reply.body

        again = await api(f"runs/{run.id}/cancel", method="POST")  # idempotent while live
        assert again.status in (202, 409)

        assert await asyncio.to_thread(run.wait, 5)
        assert run.state is nt.RunState.CANCELLED and run.cancelled()
        assert time.monotonic() - asked < 2.5
        assert run.cancel_reason == "stopped by a test"

        stored = await run_in_store(api, run.id, ("cancelled",))
        assert stored is not None and stored["error"] == "stopped by a test"
        assert stored["counts"]["done"] < 40
        late = await api(f"runs/{run.id}/cancel", method="POST")
        assert late.status == 409 and "is cancelled" in late.body["message"]
    finally:
        run.cancel("test cleanup")
