"""Task parameters: what a task declares, and checking what a caller passes.

A parameter is any argument of ``work()`` that has a default or is
keyword-only; positional arguments without a default are the task's input.
Annotations (``int``, ``Literal[...]``, an ``Enum``, ``Annotated[float,
Range(0, 1)]``...) are checked here, before anything is dispatched, and are
what parameter forms are generated from.
"""

from __future__ import annotations

import enum
import inspect
import pathlib
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping

__all__ = ["Range", "Param", "params_of", "check_value", "bind_params"]

EMPTY = inspect.Parameter.empty


@dataclass(frozen=True)
class Range:
    """Constraint for ``Annotated[float, Range(lo, hi)]``: ``lo <= value <= hi``."""

    min: float | None = None
    max: float | None = None
    step: float | None = None

    def check(self, value: Any) -> str | None:
        if self.min is not None and value < self.min:
            return f"must be >= {self.min}"
        if self.max is not None and value > self.max:
            return f"must be <= {self.max}"
        return None


@dataclass(frozen=True)
class Param:
    """One declared keyword parameter of a task."""

    name: str
    annotation: Any = EMPTY  # the bare type: ``params_of`` moves ``Annotated`` metadata to constraints
    default: Any = EMPTY
    constraints: tuple = ()

    @property
    def required(self) -> bool:
        return self.default is EMPTY

    @property
    def kind(self) -> Any:
        """Another name for ``annotation``: the bare type, as ``params_of`` stores it."""
        return self.annotation


def _split_annotated(annotation: Any) -> tuple[Any, tuple]:
    if typing.get_origin(annotation) is typing.Annotated:
        base, *meta = typing.get_args(annotation)
        return base, tuple(meta)
    return annotation, ()


def params_of(fn: Callable) -> tuple[dict[str, Param], bool]:
    """Declared parameters of ``fn``, and whether it takes ``**kwargs``."""
    try:
        sig = inspect.signature(fn)
    except (ValueError, TypeError):  # builtins like max: an input, no parameters
        return {}, False
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to raw annotations
        hints = {}
    params: dict[str, Param] = {}
    var_kw = False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind is p.KEYWORD_ONLY or p.default is not EMPTY:  # ``*args`` has no default
            base, meta = _split_annotated(hints.get(p.name, p.annotation))
            params[p.name] = Param(p.name, base, p.default, meta)
    return params, var_kw


def _type_error(base: Any, value: Any) -> str | None:
    """Why ``value`` does not fit ``base``, or None when it does (or cannot be told)."""
    if base is EMPTY or base is Any:
        return None
    origin = typing.get_origin(base)
    if origin is typing.Literal:
        choices = typing.get_args(base)
        return None if value in choices else f"must be one of {list(choices)!r}"
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        errors = [_type_error(arg, value) for arg in typing.get_args(base)]
        return None if any(e is None for e in errors) else f"expected {base}, got {type(value).__name__}"
    if origin is not None:  # list[int], dict[...]: check the container type only
        base = origin
    if not isinstance(base, type):
        return None
    if base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif issubclass(base, pathlib.PurePath):
        ok = isinstance(value, (str, pathlib.PurePath))
    elif issubclass(base, enum.Enum):
        ok = isinstance(value, base)
        if not ok:
            return f"must be one of {[m.name for m in base]!r}"
    else:
        ok = isinstance(value, base)
    return None if ok else f"expected {base.__name__}, got {type(value).__name__} {value!r}"


def check_value(param: Param, value: Any) -> tuple[str, type[Exception]] | None:
    """The problem with ``value`` for ``param`` and the exception type to raise, or None."""
    problem = _type_error(param.annotation, value)
    if problem:
        return problem, TypeError
    for c in param.constraints:
        check = getattr(c, "check", None)
        problem = check(value) if check else None
        if problem:
            return problem, ValueError
    return None


def bind_params(
    owner: str,
    declared: Mapping[str, Param],
    accepts_any: bool,
    given: Mapping[str, Any],
) -> dict[str, Any]:
    """Check ``given`` against ``declared`` as a normal call would, and return it.

    Raises ``TypeError`` for unknown names, missing required parameters and
    wrong types, ``ValueError`` for values outside a constraint.
    """
    if not accepts_any:
        unknown = [name for name in given if name not in declared]
        if unknown:
            raise TypeError(f"{owner} got an unexpected keyword argument {unknown[0]!r}"
                            + (f" (it declares {sorted(declared)})" if declared else
                               " (it declares no parameters)"))
    missing = [p.name for p in declared.values() if p.required and p.name not in given]
    if missing:
        raise TypeError(f"{owner} missing required keyword argument {missing[0]!r}")
    for name, value in given.items():
        param = declared.get(name)
        if param is None:
            continue
        problem = check_value(param, value)
        if problem:
            message, exc_type = problem
            raise exc_type(f"{owner}: parameter {name!r} {message}")
    return dict(given)
