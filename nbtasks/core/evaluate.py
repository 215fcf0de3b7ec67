"""Driving a composition asynchronously: the distributed twin of ``_serial``.

    run ──> Evaluation.start ──> eval(node, input, done)
                                   │ leaf: UnitRequest ──> backend.enqueue
                                   │        (backend runs chunks on engines and
                                   │         calls request_done / unit failures)
                                   └ composite: divide / chain / fan out / shuffle,
                                     then call ``done(value)``

Everything here runs on the backend's single dispatch thread, so there is
no locking: continuations are plain callbacks. User code that runs on the
client (``divide``, ``collect``) is guarded so its errors fail the run with
the task named.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from .compose import group_pairs, merge_groups
from .errors import RunFailed, UnitError, add_note
from .explain import Reasons
from .nodes import Node
from .records import ChunkRecord
from .partition import partition_of
from .run import Run

__all__ = ["Evaluation", "UnitRequest"]

_MISSING = object()


class UnitRequest:
    """Run a leaf node on a list of inputs; one entry per unit in ``results``."""

    __slots__ = ("evaluation", "node", "seq", "unit", "within", "mode", "params", "extra", "inputs", "results",
                 "remaining", "failed", "on_done", "tries", "key", "leaf", "digests", "todo")

    def __init__(self, evaluation: "Evaluation", node: Node, inputs: list,
                 on_done: Callable[["UnitRequest"], None], mode: str = "call", extra: tuple = (),
                 unit: int | None = None, within: int | None = None) -> None:
        self.evaluation = evaluation
        self.unit = unit  # for a one-input request inside a fan-out: which unit of it this is
        #: the unit of the enclosing fan-out this request serves (None: none), so records list
        #: in input order although later steps' requests are made as earlier units finish
        self.within = unit if within is None else within
        self.node = node
        self.seq = evaluation.requests_made  # orders records: requests of a node in creation order
        evaluation.requests_made += 1
        self.mode = mode
        self.params = node.task.leaf_params(evaluation.run.params)
        self.extra = extra
        self.inputs = inputs
        self.results: list = [_MISSING] * len(inputs)
        self.remaining = len(inputs)
        self.failed = 0
        self.on_done = on_done
        #: index -> {"error": n, "handback": n, "engine": n}: why a unit ran again (sparse)
        self.tries: dict[int, dict[str, int]] = {}
        self.key: str | None = None  # in the run store: task code + parameters + inputs
        self.leaf: str | None = None  # and task code + parameters + shared values alone
        self.digests: bytes | None = None  # the store's digest of each input, when taken at once
        #: the (start, stop) stretches still to run, when some units were found in the store
        self.todo: list[tuple[int, int]] | None = None

    def tried(self, index: int, why: str) -> int:
        """Count one more re-run of unit ``index`` for ``why``; returns the new count."""
        counts = self.tries.setdefault(index, {})
        counts[why] = counts.get(why, 0) + 1
        return counts[why]

    @property
    def run(self) -> Run:
        return self.evaluation.run

    def label(self, i: int) -> int:
        """The unit number users see for input ``i``: the fan-out's unit when nested."""
        return self.unit if self.unit is not None and len(self.inputs) == 1 else i


