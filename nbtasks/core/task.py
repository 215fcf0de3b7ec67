"""The task model: a ``Task`` turns an input into a result through ``work()``.

Calling a task runs it right here, serially; ``submit`` hands it to a
backend (the cluster layer) and returns a :class:`~nbtasks.core.run.Run`.
Composite tasks (``compose.py``) are trees of tasks; their leaves are the
tasks whose ``work()`` actually runs on engines.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, overload

from .errors import TaskDefinitionError
from .params import Param, bind_params, params_of

if TYPE_CHECKING:
    from .run import Run

__all__ = ["Task", "FunctionTask", "task", "as_task", "NOTHING", "Args"]


class _Nothing:
    """The input of a task submitted without one (``load.submit()``)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __reduce__(self):
        return (_Nothing, ())

    def __repr__(self) -> str:
        return "NOTHING"


NOTHING: Any = _Nothing()


class Args(tuple):
    """Several positional inputs for one call (a reducer's ``key, values``)."""

    __slots__ = ()


def call_with(fn: Callable, input: Any, params: Mapping[str, Any]) -> Any:
    """Call ``fn`` the way a task's input shape says: no input, one, or several."""
    if input is NOTHING:
        return fn(**params)
    if type(input) is Args:
        return fn(*input, **params)
    return fn(input, **params)


