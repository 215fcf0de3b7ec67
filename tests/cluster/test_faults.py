"""Faults on a real cluster: retries with backoff, timeouts, hand-backs, engine deaths.

Executions are counted with files, not trusted from nbtasks' own counters.
"""

import os
import signal
import time

import psutil
import pytest

import nbtasks as nt


def attempt(directory, unit):
    """Record one execution of ``unit``; returns how many there were so far."""
    path = os.path.join(directory, f"unit-{unit}")
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    with open(path) as f:
        return len(f.read().splitlines())


def executions(directory, unit):
    path = os.path.join(directory, f"unit-{unit}")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [int(line) for line in f.read().split()]


def test_retries_rerun_a_failing_unit_until_it_succeeds(cluster, tmp_path):
    @nt.task(retries=2)
    def flaky(x, directory=str(tmp_path)):
        if attempt(directory, x) < 3:  # fails on the first two tries
            raise ConnectionError(f"try again {x}")
        return x * 10

    run = nt.ParallelTask(flaky).submit(range(4), cluster=cluster, progress=False)
    assert run.result(60) == [0, 10, 20, 30]
    assert [len(executions(tmp_path, x)) for x in range(4)] == [3, 3, 3, 3]
    assert run.counts()["retried"] == 8 and run.counts()["done"] == 4 and run.counts()["failed"] == 0
    assert sorted(u.index for u in run.units()) == [0, 1, 2, 3]  # failed tries are not listed as units


def test_when_retries_run_out_the_last_error_fails_the_unit(cluster, tmp_path):
    @nt.task(retries=1)
    def always(x, directory=str(tmp_path)):
        n = attempt(directory, x)
        raise ValueError(f"attempt {n}")

    with pytest.raises(nt.UnitError, match="ValueError: attempt 2"):
        always.run(7, cluster=cluster, progress=False, timeout=60)
    assert len(executions(tmp_path, 7)) == 2


def test_a_unit_running_past_its_timeout_is_interrupted(cluster):
    slow = nt.task(timeout=0.5)(lambda s: time.sleep(s) or s)
    run = nt.ParallelTask(slow).submit([0.01, 30, 0.01], cluster=cluster, progress=False, on_error="continue")
    with pytest.raises(nt.RunFailed):
        run.result(20)  # not 30 s: the long unit is cut off
    [failure] = run.failures
    assert failure.index == 1 and isinstance(failure.__cause__, nt.UnitTimeout)
    assert "timeout of 0.5 s" in str(failure)
    assert sorted(u.result for u in run.units("done")) == [0.01, 0.01]
    # the engine is fine afterwards
    assert slow.run(0.01, cluster=cluster, progress=False, timeout=30) == 0.01


def test_a_unit_cannot_swallow_its_own_timeout(cluster):
    @nt.task(timeout=0.5)
    def stubborn(seconds):
        try:
            time.sleep(seconds)
        except Exception:  # the usual "catch everything" of code that calls a flaky service
            return "swallowed"
        return "slept"

    started = time.monotonic()
    with pytest.raises(nt.UnitError) as caught:
        stubborn.run(20, cluster=cluster, progress=False, timeout=15)
    assert isinstance(caught.value.__cause__, nt.UnitTimeout)
    assert "UnitTimeout: the unit ran longer than its timeout of 0.5 s" in caught.value.traceback
    assert "time.sleep(seconds)" in caught.value.traceback  # where it was stopped
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("raised", [KeyboardInterrupt("mine"), SystemExit(3), BaseException("bare")],
                         ids=["KeyboardInterrupt", "SystemExit", "BaseException"])
def test_whatever_a_unit_raises_fails_that_unit_with_a_plain_traceback(cluster, tmp_path, raised):
    """Only the interrupt nbtasks sends means "cancelled"; a unit's own KeyboardInterrupt
    fails it once (with retries=1: twice), instead of being re-queued forever."""
    @nt.task(retries=1, max_engine_failures=1)
    def leave(x, directory=str(tmp_path)):
        attempt(directory, x)
        if x == 2:
            raise raised
        return x

    run = nt.ParallelTask(leave).submit(range(4), cluster=cluster, progress=False, on_error="continue")
    with pytest.raises(nt.RunFailed):
        run.result(30)
    [failure] = run.failures
    assert isinstance(failure, nt.UnitError) and failure.index == 2
    assert type(failure.__cause__) is type(raised)
    assert f"{type(raised).__name__}: {raised}" in failure.traceback
    assert "raise raised" in failure.traceback and "\x1b[" not in failure.traceback  # no terminal colours
    counts = run.counts()
    assert (counts["done"], counts["failed"], counts["running"], counts["queued"]) == (3, 1, 0, 0)
    assert counts["retried"] == 1 and len(executions(tmp_path, 2)) == 2
    assert sorted(u.result for u in run.units("done")) == [0, 1, 3]


def test_a_timed_out_unit_can_be_retried(cluster, tmp_path):
    @nt.task(timeout=0.5, retries=1)
    def slow_once(x, directory=str(tmp_path)):
        if attempt(directory, x) == 1:
            time.sleep(30)
        return x

    assert slow_once.run(5, cluster=cluster, progress=False, timeout=30) == 5
    assert len(executions(tmp_path, 5)) == 2


