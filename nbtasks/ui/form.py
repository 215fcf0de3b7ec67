"""Parameter forms: ``task.form(data)`` — fields from the task's parameters,
a Run button, inline validation, each run's progress and result below, and
a small history of previous runs.

Fields follow the annotations (the ipywidgets ``interact`` idea): a
``Range`` with both ends gives a slider, ``Literal``/``Enum`` a dropdown,
``bool`` a checkbox, ``int``/``float`` number boxes, ``str``/``Path`` text.
Validation is the task's own (``task.bind``), so the form refuses exactly
what ``submit`` would, before anything is dispatched.
"""

from __future__ import annotations

import enum
import io
import math
import pathlib
import threading
import types
import typing
from typing import Any, Callable

from ..core.errors import short_repr
from ..core.params import EMPTY, Param, Range, check_value
from ..core.task import NOTHING, Task
from . import ticker
from .model import escape, format_duration

__all__ = ["TaskForm", "field_for"]

HISTORY = 10  # previous runs kept in the table
SUMMARY = 60  # characters of a result shown in the table
_PAD = ' style="padding:0 0.8em 0 0"'


def _range_of(param: Param) -> Range | None:
    return next((c for c in param.constraints if isinstance(c, Range)), None)


def _optional(kind: Any) -> Any:
    """``X`` for ``Optional[X]`` / ``X | None``, else None."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(kind)) == 2:
            return args[0]
    return None


def _kind(param: Param) -> Any:
    if param.annotation is not EMPTY:
        return param.annotation
    return type(param.default) if param.default not in (EMPTY, None) else str


def field_for(param: Param, value: Any = EMPTY) -> Any:
    """The widget for one parameter, preset to ``value`` (or the default)."""
    import ipywidgets as W

    kind = _kind(param)
    value = param.default if value is EMPTY else value
    common = {"description": param.name, "style": {"description_width": "initial"}}
    if typing.get_origin(kind) is typing.Literal:
        choices = list(typing.get_args(kind))
        return W.Dropdown(options=choices, value=value if value in choices else choices[0], **common)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        members = list(kind)
        return W.Dropdown(options=[(m.name, m) for m in members],
                          value=value if value in members else members[0], **common)
    if kind is bool:
        return W.Checkbox(value=bool(value) if value is not EMPTY else False, indent=False, **common)
    rng = _range_of(param)
    if kind in (int, float):
        number = 0 if value is EMPTY else value
        if rng is not None and rng.min is not None and rng.max is not None:
            if kind is int:
                return W.IntSlider(min=int(rng.min), max=int(rng.max), step=int(rng.step or 1),
                                   value=int(number), continuous_update=False, **common)
            # a round step (0.01, 0.1, ...) so round values and the default sit on the grid
            step = rng.step or 10 ** math.floor(math.log10((rng.max - rng.min) / 100))
            return W.FloatSlider(min=rng.min, max=rng.max, step=step, value=float(number),
                                 continuous_update=False, readout_format=".3g", **common)
        if kind is int:
            return W.IntText(value=int(number), **common)
        return W.FloatText(value=float(number), **common)
    text = "" if value is EMPTY or value is None else str(value)
    placeholder = "required" if param.required else ("empty: None" if _optional(kind) else "")
    return W.Text(value=text, placeholder=placeholder, **common)


def _read(param: Param, widget: Any) -> Any:
    """The field's value as the task expects it (text fields hold strings)."""
    value = widget.value
    if not isinstance(widget.value, str):
        return value
    kind = _kind(param)
    inner = _optional(kind)
    if inner is not None:
        if value.strip() == "":
            return None
        kind = inner
    if value == "":
        return value
    if isinstance(kind, type) and issubclass(kind, pathlib.PurePath):
        return kind(value)
    if kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            return value  # left as text: validation says what is wrong
    return value


def _displayable(value: Any) -> Any:
    """A matplotlib figure made with the object API has no notebook repr unless
    pyplot's inline backend is loaded: show it as a PNG ourselves."""
    savefig = getattr(value, "savefig", None)
    if savefig is None:
        return value
    from IPython.display import Image

    buffer = io.BytesIO()
    savefig(buffer, format="png", bbox_inches="tight")
    return Image(data=buffer.getvalue(), format="png")


