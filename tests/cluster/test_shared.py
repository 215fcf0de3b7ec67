"""Shared data: sent once to every engine, read in tasks, replaced, deleted, and
given to engines that join later."""

import os
import signal
import time

import cloudpickle
import pytest

import nbtasks as nt


def lookup(key):
    return nt.shared("table")[key]


def test_tasks_read_shared_values_which_do_not_travel_with_units(cluster):
    table = {i: i * i for i in range(200_000)}  # several MB
    cluster.share(table=table)
    assert "table" in cluster.shared
    run = nt.ParallelTask(lookup).submit([3, 7, 199_999], cluster=cluster, progress=False)
    assert run.result(60) == [9, 49, 199_999 ** 2]
    assert len(cloudpickle.dumps(nt.task(lookup))) < 10_000  # the table is not inside the task
    assert lookup(4) == 16  # a local call sees it too


def test_sharing_again_replaces_and_unshare_deletes(cluster):
    cluster.share(factor=2)
    scale = nt.task(lambda x: x * nt.shared("factor"))
    assert nt.ParallelTask(scale).run([1, 2], cluster=cluster, progress=False, timeout=60) == [2, 4]
    cluster.share(factor=10)
    assert nt.ParallelTask(scale).run([1, 2], cluster=cluster, progress=False, timeout=60) == [10, 20]
    cluster.unshare("factor")
    assert "factor" not in cluster.shared
    with pytest.raises(nt.UnitError, match="no shared value named 'factor'"):
        scale.run(1, cluster=cluster, progress=False, timeout=60)


def test_engines_that_join_later_get_the_shared_values():
    with nt.Cluster(n=1) as own:
        own.share(greeting="hello")
        [first] = own.engines
        os.kill(own.client[first].apply_sync(os.getpid), signal.SIGKILL)  # it is replaced
        deadline = time.monotonic() + 60
        while own.engines in ([], [first]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        greet = nt.task(lambda name: f"{nt.shared('greeting')}, {name}")
        assert greet.run("engine", cluster=own, progress=False, timeout=60) == "hello, engine"


def test_unpicklable_shared_value_is_refused_with_its_name(cluster):
    import threading

    with pytest.raises(TypeError, match="shared value 'lock' cannot be sent to engines"):
        cluster.share(lock=threading.Lock())