class Task:
    """Root of all tasks. Subclass and override ``work()``, or use ``@nt.task``.

    ``work()``'s positional arguments without defaults are its input; its
    keyword arguments (defaults or keyword-only) are its parameters.
    """

    #: whether ``work()`` runs on an engine as one unit (False for compositions)
    is_leaf = True

    #: unit-level fault handling (leaf tasks); set with ``@nt.task(retries=..., timeout=...)``
    retries = 0               # re-runs of a unit that raised, with exponential backoff
    timeout: float | None = None  # seconds a unit may run before it is interrupted
    max_engine_failures = 3   # engine deaths while running one unit before it is failed
    #: limits across all runs on a cluster: units on engines at once, unit starts per window
    max_concurrent: int | None = None
    rate: tuple[int, float] | None = None  # (units, seconds)
    #: False: its units always run, never taken from the run store (a random simulation, a
    #: fetch of live data); they are still recorded. Set with ``@nt.task(cache=False)``.
    cache = True

    def __init__(self, name: str | None = None, tag: str | None = None, *, retries: int | None = None,
                 timeout: float | None = None, max_engine_failures: int | None = None,
                 max_concurrent: int | None = None, rate: tuple[int, float] | None = None,
                 cache: bool | None = None) -> None:
        self._name = name
        self._tag = tag
        if cache is not None:
            if not isinstance(cache, bool):
                raise TaskDefinitionError(f"cache must be True or False, got {cache!r}")
            self.cache = cache
        if retries is not None:
            self.retries = _whole("retries", retries, 0)
        if timeout is not None:
            self.timeout = _seconds("timeout", timeout)
        if max_engine_failures is not None:
            self.max_engine_failures = _whole("max_engine_failures", max_engine_failures, 1)
        if max_concurrent is not None:
            self.max_concurrent = _whole("max_concurrent", max_concurrent, 1)
        if rate is not None:
            if not (isinstance(rate, tuple) and len(rate) == 2):
                raise TaskDefinitionError(f"rate must be (units, seconds), got {rate!r}")
            self.rate = (_whole("rate's units", rate[0], 1), _seconds("rate's seconds", rate[1]))

    # -- identity -----------------------------------------------------------
    @property
    def name(self) -> str:
        return getattr(self, "_name", None) or type(self).__name__

    @property
    def tag(self) -> str:
        """Groups units for counting (``run.counts(by="tag")``); the name by default."""
        return getattr(self, "_tag", None) or self.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- structure ----------------------------------------------------------
    def subtasks(self) -> tuple["Task", ...]:
        return ()

    def walk(self) -> Iterator["Task"]:
        yield self
        for sub in self.subtasks():
            yield from sub.walk()

    def work(self, *args: Any, **params: Any) -> Any:
        raise TaskDefinitionError(f"{type(self).__name__} must override work()")

    def _signature_target(self) -> Callable:
        return self.work

    @functools.cached_property
    def _own_params(self) -> tuple[dict[str, Param], bool]:
        return params_of(self._signature_target())

    def params(self) -> dict[str, Param]:
        """Every keyword parameter this task (or any subtask) declares."""
        out: dict[str, Param] = {}
        for t in self.walk():
            if t.is_leaf:
                for name, p in t._own_params[0].items():
                    out.setdefault(name, p)
        return out

    def _accepts_any_param(self) -> bool:
        return any(t.is_leaf and t._own_params[1] for t in self.walk())

    def bind(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``params`` for this whole task as a normal call would."""
        return bind_params(f"{self.name}()", self.params(), self._accepts_any_param(), params)

    def leaf_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The subset of run-wide ``params`` this leaf declares."""
        declared, var_kw = self._own_params
        if var_kw:
            return dict(params)
        return {k: v for k, v in params.items() if k in declared}

    # -- running ------------------------------------------------------------
    def run_unit(self, input: Any, params: Mapping[str, Any]) -> Any:
        """Run one unit of a leaf task; ``params`` already filtered for it."""
        return call_with(self.work, input, params)

    def unit_caller(self, params: Mapping[str, Any]) -> Callable[[Any], Any]:
        """``run_unit`` with ``params`` bound: what an engine calls for each unit."""
        return functools.partial(self.run_unit, params=params)

    def _serial(self, input: Any, params: Mapping[str, Any]) -> Any:
        """Run this task (and any subtasks) here, in order: the reference semantics."""
        return self.run_unit(input, self.leaf_params(params))

    def __call__(self, *args: Any, **params: Any) -> Any:
        bound = self.bind(params)
        return self._serial(_input_from(args), bound)

    def submit(
        self,
        *args: Any,
        cluster: Any = None,
        on_error: str = "raise",
        progress: bool | None = None,
        store: Any = None,
        cache: bool = True,
        **params: Any,
    ) -> "Run":
        """Start this task on a cluster and return its :class:`Run` at once.

        ``cluster`` defaults to a local cluster started on first use;
        ``on_error="continue"`` lets other units finish when one fails.
        Units an earlier run finished (same code, parameters and input) are
        taken from the run ``store`` (a path; default ``$NBTASKS_STORE`` or the
        Jupyter data dir; False records nothing) unless ``cache=False``.
        """
        from .run import start_run

        return start_run(self, _input_from(args), params, cluster=cluster,
                         on_error=on_error, progress=progress, store=store, cache=cache)

    def form(self, *args: Any, cluster: Any = None, show: Callable[[Any], Any] | None = None,
             **values: Any) -> Any:
        """A form of this task's parameters with a Run button (a widget in a notebook).

        ``args`` is the input every run gets, ``values`` preset parameters, and
        ``show(result)`` turns a result into what to display (a figure, say).
        """
        from .hooks import hooks

        if hooks.form is None:
            raise RuntimeError("forms need the ui layer: import nbtasks (not only nbtasks.core)")
        return hooks.form(self, _input_from(args), cluster, show, values)

    def run(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Submit and wait: the result, or the unit's error raised here."""
        return self.submit(*args, **kwargs).result(timeout)


def _whole(what: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise TaskDefinitionError(f"{what} must be an int >= {least}, got {value!r}")
    return value


def _seconds(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise TaskDefinitionError(f"{what} must be a number of seconds > 0, got {value!r}")
    return float(value)


def _input_from(args: tuple) -> Any:
    if not args:
        return NOTHING
    if len(args) == 1:
        return args[0]
    return Args(args)


class FunctionTask(Task):
    """A plain function as a task: its body is ``work()``."""

    def __init__(self, fn: Callable, name: str | None = None, tag: str | None = None,
                 **faults: Any) -> None:
        if not callable(fn):
            raise TaskDefinitionError(f"a task needs a callable, got {type(fn).__name__} {fn!r}")
        super().__init__(name or getattr(fn, "__name__", None) or repr(fn), tag, **faults)
        self.fn = fn
        functools.update_wrapper(self, fn, updated=())

    def _signature_target(self) -> Callable:
        return self.fn

    def work(self, *args: Any, **params: Any) -> Any:
        return self.fn(*args, **params)

    def run_unit(self, input: Any, params: Mapping[str, Any]) -> Any:
        return call_with(self.fn, input, params)

    def unit_caller(self, params: Mapping[str, Any]) -> Callable[[Any], Any]:
        # one frame between the loop and the function: a no-op unit's overhead is mostly calls
        fn = self.fn
        if params:
            return functools.partial(call_with, fn, params=params)

        def call(input: Any) -> Any:
            if input is NOTHING:
                return fn()
            if type(input) is Args:
                return fn(*input)
            return fn(input)
        return call

    def __getstate__(self) -> dict:
        # cached_property values and update_wrapper's __wrapped__ need not travel
        state = dict(self.__dict__)
        state.pop("_own_params", None)
        state.pop("__wrapped__", None)
        return state


@overload
def task(fn: Callable) -> FunctionTask: ...
@overload
def task(*, name: str | None = None, tag: str | None = None, retries: int | None = None,
         timeout: float | None = None, max_engine_failures: int | None = None,
         max_concurrent: int | None = None, rate: tuple[int, float] | None = None,
         cache: bool | None = None) -> Callable[[Callable], FunctionTask]: ...


def task(fn: Callable | None = None, *, name: str | None = None, tag: str | None = None,
         retries: int | None = None, timeout: float | None = None, max_engine_failures: int | None = None,
         max_concurrent: int | None = None, rate: tuple[int, float] | None = None, cache: bool | None = None):
    """Make a function a :class:`Task`: ``@nt.task`` or ``@nt.task(name=..., retries=2, timeout=60)``;
    ``cache=False``: its units always run (see ``Task.cache``)."""
    faults = {"retries": retries, "timeout": timeout, "max_engine_failures": max_engine_failures,
              "max_concurrent": max_concurrent, "rate": rate, "cache": cache}
    if fn is None:
        return lambda f: FunctionTask(f, name=name, tag=tag, **faults)
    return FunctionTask(fn, name=name, tag=tag, **faults)


def as_task(obj: Any, role: str = "task") -> Task:
    """Accept a task or a plain callable wherever a task is expected."""
    if isinstance(obj, Task):
        return obj
    if callable(obj):
        return FunctionTask(obj)
    raise TaskDefinitionError(f"{role} must be a Task or a callable, got {type(obj).__name__} {obj!r}")
