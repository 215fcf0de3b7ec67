"""A cluster's engines as a live table: host, pid, busy or idle, units done."""

from __future__ import annotations

from typing import Any

from . import ticker
from .model import escape

__all__ = ["ClusterView"]


class ClusterView:
    def __init__(self, cluster: Any) -> None:
        import ipywidgets as W

        self.cluster = cluster
        self.widget = W.HTML()
        self.widget.add_class("nbtasks-cluster")
        self.refresh()
        ticker.watch(self)

    def html(self) -> str:
        c = self.cluster
        rows = c.engines_status() if c.state.value == "running" else []
        head = (f"<b>nbtasks cluster</b> · {escape(c.state.value)} · {len(rows)} engine(s)"
                + ("" if c.owned else " · connected"))
        if not rows:
            return f"<div>{head}</div>"
        cells = "".join(
            f'<tr class="nbtasks-engine nbtasks-engine-{"busy" if r["busy"] else "idle"}">'
            f'<td>{r["id"]}</td><td>{escape(r["host"])}</td><td>{r["pid"]}</td>'
            f'<td>{"busy" if r["busy"] else "idle"}</td><td style="text-align:right">{r["units_done"]:,}</td></tr>'
            for r in rows)
        return (f"<div>{head}</div><table><thead><tr><th>engine</th><th>host</th><th>pid</th><th>state</th>"
                f"<th>units done</th></tr></thead><tbody>{cells}</tbody></table>")

    def refresh(self) -> bool:
        value = self.html()
        if self.widget.value != value:
            self.widget.value = value
        return self.cluster.state.value in ("stopped", "failed")