class TaskForm:
    """A form that runs ``task`` on a fixed input with the parameters it shows."""

    def __init__(self, task: Task, input: Any = NOTHING, cluster: Any = None,
                 show: Callable[[Any], Any] | None = None, **values: Any) -> None:
        import ipywidgets as W

        self.task = task
        self.input = input
        self.cluster = cluster
        self.show = show  # result -> something to display (a figure...); the result itself by default
        self.params = task.params()
        self.fields = {name: field_for(p) for name, p in self.params.items()}
        self.set(**values)  # presets are checked like any value set from code
        self.error: str | None = None  # why the last Run was refused, as plain text
        self._drawn = threading.Event()  # the latest run's result is on show
        self._drawn.set()
        self.runs: list[Any] = []
        self.history: list[dict[str, Any]] = []
        self.button = W.Button(description="Run", icon="play", button_style="primary")
        self.button.add_class("nbtasks-run-button")
        self.button.on_click(lambda _: self.submit())
        self.message = W.HTML()
        self.message.add_class("nbtasks-form-message")
        self.current = W.VBox()
        self.result = W.Output()
        self.result.add_class("nbtasks-result")
        self.history_html = W.HTML()
        self.history_html.add_class("nbtasks-history")
        for field in self.fields.values():
            field.observe(lambda _: self._clear_message(), names="value")
        self.widget = W.VBox([
            W.HTML(f"<b>{escape(task.name)}</b>" + ("" if self.params else " (no parameters)")),
            W.VBox(list(self.fields.values())),
            W.HBox([self.button, self.message]),
            self.current, self.result, self.history_html,
        ])
        self.widget.add_class("nbtasks-form")

    # -- values ------------------------------------------------------------------------
    @property
    def values(self) -> dict[str, Any]:
        """The parameters as the form shows them now."""
        out = {}
        for name, param in self.params.items():
            value = _read(param, self.fields[name])
            if value == "" and param.required:
                continue  # an empty required field is a missing parameter
            out[name] = value
        return out

    @values.setter
    def values(self, values: dict[str, Any]) -> None:
        self.set(**values)

    def set(self, **values: Any) -> None:
        """Set fields from code; refuses (``TypeError``/``ValueError``) what the task would."""
        for name, value in values.items():
            param = self.params.get(name)
            if param is None:
                raise TypeError(f"{self.task.name}: no parameter named {name!r} (it has {sorted(self.params)})")
            problem = check_value(param, value)
            if problem:
                message, exc_type = problem
                raise exc_type(f"{self.task.name}: parameter {name!r} {message}")
        for name, value in values.items():
            widget = self.fields[name]
            if isinstance(widget.value, str):
                value = "" if value is None else str(value)
            widget.value = value

    # -- running -------------------------------------------------------------------------
    def validate(self) -> dict[str, Any] | None:
        """The bound parameters, or None with the reason shown next to the button."""
        try:
            return self.task.bind(self.values)
        except (TypeError, ValueError) as exc:
            self._show_message(str(exc))
            return None

    def submit(self) -> Any:
        """What the Run button does: validate, submit, show the run below the form."""
        params = self.validate()
        if params is None:
            return None
        args = () if self.input is NOTHING else (self.input,)
        try:
            run = self.task.submit(*args, cluster=self.cluster, **params)
        except Exception as exc:  # e.g. something unpicklable: say so, dispatch nothing
            self._show_message(f"{type(exc).__name__}: {exc}")
            return None
        from .display import view_of

        self.runs.append(run)
        self.history.insert(0, {"n": len(self.runs), "params": params, "run": run})
        del self.history[HISTORY:]
        self.current.children = [view_of(run).widget]
        self.result.clear_output()
        self._drawn.clear()
        self._draw_history()
        ticker.watch(self)
        return run

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for the latest run and for its result to be on show; return the result."""
        if not self.runs:
            raise RuntimeError("the form has not run yet: press Run or call form.submit()")
        run = self.runs[-1]
        run.wait(timeout)
        if not self._drawn.wait(timeout):
            raise TimeoutError("the form's result was not shown in time")
        return run.result(0)

    def refresh(self) -> bool:
        """Called by the ticker while the latest run goes on."""
        run = self.runs[-1] if self.runs else None
        if run is None or not run.done():
            return run is None
        if not self._drawn.is_set():
            try:
                if run.state.value == "done":
                    shown = run.result() if self.show is None else self.show(run.result())
                    self.result.append_display_data(_displayable(shown))
            except Exception as exc:  # a broken show() must not leave the form hanging
                self._show_message(f"show(result) failed: {type(exc).__name__}: {exc}")
            finally:
                self._drawn.set()
        self._draw_history()
        return True

    # -- drawing -------------------------------------------------------------------------
    def _show_message(self, text: str) -> None:
        self.error = text
        self.message.value = f'<span class="nbtasks-invalid" style="color:#d62728">{escape(text)}</span>'

    def _clear_message(self) -> None:
        self.error = None
        if self.message.value:
            self.message.value = ""

    def _draw_history(self) -> None:
        rows = []
        for entry in self.history:
            run = entry["run"]
            params = ", ".join(f"{k}={v!r}" for k, v in entry["params"].items())
            if run.state.value == "done":
                outcome = short_repr(run.result(), limit=SUMMARY)
            elif run.state.value == "failed":
                outcome = str(run.exception()).splitlines()[0]
            else:
                outcome = ""
            duration = format_duration(run.elapsed) if run.done() else "…"
            cells = (entry["n"], escape(params), run.state.value, duration, escape(outcome))
            rows.append("<tr>" + "".join(f"<td{_PAD}>{c}</td>" for c in cells) + "</tr>")
        head = "".join(f'<th{_PAD} align="left">{h}</th>' for h in ("#", "parameters", "state", "time", "result"))
        self.history_html.value = (
            f"<details open><summary>previous runs</summary><table><thead><tr>{head}</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></details>") if rows else ""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        bundle = self.widget._repr_mimebundle_()
        bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        return f"<TaskForm {self.task.name!r} {self.values!r}>"