class Evaluation:
    """The client-side state of one run's composition."""

    def __init__(self, run: Run, enqueue: Callable[[UnitRequest], None],
                 stop: Callable[[Run, str], None]) -> None:
        self.run = run
        self._enqueue = enqueue
        self._stop = stop
        self.open_requests = 0
        self.requests_made = 0
        self.over = False
        #: how each kind of node (``node.kind``) is evaluated
        self._by_kind: dict[str, Callable[[Node, Any, Callable[[Any], None], int | None], None]] = {
            "leaf": self._eval_leaf, "sequence": self._eval_sequence, "concurrent": self._eval_concurrent,
            "parallel": self._eval_parallel, "mapreduce": self._eval_mapreduce,
        }

    # -- entry points called by the backend ------------------------------------
    def start(self) -> None:
        self.run.report_running()
        self._guard(self.run.tree, lambda: self.eval(self.run.tree, self.run.input, self._root_done))
        self._check_stalled()

    def request_done(self, request: UnitRequest) -> None:
        """All units of ``request`` have an outcome (result or failure)."""
        self.open_requests -= 1
        if not self.over and request.failed == 0:
            self._guard(request.node, lambda: request.on_done(request))
        self._check_stalled()

    def unit_failed(self, error: UnitError) -> None:
        if self.run.on_error == "raise":
            self.fail(error)

    def units_back(self, request: UnitRequest, errors: Iterable[UnitError] = ()) -> None:
        """A backend got units of ``request`` back (``errors``: those that failed, already
        counted): failures act as ``on_error`` says; once all its units are back and the
        run goes on, the request is done."""
        for error in errors:
            self.unit_failed(error)
            if self.over:
                break
        if request.remaining == 0 and not self.over:
            self.request_done(request)

    def fail(self, exc: BaseException) -> None:
        if self.over:
            return
        self.over = True
        self._stop(self.run, f"failed: {exc}")  # first: queued units count as cancelled by then
        self.run.report_error(exc)

    # -- the composition -------------------------------------------------------
    def _root_done(self, value: Any) -> None:
        if self.over:
            return
        self.over = True
        if self.run.failures:  # on_error="continue": failed branches never reach here
            self.run.report_error(RunFailed(self.run.task.name, self.run.failures))
        else:
            self.run.report_result(value)

    def _check_stalled(self) -> None:
        # with on_error="continue" a failed unit stops its branch; once nothing is
        # left in flight the run is over even though the root never completed
        if not self.over and self.open_requests == 0:
            self.fail(RunFailed(self.run.task.name, self.run.failures))

    def _guard(self, node: Node, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as exc:
            add_note(exc, f"in {node.kind} task {node.name!r} (run on the client)")
            self.fail(exc)

    def request(self, node: Node, inputs: list, on_done: Callable[[UnitRequest], None],
                mode: str = "call", extra: tuple = (), unit: int | None = None,
                within: int | None = None) -> None:
        req = UnitRequest(self, node, inputs, on_done, mode, extra, unit, within)
        node.units.queue(len(inputs))
        self.open_requests += 1
        self._look_up(req)
        self._enqueue(req)  # a request found whole in the store completes from the backend's queue

    def _look_up(self, req: UnitRequest) -> None:
        """Key the request in the store, take what an earlier run finished, and say why
        the other units run (``run.explain()``)."""
        store, n = self.run.store, len(req.inputs)
        if store is None:
            self.run.why.add(req.node, n, 0, {Reasons.NO_STORE: n})
            return
        cache = self.run.cache and req.node.task.cache
        found, why = store.lookup(req, cache)
        taken = self._reuse(req, found) if cache else 0
        if not cache:
            why = {Reasons.CACHE_OFF_RUN if not self.run.cache else Reasons.CACHE_OFF_TASK: n}
        self.run.why.add(req.node, n, taken, why)

    def _reuse(self, req: UnitRequest, found: list) -> int:
        """Take units an earlier run finished (same code, parameters, inputs) from the
        store: ``found``, stretches that do not overlap (``Recorder.lookup``); returns how
        many units they hold."""
        if not found:
            return 0
        have = bytearray(len(req.inputs))
        total = 0
        for f in found:
            n = f.stop - f.start
            req.results[f.start:f.stop] = f.outcome.values[f.offset:f.offset + n]
            have[f.start:f.stop] = b"\1" * n
            total += n
            self.run.report_chunk(ChunkRecord(req, f.start, f.stop, f.engine, f.outcome, f.offset, {}), blob=f.blob)
        req.node.units.reuse(total)
        req.remaining -= total
        self.run.reused += total
        req.todo = _stretches(have)
        return total

    def eval(self, node: Node, input: Any, done: Callable[[Any], None], unit: int | None = None) -> None:
        """Evaluate ``node`` on ``input``; ``unit`` is the fan-out unit it belongs to, if any."""
        if self.over:
            return
        self._by_kind[node.kind](node, input, done, unit)

    def _eval_leaf(self, node: Node, input: Any, done: Callable[[Any], None], unit: int | None) -> None:
        self.request(node, [input], lambda req: done(req.results[0]), unit=unit)

    def _eval_sequence(self, node: Node, input: Any, done: Callable[[Any], None], unit: int | None) -> None:
        steps = node.children

        def step(i: int, value: Any) -> None:
            if i == len(steps):
                done(value)
            else:
                self.eval(steps[i], value, lambda v: step(i + 1, v), unit)

        step(0, input)

    def _gather(self, nodes: list[Node], inputs: list, finish: Callable[[list], None],
                unit: int | None = None, fan_out: bool = True) -> None:
        """Evaluate ``nodes[i]`` on ``inputs[i]`` and call ``finish`` with all results.

        In a fan-out each input is unit ``i``; otherwise (concurrent branches)
        they all belong to the caller's ``unit``.
        """
        results = [_MISSING] * len(inputs)
        left = [len(inputs)]
        if not inputs:
            finish(results)
            return

        def one(i: int) -> Callable[[Any], None]:
            def store(value: Any) -> None:
                results[i] = value
                left[0] -= 1
                if left[0] == 0:
                    finish(results)
            return store

        for i, (node, value) in enumerate(zip(nodes, inputs)):
            self.eval(node, value, one(i), i if fan_out else unit)

    def _units(self, node: Node, input: Any) -> list:
        if node is self.run.tree:
            units = self.run.take_root_units()  # divided at submit
            if units is not None:
                self.run.release_prequeued()  # the request about to be made counts them again
                return units
        return node.task.units(input)

    def _eval_concurrent(self, node: Node, input: Any, done: Callable[[Any], None], unit: int | None) -> None:
        self._gather(node.children, [input] * len(node.children), lambda rs: done(tuple(rs)),
                     unit, fan_out=False)

    def _eval_parallel(self, node: Node, input: Any, done: Callable[[Any], None], unit: int | None) -> None:
        task, child = node.task, node.children[0]
        units = self._units(node, input)
        finish = lambda results: self._guard(node, lambda: done(task.finish(results)))
        if child.task.is_leaf and units:
            self.request(child, units, lambda req: finish(req.results), within=unit)
        else:
            self._gather([child] * len(units), units, finish)

    def _eval_mapreduce(self, node: Node, input: Any, done: Callable[[Any], None], unit: int | None) -> None:
        task = node.task
        mapper, reducer = node.children
        units = self._units(node, input)
        combiner = task.combiner
        cparams = combiner.leaf_params(self.run.params) if combiner else None

        def shuffle(parts: list) -> None:
            groups: dict = {}
            for part in parts:
                merge_groups(groups, part)
            self._guard(node, lambda: reduce_phase(groups))

        def reduce_phase(groups: dict) -> None:
            if not groups:
                done({})
                return
            order = {key: i for i, key in enumerate(groups)}
            finish = lambda pairs: done(dict(sorted(pairs, key=lambda kv: order[kv[0]])))
            if reducer.task.is_leaf:
                buckets: list[list] = [[] for _ in range(task.partitions)]
                for key, values in groups.items():
                    buckets[partition_of(key, task.partitions)].append((key, values))
                buckets = [b for b in buckets if b]
                self.request(reducer, buckets, lambda req: finish([kv for r in req.results for kv in r]),
                             mode="reduce", within=unit)
            else:
                keys = list(groups)
                self._gather([reducer] * len(keys), [task.reduce_input(k, groups[k]) for k in keys],
                             lambda values: finish(list(zip(keys, values))))

        if mapper.task.is_leaf:
            if units:
                self.request(mapper, units, lambda req: shuffle(req.results), mode="map",
                             extra=(combiner, cparams), within=unit)
            else:
                shuffle([])
        else:
            def grouped(results: list) -> None:
                parts = [group_pairs(mapper.name, pairs, i, combiner, cparams)
                         for i, pairs in enumerate(results)]
                shuffle(parts)
            self._gather([mapper] * len(units), units, lambda rs: self._guard(node, lambda: grouped(rs)))


def _stretches(have: bytearray) -> list[tuple[int, int]]:
    """The (start, stop) stretches of zeros in ``have`` (``find`` steps over the rest in C)."""
    out, at = [], 0
    while (start := have.find(0, at)) != -1:
        stop = have.find(1, start)
        stop = len(have) if stop == -1 else stop
        out.append((start, stop))
        at = stop
    return out

