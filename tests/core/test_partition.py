"""Map-reduce partitioning must agree across processes (Python's str hash does not)."""

import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from nbtasks.core.partition import partition_of, stable_hash

KEYS = ["word", "", "ünïcode", 0, 1, -5, 2**70, 1.5, None, ("a", 1), b"raw", frozenset({"x", "y"})]


def test_same_hash_in_processes_with_different_hash_seeds():
    code = ("from nbtasks.core.partition import stable_hash\n"
            f"print([stable_hash(k) for k in {KEYS!r}])")
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1
    assert outputs.pop().strip() == str([stable_hash(k) for k in KEYS])


@given(st.one_of(st.integers(), st.text(), st.booleans(), st.tuples(st.integers(), st.text())))
def test_equal_keys_hash_equal_and_partitions_are_in_range(key):
    assert 0 <= partition_of(key, 7) < 7
    if isinstance(key, (bool, int)):
        assert stable_hash(key) == stable_hash(int(key))
