"""A run as a live progress tree of stock ipywidgets.

    ┌ header (HTML): name · state badge · elapsed · totals       [Cancel]
    ├ row per task (indented): name │ progress bar │ counts, rate, ETA, unit note
    │   └ failed units of that task (HTML <details>, expandable tracebacks)
    └ output of the units (HTML <details>), bounded

Only the model (``RunModel``) computes; this draws. A widget is set only
when its text changed, so an idle row costs no messages.

Who draws: the ticker's thread twice a second while the run goes on; the
thread that ends the run, once more at its end (``Run.on_end``); and the
first ``result()``/``wait()`` to return, once the units interrupted by a
failure or a cancel are counted. So the answer a cell prints never sits under
a stale bar, and a notebook executed headless records the final state before
its cell ends. One lock per view keeps them from drawing at once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .model import Row, RunModel, escape, format_duration
from . import ticker

__all__ = ["RunView"]

SETTLE_TIMEOUT = 10.0  # seconds after the end of a run to wait for its last counts

_BAR_STYLE = {"done": "success", "failed": "danger", "cancelled": "warning"}
_BADGE_COLOUR = {"pending": "#888", "running": "#1f77b4", "done": "#2ca02c", "failed": "#d62728",
                 "cancelled": "#ff7f0e"}


def _set(widget: Any, **values: Any) -> None:
    changed = {k: v for k, v in values.items() if getattr(widget, k) != v}
    if changed:
        with widget.hold_sync():
            for k, v in changed.items():
                setattr(widget, k, v)


class _Shared:
    """Layouts and styles shared by every widget of one view: each distinct one
    would be a model of its own, and opening models is most of a view's cost."""

    def __init__(self) -> None:
        import ipywidgets as W
        from ipywidgets.widgets.widget_int import ProgressStyle
        from ipywidgets.widgets.widget_string import HTMLStyle

        self.bar_style = ProgressStyle(description_width="12em")
        self.html_style = HTMLStyle()
        self.bar_layout = W.Layout(width="30em")
        self.layout = W.Layout()


class _RowWidgets:
    """A row: the bar (its description is the task's name) and the counts; the
    failures below it are made when the first unit of the task fails."""

    def __init__(self, row: Row, shared: _Shared) -> None:
        import ipywidgets as W

        indent = f"{1.2 * row.depth:g}"
        self.bar = W.FloatProgress(
            value=0.0, min=0.0, max=1.0, description_allow_html=True,
            description=f'<span style="padding-left:{indent}em" title="{escape(row.kind)}">{escape(row.name)}</span>',
            style=shared.bar_style, layout=shared.bar_layout)
        self.stats = W.HTML(style=shared.html_style, layout=shared.layout)
        self.box = W.HBox([self.bar, self.stats], layout=shared.layout)
        self.box.add_class("nbtasks-row")
        self.failures: Any = None

    @property
    def label(self) -> str:
        return self.bar.description


def _stats_html(row: Row, over: bool) -> str:
    c = row.counts
    parts = [f"<b>{row.finished}</b>/{row.total}"]
    for state in ("running", "queued", "failed", "retried", "cancelled"):
        if c[state]:
            parts.append(f"{c[state]} {state}")
    if row.rate:
        parts.append(f"{row.rate:,.1f}/s")
    if row.eta is not None and row.finished < row.total and not over:  # an ended run waits for nothing
        parts.append(f"ETA {format_duration(row.eta)}")
    text = " · ".join(parts)
    if row.unit_note:
        text += f' <i style="color:#666">{escape(row.unit_note)}</i>'
    return f'<span class="nbtasks-stats">{text}</span>'


def _failures_html(row: Row) -> str:
    if not row.failures:
        return ""
    items = []
    for f in row.failures:
        where = "" if f["engine"] is None else f" on engine {f['engine']} ({escape(f['host'])})"
        items.append(f"<details><summary>unit {f['index']} (input {escape(f['input'])}){where}: "
                     f"{escape(f['error'])}</summary><pre>{escape(f['traceback'])}</pre></details>")
    more = f"<div>… and {row.more_failures} more failed units</div>" if row.more_failures else ""
    return f'<div class="nbtasks-failures" style="margin-left:2em;color:#a00">{"".join(items)}{more}</div>'


