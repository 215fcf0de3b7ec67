"""How runs and clusters show in a notebook (one live widget each), or as text elsewhere."""

from __future__ import annotations

from typing import Any

from .text import in_kernel

__all__ = ["mimebundle", "view_of"]


def view_of(obj: Any) -> Any:
    """The one widget view of ``obj``: displaying it twice shows the same live widget.

    Kept on the object itself, as its ``nbtasks_view`` attribute (not in a
    registry, which the view's own reference to the object would keep alive),
    so a run and its view are freed together.
    """
    view = getattr(obj, "nbtasks_view", None)
    if view is None:
        from ..core.run import Run

        if isinstance(obj, Run):
            from .run_view import RunView

            view = RunView(obj)
        else:
            from .cluster_view import ClusterView

            view = ClusterView(obj)
        obj.nbtasks_view = view
    return view


def mimebundle(obj: Any, include: Any = None, exclude: Any = None) -> dict:
    if not in_kernel():
        return {"text/plain": repr(obj)}
    bundle = view_of(obj).widget._repr_mimebundle_()
    bundle["text/plain"] = repr(obj)
    return bundle
