"""Why each unit of a run was taken from the store or ran: ``run.explain()``.

Every leaf request of a run is looked up in the store (``Recorder.lookup``),
which says how many units it found and, for the others, why not, in words a
person reads ("input new", "parameter sigma changed", ...). The run adds them
up per task; the store keeps the sum with the run (``runs.explain``) for the
sidebar and for the run loaded in a later kernel.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Iterator

__all__ = ["Explanation", "TaskExplanation", "Reasons", "Tally"]


class Reasons:
    """The words for why units ran; the store adds what changed ("parameter sigma changed")."""

    NO_EARLIER_RUN = "no earlier run"
    INPUT_NEW = "input new"
    NOT_FINISHED = "did not finish before"
    FAILED_BEFORE = "failed before"
    DROPPED = "result dropped by the store's size limit"
    UNREADABLE = "stored result could not be read"
    CACHE_OFF_RUN = "cache turned off: submit(cache=False)"
    CACHE_OFF_TASK = "cache turned off: the task has cache=False"
    NO_STORE = "no run store: store=False"
    UNKEYED = "input or parameters cannot be pickled to compare"


@dataclass
class TaskExplanation:
    """One task of a run: its units, how many came from the store, and why the others ran."""

    task: str
    node: int
    units: int = 0
    reused: int = 0
    ran: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.units:
            return f"{self.task}: no units"
        head = f"{self.task}: {self.reused} of {self.units} units from the store"
        if not self.ran:
            return head
        why = "; ".join(f"{reason} ({n})" for reason, n in sorted(self.ran.items(), key=lambda kv: -kv[1]))
        return f"{head}; {self.units - self.reused} ran: {why}"


class Explanation:
    """Per task of a run: units reused from the store, and why the others ran.

    Prints as one line per task; ``tasks`` has the numbers; shows as a small table
    in a notebook.
    """

    def __init__(self, tasks: list[TaskExplanation]) -> None:
        self.tasks = tasks

    def __iter__(self) -> Iterator[TaskExplanation]:
        return iter(self.tasks)

    def __getitem__(self, task: str) -> TaskExplanation:
        """The explanation of the task named ``task``."""
        for t in self.tasks:
            if t.task == task:
                return t
        raise KeyError(f"no task named {task!r} in this run (it has {[t.task for t in self.tasks]})")

    def __str__(self) -> str:
        return "\n".join(str(t) for t in self.tasks) or "no units"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(t.task)}</td><td>{t.reused}/{t.units}</td><td>"
            + html.escape("; ".join(f"{r} ({n})" for r, n in sorted(t.ran.items(), key=lambda kv: -kv[1])))
            + "</td></tr>" for t in self.tasks)
        return ("<table class='nbtasks-explain'><tr><th>task</th><th>from the store</th>"
                f"<th>why the others ran</th></tr>{rows}</table>")

    def to_record(self) -> dict[str, Any]:
        """As the store keeps it (JSON)."""
        return {"tasks": [{"node": t.node, "task": t.task, "units": t.units, "reused": t.reused,
                           "ran": dict(t.ran)} for t in self.tasks]}

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> "Explanation":
        """From ``to_record``'s dict (a run loaded from the store)."""
        tasks = [TaskExplanation(t["task"], t["node"], t["units"], t["reused"], dict(t["ran"]))
                 for t in (record or {}).get("tasks", [])]
        return cls(tasks)


class Tally:
    """What a run adds up as its requests are looked up (on the dispatch thread)."""

    def __init__(self) -> None:
        self._by_node: dict[int, TaskExplanation] = {}

    def add(self, node: Any, units: int, reused: int, ran: dict[str, int]) -> None:
        t = self._by_node.get(node.id)
        if t is None:
            t = self._by_node[node.id] = TaskExplanation(node.name, node.id)
        t.units += units
        t.reused += reused
        for reason, n in ran.items():
            if n:
                t.ran[reason] = t.ran.get(reason, 0) + n

    def explanation(self) -> Explanation:
        return Explanation([TaskExplanation(t.task, t.node, t.units, t.reused, dict(t.ran))
                            for _, t in sorted(self._by_node.items())])
