"""The REST API in a real (in-process) Jupyter server: authentication on every
route, JSON answers for good and bad requests, never a 500."""

from __future__ import annotations

import os
import re

import pytest

import nbtasks
from nbtasks.server import openapi

RUN = "0123456789ab"  # a well-formed id no store has

# every documented operation, with a well-formed id: each must refuse a request without the token
OPERATIONS = sorted(
    (method.upper(), path.lstrip("/").replace("{run_id}", RUN))
    for path, item in openapi.document()["paths"].items()
    for method in item if method in ("get", "post")
)


def test_operations_listed():
    assert ("POST", f"runs/{RUN}/cancel") in OPERATIONS and ("GET", "engines") in OPERATIONS
    assert ("GET", "store") in OPERATIONS and ("POST", "store/prune") in OPERATIONS
    assert len(OPERATIONS) == 9


# -- authentication ------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [*OPERATIONS, ("GET", "no/such/thing"), ("POST", "runs")])
async def test_every_route_refuses_requests_without_token(api, method, path):
    reply = await api(path, method=method, token=False)
    assert reply.status == 403
    assert reply.headers["Content-Type"].startswith("application/json") and "message" in reply.body


@pytest.mark.parametrize("method, path", OPERATIONS)
async def test_a_wrong_token_is_refused(api, method, path):
    reply = await api(path, method=method, token=False, headers={"Authorization": "token not-the-token"})
    assert reply.status == 403


async def test_token_as_query_parameter(api, jp_serverapp):
    reply = await api(f"runs?token={jp_serverapp.identity_provider.token}", token=False)
    assert reply.status == 200 and reply.body["runs"] == []


async def _login(api, http_server_client, jp_base_url):
    """A browser's state: the login cookie (from a token request) and an ``_xsrf`` cookie."""
    reply = await api("")
    login = reply.headers["Set-Cookie"].split(";")[0]
    page = await http_server_client.fetch(jp_base_url + "login", raise_error=False, follow_redirects=False)
    xsrf = next(c for c in page.headers.get_list("Set-Cookie") if c.startswith("_xsrf=")).split(";")[0]
    return login, xsrf, xsrf.split("=", 1)[1]


async def test_cookie_get_works_but_post_needs_xsrf(api, http_server_client, jp_base_url):
    login, xsrf, xsrf_value = await _login(api, http_server_client, jp_base_url)
    assert (await api("runs", token=False, headers={"Cookie": login})).status == 200

    no_xsrf = await api(f"runs/{RUN}/cancel", method="POST", token=False, headers={"Cookie": login})
    assert no_xsrf.status == 403 and "_xsrf" in no_xsrf.body["message"]
    bad_xsrf = await api(f"runs/{RUN}/cancel", method="POST", token=False,
                         headers={"Cookie": f"{login}; {xsrf}", "X-XSRFToken": "2|00000000|" + "0" * 32 + "|1"})
    assert bad_xsrf.status == 403 and "XSRF" in bad_xsrf.body["message"]
    good_xsrf = await api(f"runs/{RUN}/cancel", method="POST", token=False,
                          headers={"Cookie": f"{login}; {xsrf}", "X-XSRFToken": xsrf_value})
    assert good_xsrf.status == 404  # past authentication: the run is unknown


async def test_a_cookie_alone_without_login_is_refused(api, http_server_client, jp_base_url):
    _, xsrf, xsrf_value = await _login(api, http_server_client, jp_base_url)
    reply = await api(f"runs/{RUN}/cancel", method="POST", token=False,
                      headers={"Cookie": xsrf, "X-XSRFToken": xsrf_value})
    assert reply.status == 403


# -- an empty store ------------------------------------------------------------------------------

async def test_info(api, store_path):
    reply = await api("")
    assert reply.status == 200
    assert reply.body == {"version": nbtasks.__version__, "store": store_path, "store_exists": False,
                          "openapi": "openapi.json"}
    assert (await api("")).body == (await api("")).body


async def test_openapi_document_served(api, jp_base_url):
    reply = await api("openapi.json")
    assert reply.status == 200 and reply.body["openapi"].startswith("3.")
    assert reply.body["servers"][0]["variables"]["base_url"]["default"] == jp_base_url
    expected = openapi.document()
    expected["servers"] = reply.body["servers"]
    assert reply.body == expected


async def test_empty_store(api):
    assert (await api("runs")).body == {"runs": [], "total": 0, "offset": 0, "limit": 100}
    assert (await api("runs?state=running&limit=5&offset=3")).body == {"runs": [], "total": 0, "offset": 3,
                                                                       "limit": 5}
    assert (await api("engines")).body == {"clusters": []}