class RunView:
    """The widget of one run; made once per run and shared by every display of it."""

    def __init__(self, run: Any) -> None:
        import ipywidgets as W

        self.run = run
        self.model = RunModel(run)
        self.shared = _Shared()
        self.header = W.HTML(style=self.shared.html_style, layout=self.shared.layout)
        self.cancel_button = W.Button(description="Cancel", icon="stop", button_style="warning",
                                      tooltip="Drop queued units and interrupt running ones")
        self.cancel_button.add_class("nbtasks-cancel")
        self.cancel_button.on_click(lambda _: self.run.cancel("cancelled from the progress widget"))
        self.rows = {row.id: _RowWidgets(row, self.shared) for row in self.model.rows()}
        self.output: Any = None
        self.explanation: Any = None  # why units ran, once the run is over
        self.widget = W.VBox([W.HBox([self.header, self.cancel_button], layout=self.shared.layout),
                              *[r.box for r in self.rows.values()]], layout=self.shared.layout)
        self.widget.add_class("nbtasks-run")
        self.final = False
        self._drawing = threading.Lock()
        run.on_end(lambda _: self.refresh())
        self.refresh()
        if not self.final:
            ticker.watch(self)

    def _html(self) -> Any:
        import ipywidgets as W

        return W.HTML(style=self.shared.html_style, layout=self.shared.layout)

    def _insert_after(self, box: Any, widget: Any) -> None:
        children = list(self.widget.children)
        children.insert(children.index(box) + 1, widget)
        self.widget.children = children

    def refresh(self) -> bool:
        """Draw what changed; True once the view is final and needs no more refreshes."""
        with self._drawing:
            if not self.final:
                self._draw()
            return self.final

    def _draw_explanation(self) -> None:
        """Per task: units from the store, and why the others ran (``run.explain()``)."""
        lines = [str(t) for t in self.run.explain() if t.units]
        if not lines:
            return
        if self.explanation is None:
            self.explanation = self._html()
            self.explanation.add_class("nbtasks-explain")
            self.widget.children = [*self.widget.children, self.explanation]
        _set(self.explanation, value='<div style="color:#555;font-size:90%">'
                                     + "<br>".join(escape(line) for line in lines) + "</div>")

    def _draw(self) -> None:
        # the state first: everything drawn below is at least this recent (at the end of a run
        # it has moved while done() is still False: the future is set after this draw)
        done = self.run.state.finished
        head = self.model.headline()
        state = head["state"]
        colour = _BADGE_COLOUR.get(state, "#888")
        c = head["counts"]
        note = f' <i style="color:#666">{escape(head["note"])}</i>' if head["note"] and not done else ""
        error = (f'<div class="nbtasks-error" style="color:#d62728">{escape(head["error"])}</div>'
                 if head["error"] else "")
        _set(self.header, value=(
            f'<b class="nbtasks-name">{escape(head["name"])}</b> '
            f'<span class="nbtasks-badge nbtasks-state-{state}" style="background:{colour};color:white;'
            f'border-radius:0.6em;padding:0 0.5em">{state}</span>{note} '
            f'<span class="nbtasks-elapsed">{format_duration(head["elapsed"])}</span> · '
            f'{c["done"]} done · {c["failed"]} failed'
            + (f' · {c["cancelled"]} cancelled' if c["cancelled"] else "")
            + (f' · <span class="nbtasks-reused">{head["reused"]} from the store</span>' if head["reused"] else "")
            + error))
        for row in self.model.rows():
            widgets = self.rows[row.id]
            style = _BAR_STYLE.get(state, "") if done else ("danger" if row.counts["failed"] else "")
            _set(widgets.bar, value=row.fraction if row.total else (1.0 if done and state == "done" else 0.0),
                 bar_style=style)
            _set(widgets.stats, value=_stats_html(row, done))
            if row.failures:
                if widgets.failures is None:
                    widgets.failures = self._html()
                    widgets.failures.add_class("nbtasks-failures")
                    self._insert_after(widgets.box, widgets.failures)
                _set(widgets.failures, value=_failures_html(row))
        output = self.model.output()
        if output:
            if self.output is None:
                self.output = self._html()
                self.output.add_class("nbtasks-output")
                self.widget.children = [*self.widget.children, self.output]
            _set(self.output, value=f'<details><summary>output of the units</summary>'
                                    f'<pre style="max-height:20em;overflow:auto">{escape(output)}</pre></details>')
        if done:
            self._draw_explanation()
            _set(self.cancel_button, disabled=True)
            self.cancel_button.layout.display = "none"  # nothing left to cancel
            # interrupted units are counted a moment after a cancel: draw until they are
            self.final = self.run.settled or time.time() - (self.run.finished or 0) > SETTLE_TIMEOUT