def test_a_unit_handed_back_runs_again_on_another_engine(cluster, tmp_path):
    @nt.task
    def picky(x, directory=str(tmp_path)):
        if attempt(directory, x) == 1:
            raise nt.Retry("not here")
        return os.getpid()

    run = nt.ParallelTask(picky).submit(range(4), cluster=cluster, progress=False)
    pids = run.result(60)
    for x in range(4):
        first, second = executions(tmp_path, x)
        assert first != second == pids[x]  # elsewhere: not on the engine that handed it back
    assert run.counts()["retried"] == 4 and run.counts()["failed"] == 0


def _segfault(x):
    import ctypes

    return ctypes.string_at(0)


@pytest.mark.parametrize("death", [lambda x: os.kill(os.getpid(), signal.SIGKILL), _segfault],
                         ids=["SIGKILL", "segfault"])
def test_engine_deaths_fail_a_unit_after_max_engine_failures_and_the_cluster_keeps_its_size(death):
    with nt.Cluster(n=2) as own:
        killer = nt.task(max_engine_failures=2)(death)
        run = nt.ParallelTask(killer).submit([1], cluster=own, progress=False, on_error="continue")
        with pytest.raises(nt.RunFailed, match="died 2 times"):
            run.result(120)
        [failure] = run.failures
        assert failure.host and failure.pid  # the engine that died, as it was
        assert f"on engine {failure.engine} ({failure.host}, pid {failure.pid})" in str(failure)
        assert not psutil.pid_exists(failure.pid)
        deadline = time.monotonic() + 60
        while len(own.engines) < 2:  # dead engines are replaced
            assert time.monotonic() < deadline, own.engines
            time.sleep(0.1)
        assert nt.ParallelTask(abs).run([-1, -2, -3], cluster=own, progress=False, timeout=60) == [1, 2, 3]


@pytest.mark.parametrize("bad", [{"retries": -1}, {"retries": 1.5}, {"timeout": 0}, {"timeout": "1"},
                                 {"max_engine_failures": 0}])
def test_bad_fault_settings_are_refused(bad):
    with pytest.raises(nt.TaskDefinitionError):
        nt.task(**bad)(abs)


