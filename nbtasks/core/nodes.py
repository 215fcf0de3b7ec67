"""The shape of a run: one node per task in the composition, with its unit counts.

Nodes are positions, not task objects: ``ContainerTask(f, f)`` has two rows.
``node.units`` (a :class:`~nbtasks.core.states.UnitCounts`) is moved only by the
backend's dispatch thread; readers take snapshots, which are plain dicts.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator

from .states import COUNTS, UnitCounts
from .task import Task

__all__ = ["Node", "build_tree", "COUNTS"]


class Node:
    __slots__ = ("id", "task", "kind", "parent", "children", "depth", "units")

    def __init__(self, id: int, task: Task, parent: "Node | None") -> None:
        self.id = id
        self.task = task
        self.kind = getattr(task, "kind", "leaf") if not task.is_leaf else "leaf"
        self.parent = parent
        self.children: list[Node] = []
        self.depth = 0 if parent is None else parent.depth + 1
        self.units = UnitCounts()

    @property
    def name(self) -> str:
        return self.task.name

    def walk(self) -> Iterator["Node"]:
        yield self
        for child in self.children:
            yield from child.walk()

    def counts(self) -> dict[str, int]:
        """Counts of this node's own units plus all its descendants'."""
        total = dict.fromkeys(COUNTS, 0)
        for node in self.walk():
            for name in COUNTS:
                total[name] += getattr(node.units, name)
        return total

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "kind": self.kind, "tag": self.task.tag,
                "depth": self.depth, "counts": self.counts(),
                "children": [c.snapshot() for c in self.children]}

    def __repr__(self) -> str:
        return f"<Node {self.id} {self.kind} {self.name!r}>"


def build_tree(task: Task) -> Node:
    ids = itertools.count()

    def make(t: Task, parent: Node | None) -> Node:
        node = Node(next(ids), t, parent)
        node.children = [make(sub, node) for sub in t.subtasks()]
        return node

    return make(task, None)
