"""Errors for things that cannot travel to engines name the culprit."""

import threading

import pytest

from nbtasks.core.serialize import UnpicklableError, dumps, find_unpicklable

LOCK = threading.Lock()


def uses_global(x):
    return LOCK, x


def test_global_is_named():
    with pytest.raises(UnpicklableError, match=r"task 'f' cannot be sent to engines: lock object "
                                               r"\(global 'LOCK' of uses_global\)"):
        dumps(uses_global, "task 'f'")


def test_nested_container_path_is_named():
    path, culprit = find_unpicklable({"a": [1, 2, {"b": LOCK}]})
    assert path == "['a'] → [2] → ['b']" and culprit is LOCK


def test_picklable_things_pass():
    assert dumps(lambda x: x + 1, "a lambda")