@pytest.mark.parametrize("method, path", [("GET", f"runs/{RUN}"), ("GET", f"runs/{RUN}/units"),
                                          ("POST", f"runs/{RUN}/cancel")])
async def test_unknown_run_is_404(api, method, path):
    reply = await api(path, method=method)
    assert reply.status == 404 and reply.body["message"] == f"no run {RUN!r} in the store"


# -- bad input: 4xx with a JSON message, never 500 ----------------------------------------------

BAD_REQUESTS = [
    ("runs?state=bogus", 400, "state must be one of"),
    ("runs?state=", 400, "state"),
    ("runs?limit=0", 400, "limit"),
    ("runs?limit=1001", 400, "limit"),
    ("runs?limit=99999999999999999999999999", 400, "limit"),
    ("runs?limit=abc", 400, "limit"),
    ("runs?limit=%201", 400, "limit"),
    ("runs?limit=1.5", 400, "limit"),
    ("runs?offset=-1", 400, "offset"),
    ("runs?offset=1e3", 400, "offset"),
    ("runs?notebook=" + "n" * 4097, 400, "notebook"),
    ("runs?limit=%FF", 400, "nvalid unicode"),
    (f"runs/{RUN}/units?state=running", 400, "state"),
    (f"runs/{RUN}/units?limit=-5", 400, "limit"),
    (f"runs/{RUN}/units?offset=abc", 400, "offset"),
    ("runs/..%2F..%2Fetc%2Fpasswd", 400, "not a run id"),
    ("runs/..%2F..%2Fetc%2Fpasswd/units", 400, "not a run id"),
    ("runs/%2E%2E", 400, "not a run id"),
    ("runs/a%20b", 400, "not a run id"),
    ("runs/a%00b", 400, "not a run id"),
    ("runs/%C3%A9t%C3%A9", 400, "not a run id"),
    ("runs/%FF", 400, "nvalid unicode"),
    ("runs/" + "a" * 65, 400, "not a run id"),
    ("runs/x'%20OR%20'1'='1", 400, "not a run id"),
    ("runs/../../etc/passwd", 404, "no such nbtasks endpoint"),
    (f"runs/{RUN}/units/extra", 404, "no such nbtasks endpoint"),
    ("runs/", 404, "no such nbtasks endpoint"),
    ("nope", 404, "no such nbtasks endpoint"),
]


@pytest.mark.parametrize("path, status, message", BAD_REQUESTS)
async def test_bad_requests_get_json_errors(api, path, status, message):
    reply = await api(path)
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"].startswith("application/json")
    assert message in reply.body["message"]


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not JSON"), (b"[]", "JSON object"), (b'{"reason": 3}', "reason"),
    (b'{"reason": "x", "force": 1}', "unknown field"), (b"\xff", "not JSON"),
])
async def test_bad_cancel_bodies(api, body, message):
    reply = await api(f"runs/{RUN}/cancel", method="POST", body=body)
    assert reply.status == 400 and message in reply.body["message"]


@pytest.mark.parametrize("method, path", [("POST", "runs"), ("GET", f"runs/{RUN}/cancel"),
                                          ("DELETE", f"runs/{RUN}"), ("PUT", "engines"),
                                          ("GET", "store/prune"), ("POST", "store")])
async def test_wrong_method_is_405(api, method, path):
    reply = await api(path, method=method, body=b"" if method in ("POST", "PUT") else None)
    assert reply.status == 405 and "message" in reply.body


async def test_a_percent_in_an_id_does_not_break_the_reply(api):
    reply = await api("runs/%25s%25d%25")
    assert reply.status == 400 and reply.body["message"].startswith("not a run id: '%s%d%'")


# -- the store file ------------------------------------------------------------------------------

async def test_not_a_store_reads_as_empty(api, store_path):
    os.makedirs(os.path.dirname(store_path))
    with open(store_path, "wb") as f:
        f.write(b"this is not SQLite" * 100)
    assert (await api("runs")).body["total"] == 0
    assert (await api(f"runs/{RUN}")).status == 404
    assert (await api("engines")).body == {"clusters": []}


async def test_unreadable_store_is_503(api, store_path):
    os.makedirs(store_path)  # a folder where the file should be
    reply = await api("runs")
    assert reply.status == 503 and re.search("run store .* cannot be read", reply.body["message"])
