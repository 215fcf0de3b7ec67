"""Compositions run serially: the reference semantics every cluster run must match."""

import collections

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nbtasks as nt


def inc(x):
    return x + 1


def double(x):
    return 2 * x


def words(line):
    for w in line.split():
        yield w, 1


def test_sequence_feeds_each_result_to_the_next():
    assert nt.ContainerTask(inc, double, inc)(3) == 9


def test_concurrent_gives_every_subtask_the_same_input():
    assert nt.ContainerTask(sum, max, len, concurrent=True)([1, 5, 2]) == (8, 5, 3)


def test_parallel_defaults_to_a_list_in_unit_order():
    assert nt.ParallelTask(double)(range(5)) == [0, 2, 4, 6, 8]
    assert nt.ParallelTask(double, divide=range, collect=sum)(4) == 12


def test_mapreduce_word_count_matches_counter():
    lines = ["a b a", "c b", "", "a"]
    counts = nt.MapReduceTask(mapper=words, reducer=lambda w, ones: sum(ones), partitions=3)
    result = counts(lines)
    assert result == dict(collections.Counter(" ".join(lines).split()))
    assert list(result) == ["a", "b", "c"]  # order of first appearance


def test_mapreduce_combiner_gives_the_same_result():
    plain = nt.MapReduceTask(words, lambda w, v: sum(v))
    combined = nt.MapReduceTask(words, lambda w, v: sum(v), combiner=lambda w, v: sum(v))
    lines = ["x y x", "y y"]
    assert plain(lines) == combined(lines) == {"x": 2, "y": 3}


def test_mapreduce_with_divide_and_composed_reducer():
    reducer = nt.ContainerTask(lambda kv: kv[1], sum)
    mr = nt.MapReduceTask(lambda n: [(n % 2, n)], reducer, divide=range, partitions=2)
    assert mr(6) == {0: 6, 1: 9}


@pytest.mark.parametrize("bad", [0, -1])
def test_partitions_must_be_positive(bad):
    with pytest.raises(nt.TaskDefinitionError, match="partitions"):
        nt.MapReduceTask(words, sum, partitions=bad)


@pytest.mark.parametrize("bad", ["4", 2.5, True, None])
def test_partitions_must_be_an_int(bad):
    with pytest.raises(TypeError, match="partitions"):
        nt.MapReduceTask(words, sum, partitions=bad)


def test_divide_that_is_not_iterable_names_the_task():
    p = nt.ParallelTask(inc, divide=lambda n: n, name="fan")
    with pytest.raises(TypeError, match="fan: divide '<lambda>' returned int 5, which is not iterable"):
        p(5)


def test_mapper_that_does_not_yield_pairs_is_named():
    mr = nt.MapReduceTask(lambda s: s.split(), lambda k, v: v)
    with pytest.raises(TypeError, match="mapper '<lambda>' yielded str 'a' for unit 0"):
        mr(["a b"])


@nt.task
def scale(x, factor: float = 1.0):
    return x * factor


@nt.task
def shift(x, offset: int = 0):
    return x + offset


def scale_then_shift():
    """A composition whose subtasks declare different parameters."""
    return nt.ContainerTask(nt.ParallelTask(scale, collect=sum), shift)


def test_parameters_flow_to_every_subtask_that_declares_them():
    pipeline = scale_then_shift()
    assert pipeline([1, 2], factor=2.0, offset=1) == 7.0
    assert set(pipeline.params()) == {"factor", "offset"}
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        pipeline([1], bogus=1)


# -- any task nests in any other -------------------------------------------------------

def compositions(depth=3):
    """Random int -> int compositions of every kind, nested."""
    leaf = st.sampled_from([inc, double, abs, lambda x: x % 7 - 3])
    if depth == 0:
        return leaf

    sub = st.deferred(lambda: compositions(depth - 1))
    sequence = st.lists(sub, min_size=1, max_size=3).map(lambda ts: nt.ContainerTask(*ts))
    concurrent = st.lists(sub, min_size=1, max_size=3).map(
        lambda ts: nt.ContainerTask(nt.ContainerTask(*ts, concurrent=True), sum))
    parallel = sub.map(lambda t: nt.ParallelTask(t, divide=lambda x: range(abs(x) % 4), collect=sum))
    mapreduce = sub.map(lambda t: nt.ContainerTask(
        nt.MapReduceTask(nt.ContainerTask(t, lambda v: [(v % 2, v), (v % 3, 1)]),
                         lambda k, vs: sum(vs), divide=lambda x: range(abs(x) % 5), partitions=2),
        lambda d: sum(k * v for k, v in d.items())))
    return st.one_of(leaf, sequence, concurrent, parallel, mapreduce)


def reference(task, x):
    """What the composition means, computed without nbtasks' composite classes."""
    if isinstance(task, nt.ParallelTask):
        results = [reference(task.subtask, u) for u in task.divide(x)]
        return task.collect(results)
    if isinstance(task, nt.ContainerTask):
        if task.concurrent:
            return tuple(reference(t, x) for t in task.tasks)
        for t in task.tasks:
            x = reference(t, x)
        return x
    if isinstance(task, nt.MapReduceTask):
        groups = collections.defaultdict(list)
        for u in task.divide(x):
            for k, v in reference(task.mapper, u):
                groups[k].append(v)
        return {k: task.reducer.fn(k, vs) for k, vs in groups.items()}
    return task.fn(x)


@settings(max_examples=200, deadline=None)
@given(compositions(), st.integers(-20, 20))
def test_serial_run_matches_the_meaning_of_the_composition(task, x):
    task = nt.core.as_task(task)
    assert task(x) == reference(task, x)
