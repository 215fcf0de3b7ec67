"""A unit is "the same" by its own input: a grown, shrunk or reordered list reuses every
unit it shares with an earlier run, and a path counts by what its file holds."""

from __future__ import annotations

import os
import pathlib


import nbtasks as nt
import nbtasks.store
from nbtasks.store.recorder import Store
from tests.store.test_reuse import counting, executions


def test_adding_one_input_to_a_thousand_unit_run_runs_one_unit(cluster, marks, store):
    task = nt.ParallelTask(counting(marks))
    assert task.submit(list(range(1000)), cluster=cluster, store=store, progress=False).result() == \
        [x * x for x in range(1000)]
    assert executions(marks) == 1000

    run = task.submit(list(range(1001)), cluster=cluster, store=store, progress=False)
    assert run.result() == [x * x for x in range(1001)]
    assert executions(marks) == 1001 and executions(marks, 1000) == 1
    assert run.reused == 1000
    assert run.explain()["work"].ran == {"input new": 1}


def test_removed_and_reordered_inputs_reuse_every_unit(cluster, marks, store):
    task = nt.ParallelTask(counting(marks))
    task.submit(list(range(50)), cluster=cluster, store=store, progress=False).result()
    shuffled = [7, 3, 49, 0, 12] + list(range(20, 30))[::-1]
    run = task.submit(shuffled, cluster=cluster, store=store, progress=False)
    assert run.result() == [x * x for x in shuffled]
    assert executions(marks) == 50 and run.reused == len(shuffled)
    units = run.units()  # records say which input each was, in the new order, with the old output
    assert [u.input for u in units] == shuffled and units[2].stdout == "unit 49\n"


def read_total(path: pathlib.Path) -> int:
    return sum(int(v) for v in path.read_text().split())


def test_an_edited_input_file_reruns_its_unit_and_only_it(cluster, store, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    files = [data / f"day{i}.csv" for i in range(4)]
    for i, f in enumerate(files):
        f.write_text(f"{i} {i}\n")
    task = nt.ParallelTask(read_total)
    assert task.submit(files, cluster=cluster, store=store, progress=False).result() == [0, 2, 4, 6]

    files[1].write_text("100 1\n")
    os.utime(files[2])  # touched, same content: still the same
    run = task.submit(files, cluster=cluster, store=store, progress=False)
    assert run.result() == [0, 101, 4, 6]
    assert run.reused == 3 and run.explain()["read_total"].ran == {"input new": 1}


def scaled(x: int, table: pathlib.Path = pathlib.Path("missing")) -> int:
    return x * int(table.read_text())


def test_a_path_parameter_counts_by_the_files_content(cluster, store, tmp_path):
    table = tmp_path / "factor.txt"
    table.write_text("3")
    task = nt.ParallelTask(scaled)
    assert task.submit([1, 2], cluster=cluster, store=store, table=table, progress=False).result() == [3, 6]
    again = task.submit([1, 2], cluster=cluster, store=store, table=table, progress=False)
    assert again.result() == [3, 6] and again.reused == 2
    table.write_text("5")
    run = task.submit([1, 2], cluster=cluster, store=store, table=table, progress=False)
    assert run.result() == [5, 10] and run.reused == 0
    assert run.explain()["scaled"].ran == {"parameter table changed": 2}


def shared_factor(x: int) -> int:
    return x * int(nt.shared("factor_file").read_text())


def test_a_shared_path_counts_by_the_files_content(cluster, store, tmp_path):
    factor = tmp_path / "factor.txt"
    factor.write_text("2")
    cluster.share(factor_file=factor)
    try:
        task = nt.ParallelTask(shared_factor)
        assert task.submit([1, 2], cluster=cluster, store=store, progress=False).result() == [2, 4]
        factor.write_text("7")
        run = task.submit([1, 2], cluster=cluster, store=store, progress=False)
        assert run.result() == [7, 14] and run.reused == 0
        assert run.explain()["shared_factor"].ran == {"shared value factor_file changed": 2}
    finally:
        cluster.unshare("factor_file")


def weight(item: dict) -> int:
    return item["kg"] * 1000


def test_inputs_changed_in_place_right_after_their_run_count_as_they_were(cluster, tmp_path):
    """The store writes a run's records after the run, off its path; what it keeps of each
    unit's input must be the input the unit got, not the object as it is by then."""
    task = nt.ParallelTask(weight)
    for attempt in range(5):  # the store thread writes a moment after the run: give it chances
        store = str(tmp_path / f"runs{attempt}.db")
        items = [{"kg": 1}, {"kg": 2}, {"kg": 3}]
        assert task.submit(items, cluster=cluster, store=store, progress=False).result() == [1000, 2000, 3000]
        items[1]["kg"] = 20  # at once, before the records are written
        run = task.submit(items, cluster=cluster, store=store, progress=False)
        assert run.result() == [1000, 20000, 3000] and run.reused == 2


def test_a_list_run_again_after_its_runs_were_pruned_is_found_unit_by_unit_later(cluster, marks, store):
    task = nt.ParallelTask(counting(marks))
    task.submit(list(range(5)), cluster=cluster, store=store, progress=False).result()
    Store.at(store).flush()
    assert len(nbtasks.store.prune(name="parallel(work)", store=store).runs) == 1
    again = task.submit(list(range(5)), cluster=cluster, store=store, progress=False)
    assert again.result() == [x * x for x in range(5)] and again.reused == 0
    grown = task.submit(list(range(6)), cluster=cluster, store=store, progress=False)
    assert grown.result() == [x * x for x in range(6)] and grown.reused == 5
    assert executions(marks) == 11