@pytest.mark.parametrize("seconds, units", [(0.02, 300), (0.25, 60)], ids=["chunks-of-20", "one-per-chunk"])
def test_engine_killed_mid_run_loses_no_unit_and_reruns_only_its_last_moments(tmp_path, seconds, units):
    """kill -9 an engine in the middle of a unit, a third of the way through: every result
    equals the serial one, and every unit ran to completion once, except units the engine
    finished in its last ``EVERY`` (0.2 s) before the kill, which it had not sent yet
    (engines send finished units at least that often). Chunks hold ~0.4 s of work: 20
    units of 20 ms, or one unit of 250 ms (each goes back as it ends: none runs twice)."""

    def finish(x, directory=str(tmp_path)):
        with open(os.path.join(directory, f"start-{x}"), "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(seconds)
        attempt(directory, x)  # written as the unit completes
        with open(os.path.join(directory, f"end-{x}"), "a") as f:
            f.write(f"{time.time()}\n")
        return x * x + 1

    def running_on(pid):
        """A unit the engine ``pid`` started and has not finished."""
        for name in os.listdir(tmp_path):
            if name.startswith("start-"):
                x = int(name[6:])
                with open(tmp_path / name) as f:
                    if str(pid) in f.read().split() and pid not in executions(tmp_path, x):
                        return x
        return None

    def first_end(x):
        with open(tmp_path / f"end-{x}") as f:
            return float(f.read().split()[0])

    with nt.Cluster(n=2) as own:
        pids = dict(zip(own.client.ids, own.client[:].apply_sync(os.getpid)))
        victim = own.engines[0]
        run = nt.ParallelTask(finish).submit(range(units), cluster=own, progress=False, store=False)
        deadline = time.monotonic() + 60
        while sum(len(executions(tmp_path, x)) for x in range(units)) < units // 3 or running_on(pids[victim]) is None:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        os.kill(pids[victim], signal.SIGKILL)
        killed = time.time()
        assert run.result(120) == [x * x + 1 for x in range(units)]
        ran = [executions(tmp_path, x) for x in range(units)]
        assert all(ran), [x for x in range(units) if not ran[x]]
        again = [x for x in range(units) if len(ran[x]) > 1]
        # only the victim's units of its last 0.2 s (plus the time a message takes to leave)
        assert all(len(ran[x]) == 2 and ran[x][0] == pids[victim] and killed - first_end(x) < 0.3
                   for x in again), {x: (ran[x], killed - first_end(x)) for x in again}
        if seconds >= 0.2:
            assert again == []
        records = run.units()
        assert len(records) == units and any(r.engine == victim for r in records)


def test_a_lost_reply_is_noticed_and_its_units_run_again(tmp_path, monkeypatch):
    """An engine that never answers a chunk (its reply lost, as when an interrupt meant
    for another run hits it) is asked a no-op; answering that first gives the chunk up,
    and its units run again instead of the run waiting forever. Chunks sent by apply
    (engines that cannot reach the client's lanes): a lane's outcome is no apply reply."""
    monkeypatch.setenv("NBTASKS_LANES", "0")

    def forgetful(x, directory=str(tmp_path)):
        if attempt(directory, x) == 1 and x == 0:  # the engine drops this chunk's reply, once
            from IPython import get_ipython

            session = get_ipython().kernel.session
            send = session.send

            def drop_apply_reply(stream, msg_type, *args, **kwargs):
                if msg_type == "apply_reply":
                    session.send = send
                    return None
                return send(stream, msg_type, *args, **kwargs)

            session.send = drop_apply_reply
        return x + 100

    with nt.Cluster(n=2) as own:
        started = time.monotonic()
        run = nt.ParallelTask(forgetful).submit([0, 1], cluster=own, progress=False, store=False)
        assert run.result(30) == [100, 101]
        assert time.monotonic() - started < 15
        assert len(executions(tmp_path, 0)) == 2 and len(executions(tmp_path, 1)) == 1
        assert run.counts()["retried"] == 1


def test_a_dead_controller_fails_its_runs_at_once_and_a_new_cluster_reuses_what_finished(tmp_path):
    """Never a hang: runs on a cluster whose controller died fail with ControllerLost, later
    submits there too; the units finished before are in the store for the next cluster."""
    from nbtasks.cluster import ControllerLost

    store = str(tmp_path / "runs.db")
    task = nt.ParallelTask(nt.task(lambda x: time.sleep(0.02) or x * 3, name="tripled"))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with nt.Cluster(n=2, store=store) as own:
        started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        [controller] = [p for p in started if "ipyparallel.controller" in p.cmdline()
                        and "ipyparallel.controller" not in p.parent().cmdline()]  # not its schedulers
        run = task.submit(range(300), cluster=own, progress=False)
        while run.counts()["done"] < 60:
            time.sleep(0.01)
        for part in [controller, *controller.children(recursive=True)]:  # the hub and its schedulers
            part.kill()
        began = time.monotonic()
        with pytest.raises(ControllerLost, match="controller .* died"):
            run.result(30)
        assert time.monotonic() - began < 5
        counts = run.counts()
        assert counts["queued"] == counts["running"] == 0 and counts["done"] >= 60
        with pytest.raises(ControllerLost):
            task.run(range(3), cluster=own, progress=False, timeout=10)
        deadline = time.monotonic() + 10
        while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in started):
            assert time.monotonic() < deadline, "engines left running without their controller"
            time.sleep(0.1)
    with nt.Cluster(n=2, store=store) as fresh:
        again = task.submit(range(300), cluster=fresh, progress=False)
        assert again.result(60) == [x * 3 for x in range(300)]
        assert again.reused >= counts["done"] - 40  # the last second's units may not be written yet


def test_an_engine_cut_off_from_its_controller_is_stopped_and_replaced(tmp_path):
    """An engine that stops answering heartbeats (frozen with SIGSTOP here; a host whose
    link went down looks the same to the controller) leaves the cluster while its process
    lives on: its units run elsewhere, each completes once, and the orphan is killed and
    replaced instead of left to come back with stale results. Units it finished in its
    last moments, not yet streamed back (every 0.2 s), run again elsewhere; no other does."""

    def slow(x, directory=str(tmp_path)):
        time.sleep(0.05)
        attempt(directory, x)
        return -x

    with nt.Cluster(n=2) as own:
        pids = dict(zip(own.client.ids, own.client[:].apply_sync(os.getpid)))
        victim = own.engines[0]
        run = nt.ParallelTask(slow).submit(range(200), cluster=own, progress=False, store=False)
        deadline = time.monotonic() + 60
        while sum(len(executions(tmp_path, x)) for x in range(200)) < 40:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(pids[victim], signal.SIGSTOP)  # alive, silent
        try:
            assert run.result(120) == [-x for x in range(200)]
            ran = [executions(tmp_path, x) for x in range(200)]
            assert all(ran)
            again = [x for x in range(200) if len(ran[x]) > 1]
            assert all(len(ran[x]) == 2 and ran[x][0] == pids[victim] for x in again), {x: ran[x] for x in again}
            assert len(again) <= 5, again  # 0.2 s of its 50 ms units, and the one it was in
            deadline = time.monotonic() + 60
            while psutil.pid_exists(pids[victim]) and psutil.Process(pids[victim]).status() != psutil.STATUS_ZOMBIE:
                assert time.monotonic() < deadline, "the cut-off engine was left running"
                time.sleep(0.1)
            while len(own.engines) < 2:
                assert time.monotonic() < deadline, own.engines
                time.sleep(0.1)
            assert victim not in own.engines
            assert nt.ParallelTask(abs).run([-1, -2, -3], cluster=own, progress=False, timeout=60) == [1, 2, 3]
        finally:
            if psutil.pid_exists(pids[victim]):
                os.kill(pids[victim], signal.SIGKILL)
