"""Text progress (tqdm) for scripts and CI logs: shown while a caller waits."""

from __future__ import annotations

import sys
import time
from typing import Any

from ..core import states

__all__ = ["wait_with_progress", "wants_text_progress", "in_kernel"]

REFRESH = 0.2  # seconds between bar updates


def in_kernel() -> bool:
    """True inside a Jupyter kernel, where widgets can show."""
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    ip = get() if get else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def wants_text_progress(run: Any) -> bool:
    """Explicit ``progress=`` wins; otherwise show a bar outside notebooks."""
    return run.progress if run.progress is not None else not in_kernel()


def wait_with_progress(run: Any, timeout: float | None) -> None:
    """Block until ``run`` is done (or ``timeout``), drawing a tqdm bar meanwhile."""
    if not wants_text_progress(run):
        return
    from tqdm.auto import tqdm

    deadline = None if timeout is None else time.monotonic() + timeout
    with tqdm(desc=run.task.name, unit="unit", file=sys.stderr, leave=True, dynamic_ncols=True,
              mininterval=REFRESH) as bar:
        while True:
            over = run.done()  # before the counts: the last bar drawn shows the final counts
            counts = run.counts()
            finished = states.finished(counts)
            bar.total = states.total(counts)
            bar.n = finished
            note = run.state.value + (f", {counts['failed']} failed" if counts["failed"] else "")
            bar.set_postfix_str(note, refresh=False)
            bar.refresh()
            if over:
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            run.wait_for_change(REFRESH if left is None else min(REFRESH, left))
