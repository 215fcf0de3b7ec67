"""Request checks: what the API takes and what it refuses, before any store access."""

from __future__ import annotations

import pytest

from nbtasks.server import query
from nbtasks.server.errors import BadRequest


def args(**values):
    return values.get


@pytest.mark.parametrize("text", ["0123456789ab", "a", "run_1-x", "A" * 64])
def test_run_ids_taken(text):
    assert query.run_id(text) == text


@pytest.mark.parametrize("text", ["", "../etc", "..", "a/b", "a b", "a.b", "%2e", "é", "a\x00", "A" * 65, "a;b"])
def test_odd_run_ids_refused(text):
    with pytest.raises(BadRequest, match="not a run id"):
        query.run_id(text)


def test_runs_query_defaults_and_values():
    assert query.runs_query(args()) == query.RunsQuery(state=None, notebook=None, limit=100, offset=0)
    got = query.runs_query(args(state="lost", notebook="a b.ipynb", limit="1000", offset="7"))
    assert got == query.RunsQuery(state="lost", notebook="a b.ipynb", limit=1000, offset=7)


@pytest.mark.parametrize("name, value", [
    ("state", "bogus"), ("state", ""), ("state", "DONE"),
    ("limit", "0"), ("limit", "1001"), ("limit", "-1"), ("limit", "abc"), ("limit", ""), ("limit", " 5"),
    ("limit", "1_0"), ("limit", "+5"), ("limit", "5.0"), ("limit", "1" * 5000),
    ("offset", "-1"), ("offset", "1000000001"), ("offset", "x"), ("offset", "١"),
    ("notebook", "n" * 4097),
])
def test_bad_runs_parameters_refused(name, value):
    with pytest.raises(BadRequest, match=name):
        query.runs_query(args(**{name: value}))


def test_units_query():
    assert query.units_query(args()) == query.UnitsQuery(state=None, limit=50, offset=0)
    assert query.units_query(args(state="failed", limit="3", offset="2")) == query.UnitsQuery("failed", 3, 2)
    with pytest.raises(BadRequest, match="state must be one of done, failed"):
        query.units_query(args(state="running"))


@pytest.mark.parametrize("body, reason", [
    (b"", query.DEFAULT_REASON), (b"  \n", query.DEFAULT_REASON), (b"{}", query.DEFAULT_REASON),
    (b'{"reason": null}', query.DEFAULT_REASON), (b'{"reason": "  "}', query.DEFAULT_REASON),
    (b'{"reason": "too slow"}', "too slow"), ('{"reason": "zu langsam \u00e9"}'.encode(), "zu langsam \u00e9"),
])
def test_cancel_reason(body, reason):
    assert query.cancel_reason(body) == reason


@pytest.mark.parametrize("body, message", [
    (b"{", "not JSON"), (b"\xff\xfe", "not JSON"), (b"[1]", "JSON object"), (b'"x"', "JSON object"),
    (b'{"reason": 5}', "reason must be"), (b'{"reason": "' + b"x" * 501 + b'"}', "reason must be"),
    (b'{"reason": "x", "force": true}', "unknown field"), (b"[" * 100000, "nested too deeply"),
])
def test_bad_cancel_bodies_refused(body, message):
    with pytest.raises(BadRequest, match=message):
        query.cancel_reason(body)
