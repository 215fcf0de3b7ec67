"""The OpenAPI document against a real ``jupyter server`` process (enabled by the
shipped config file) reading real runs: schemathesis generates requests from
the document, valid and invalid, and checks every answer against it."""

from __future__ import annotations

import re
import time

import hypothesis
import pytest
import schemathesis

import nbtasks as nt
from nbtasks.server import handlers, openapi

from .conftest import ServerProcess, start_server, stop_server


def flaky_square(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    print("unit", x)
    return x * x


def sleepy(x: int) -> int:
    time.sleep(0.5)
    return x


@pytest.fixture(scope="module")
def server(cluster, server_home) -> ServerProcess:
    """A server process over a store holding a failed run, a done run and a cluster."""
    store = str(server_home / "runs.db")
    failed = nt.ParallelTask(flaky_square, divide=range).submit(12, cluster=cluster, store=store,
                                                               on_error="continue", progress=False)
    done = nt.ContainerTask(nt.ParallelTask(flaky_square), sum).submit([1, 2], cluster=cluster, store=store,
                                                                       progress=False)
    assert failed.wait(60) and done.result(60) == 5
    process = start_server(server_home, store)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # until the store has both finished
        status, body = process.get("/runs?limit=10")
        if status == 200 and sorted(r["state"] for r in body["runs"]) == ["done", "failed"]:
            break
        time.sleep(0.1)
    else:
        stop_server(process)
        pytest.fail(f"runs never reached the store: {body}")
    process.runs = {r["state"]: r["id"] for r in body["runs"]}
    yield process
    stop_server(process)


def test_document_is_valid_openapi():
    schemathesis.openapi.from_dict(openapi.document()).validate()


def test_every_route_is_documented():
    """The handlers' URL table and the document's paths are the same set of endpoints."""
    table = [(re.compile(pattern), cls) for pattern, cls, _ in handlers.handlers("/", None)]
    *endpoints, (_, catch_all) = table
    assert catch_all is handlers.NotFoundHandler
    served = set()
    for path in openapi.document()["paths"]:
        url = f"/{handlers.API_PATH}{path}".replace("{run_id}", "0123456789ab")
        cls = next(cls for regex, cls in table if regex.fullmatch(url))
        assert cls is not catch_all, f"{path} is documented but not served"
        served.add(cls)
    assert served == {cls for _, cls in endpoints}, "a handler serves an undocumented path"


def test_extension_loaded_from_the_config_file(server):
    status, body = server.get("/")
    assert status == 200 and body["version"] == nt.__version__ and body["store"] == server.store
    log = server.log.read_text()
    assert "nbtasks.server | extension was successfully loaded" in log
    assert "Traceback" not in log


def test_server_process_serves_the_real_runs(server):
    status, failed = server.get(f"/runs/{server.runs['failed']}")
    assert status == 200 and failed["counts"]["failed"] == 1 and failed["counts"]["done"] == 11
    status, units = server.get(f"/runs/{server.runs['failed']}/units?state=failed")
    assert units["units"][0]["error"] == "ValueError: three"
    status, tree = server.get(f"/runs/{server.runs['done']}")
    assert [c["kind"] for c in tree["tree"]["children"]] == ["parallel", "leaf"]
    assert server.get("/runs", token=False)[0] == 403


def test_cancel_from_another_process(cluster, server):
    """The kernel (this process) cancels its run when the server process asks through the store."""
    run = nt.ParallelTask(sleepy).submit(list(range(30)), cluster=cluster, store=server.store, progress=False)
    try:
        deadline = time.monotonic() + 10
        while server.get(f"/runs/{run.id}")[1].get("state") != "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        asked = time.monotonic()
        status, body = server.post(f"/runs/{run.id}/cancel", {"reason": "from the server process"})
        assert status == 202 and body["cancel_requested"]
        assert run.wait(5) and run.cancelled()
        assert time.monotonic() - asked < 2.5
    finally:
        run.cancel("test cleanup")


# loaded from the package's document, not from a fixture: schemathesis's lazy
# (fixture) schemas need a pytest internal that pytest 9.2 no longer has
api_schema = schemathesis.openapi.from_dict(openapi.document())
# pruning is fuzzed last (test_prune_matches_its_document): it may remove the runs the others read
reading_schema = api_schema.exclude(operation_id="pruneRuns")
pruning_schema = api_schema.include(operation_id="pruneRuns")


@reading_schema.parametrize()
@hypothesis.settings(max_examples=30, deadline=None, database=None,
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_api_matches_its_document(case, server):
    # the document allows the token as a header or a query parameter; schemathesis fills the
    # parameter with random text, which would make most requests a plain 403: send the real one
    response = case.call(base_url=server.url, headers={"Authorization": f"token {server.token}"},
                         params={"token": server.token}, timeout=20)
    case.validate_response(response)


@pytest.mark.parametrize("path, method, parameters, query", [
    ("/runs", "GET", {}, {}),
    ("/runs", "GET", {}, {"state": "failed", "limit": 1}),
    ("/runs/{run_id}", "GET", {"run_id": "failed"}, {}),
    ("/runs/{run_id}", "GET", {"run_id": "done"}, {}),
    ("/runs/{run_id}/units", "GET", {"run_id": "failed"}, {}),
    ("/runs/{run_id}/units", "GET", {"run_id": "failed"}, {"state": "done", "offset": 5, "limit": 3}),
    ("/runs/{run_id}/units", "GET", {"run_id": "done"}, {}),
    ("/runs/{run_id}/cancel", "POST", {"run_id": "failed"}, {}),
    ("/engines", "GET", {}, {}),
    ("/store", "GET", {}, {}),
    ("/", "GET", {}, {}),
    ("/openapi.json", "GET", {}, {}),
])
def test_real_runs_match_the_document(server, path, method, parameters, query):
    """The fuzzing above mostly meets unknown ids: check the answers about real runs too."""
    ids = {name: server.runs[which] for name, which in parameters.items()}
    case = api_schema[path][method].Case(path_parameters=ids, query=query)
    response = case.call(base_url=server.url, headers={"Authorization": f"token {server.token}"}, timeout=20)
    assert response.status_code == (409 if method == "POST" else 200)
    case.validate_response(response)


def test_a_real_prune_matches_the_document(server):
    case = api_schema["/store/prune"]["POST"].Case(body={"name": "no task has this name"},
                                                   media_type="application/json")
    response = case.call(base_url=server.url, headers={"Authorization": f"token {server.token}"}, timeout=20)
    assert response.status_code == 200 and response.json() == {"runs": [], "bytes": 0, "live": 0}
    case.validate_response(response)


@pruning_schema.parametrize()
@hypothesis.settings(max_examples=30, deadline=None, database=None,
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_prune_matches_its_document(case, server):
    """Last in this module: what it generates may remove the runs the tests above read."""
    response = case.call(base_url=server.url, headers={"Authorization": f"token {server.token}"},
                         params={"token": server.token}, timeout=20)
    case.validate_response(response)
