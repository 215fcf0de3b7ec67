"""Compositions: sequence/concurrent containers, parallel fan-out, map-reduce.

Each class defines its structure and its serial meaning (``_serial``), which
is the reference every distributed run must reproduce. The asynchronous
driver in ``evaluate.py`` follows the same steps with units on engines; the
unit-level helpers here (``map_unit``, ``reduce_items``) are shared by both so
the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from .errors import TaskDefinitionError, add_note, short_repr
from .task import NOTHING, Args, Task, as_task

__all__ = ["ContainerTask", "ParallelTask", "MapReduceTask", "map_unit", "reduce_items"]


class ContainerTask(Task):
    """Subtasks in sequence (each result feeds the next) or, with
    ``concurrent=True``, all on the same input with a tuple of results."""

    is_leaf = False

    def __init__(self, *tasks: Any, concurrent: bool = False, name: str | None = None,
                 tag: str | None = None) -> None:
        if not tasks:
            raise TaskDefinitionError("ContainerTask needs at least one subtask")
        self.tasks = tuple(as_task(t, f"subtask {i} of ContainerTask") for i, t in enumerate(tasks))
        self.concurrent = bool(concurrent)
        default = ("concurrent" if concurrent else "sequence") + "(" + ", ".join(t.name for t in self.tasks) + ")"
        super().__init__(name or default, tag)

    @property
    def kind(self) -> str:
        return "concurrent" if self.concurrent else "sequence"

    def subtasks(self) -> tuple[Task, ...]:
        return self.tasks

    def _serial(self, input: Any, params: Mapping[str, Any]) -> Any:
        if self.concurrent:
            return tuple(t._serial(input, params) for t in self.tasks)
        value = input
        for t in self.tasks:
            value = t._serial(value, params)
        return value


class ParallelTask(Task):
    """One subtask run on every work unit that ``divide(input)`` yields;
    ``collect(results)`` (a list in unit order by default) makes the result."""

    is_leaf = False
    kind = "parallel"

    def __init__(self, subtask: Any, divide: Callable | None = None, collect: Callable | None = None,
                 name: str | None = None, tag: str | None = None) -> None:
        self.subtask = as_task(subtask, "ParallelTask's subtask")
        for role, fn in (("divide", divide), ("collect", collect)):
            if fn is not None and not callable(fn):
                raise TaskDefinitionError(f"ParallelTask's {role} must be callable, got {fn!r}")
        self.divide = divide
        self.collect = collect
        super().__init__(name or f"parallel({self.subtask.name})", tag)

    def subtasks(self) -> tuple[Task, ...]:
        return (self.subtask,)

    def units(self, input: Any) -> list:
        """The work units of ``input``, checked to be a finite iterable."""
        return divide_units(self.name, self.divide, input)

    def finish(self, results: list) -> Any:
        return results if self.collect is None else self.collect(results)

    def _serial(self, input: Any, params: Mapping[str, Any]) -> Any:
        return self.finish([self.subtask._serial(u, params) for u in self.units(input)])


class MapReduceTask(Task):
    """``mapper(unit)`` yields ``(key, value)`` pairs; values are grouped by key,
    spread over ``partitions`` by a stable hash, and ``reducer(key, values)``
    makes each key's value. The result is ``{key: value}`` in order of first
    appearance. An optional ``combiner(key, values)`` pre-reduces each map unit.
    """

    is_leaf = False
    kind = "mapreduce"

    def __init__(self, mapper: Any, reducer: Any, partitions: int = 1, combiner: Any = None,
                 divide: Callable | None = None, name: str | None = None, tag: str | None = None) -> None:
        if isinstance(partitions, bool) or not isinstance(partitions, int):
            raise TypeError(f"MapReduceTask: partitions must be a positive int, got {partitions!r}")
        if partitions < 1:
            raise TaskDefinitionError(f"MapReduceTask: partitions must be >= 1, got {partitions}")
        if divide is not None and not callable(divide):
            raise TaskDefinitionError(f"MapReduceTask's divide must be callable, got {divide!r}")
        self.mapper = as_task(mapper, "MapReduceTask's mapper")
        self.reducer = as_task(reducer, "MapReduceTask's reducer")
        self.combiner = None if combiner is None else as_task(combiner, "MapReduceTask's combiner")
        if self.combiner is not None and not self.combiner.is_leaf:
            raise TaskDefinitionError("MapReduceTask's combiner must be a plain function or leaf task")
        self.partitions = partitions
        self.divide = divide
        super().__init__(name or f"mapreduce({self.mapper.name}, {self.reducer.name})", tag)

    def subtasks(self) -> tuple[Task, ...]:
        return (self.mapper, self.reducer)

    def walk(self):
        yield from super().walk()
        if self.combiner is not None:
            yield from self.combiner.walk()

    def units(self, input: Any) -> list:
        return divide_units(self.name, self.divide, input)

    def _serial(self, input: Any, params: Mapping[str, Any]) -> Any:
        groups: dict = {}
        for i, unit in enumerate(self.units(input)):
            cparams = self.combiner.leaf_params(params) if self.combiner else None
            if self.mapper.is_leaf:
                part = map_unit(self.mapper, unit, self.mapper.leaf_params(params), i, self.combiner, cparams)
            else:
                part = group_pairs(self.mapper.name, self.mapper._serial(unit, params), i,
                                   self.combiner, cparams)
            merge_groups(groups, part)
        return {key: self.reducer._serial(self.reduce_input(key, values), params)
                for key, values in groups.items()}

    def reduce_input(self, key: Any, values: list) -> Any:
        """A function reducer is called ``reducer(key, values)``; a composed one gets ``(key, values)``."""
        return Args((key, values)) if self.reducer.is_leaf else (key, values)


def divide_units(owner: str, divide: Callable | None, input: Any) -> Sequence:
    if divide is None:
        if type(input) is range:
            return input  # stays a range: a million units need not be a million ints here too
        source = input
    else:
        try:
            source = divide() if input is NOTHING else divide(input)
        except Exception as exc:
            add_note(exc, f"in divide {getattr(divide, '__name__', divide)!r} of task {owner!r}")
            raise
    try:
        iterator = iter(source)
    except TypeError:
        what = "its input" if divide is None else f"divide {getattr(divide, '__name__', divide)!r} returned"
        raise TypeError(f"{owner}: {what} {type(source).__name__} {short_repr(source)}, which is not "
                        "iterable; divide must return an iterable of work units") from None
    return list(iterator)


def group_pairs(mapper: str, pairs: Iterable, index: int, combiner: Task | None = None,
                cparams: Mapping[str, Any] | None = None) -> dict:
    """Group one map unit's pairs by key (values in emission order), then combine."""
    try:
        iterator = iter(pairs)
    except TypeError:
        raise TypeError(f"mapper {mapper!r} returned {type(pairs).__name__} {short_repr(pairs)} for unit "
                        f"{index}; a mapper must yield (key, value) pairs") from None
    groups: dict = {}
    for item in iterator:
        if type(item) is not tuple or len(item) != 2:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise TypeError(f"mapper {mapper!r} yielded {type(item).__name__} {short_repr(item)} for "
                                f"unit {index}; a mapper must yield (key, value) pairs")
        key, value = item
        try:
            bucket = groups.get(key)
        except TypeError:  # unhashable
            raise TypeError(f"mapper {mapper!r} yielded the key {short_repr(key)} ({type(key).__name__}) for "
                            f"unit {index}, which cannot be a key: keys must be hashable (str, int, tuple...)"
                            ) from None
        if bucket is None:
            groups[key] = [value]
        else:
            bucket.append(value)
    if combiner is not None:
        groups = {k: [combiner.run_unit(Args((k, v)), cparams or {})] for k, v in groups.items()}
    return groups


def map_unit(mapper: Task, unit: Any, params: Mapping[str, Any], index: int,
             combiner: Task | None = None, cparams: Mapping[str, Any] | None = None) -> dict:
    """Run a leaf mapper on one unit and group (and combine) its pairs."""
    return group_pairs(mapper.name, mapper.run_unit(unit, params), index, combiner, cparams)


def merge_groups(into: dict, part: Mapping) -> None:
    for key, values in part.items():
        bucket = into.get(key)
        if bucket is None:
            into[key] = list(values)
        else:
            bucket.extend(values)


def reduce_items(reducer: Task, items: list, params: Mapping[str, Any]) -> list:
    """Reduce one partition: ``[(key, values), ...] -> [(key, value), ...]``."""
    return [(key, reducer.run_unit(Args((key, values)), params)) for key, values in items]
