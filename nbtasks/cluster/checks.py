"""The check every engine passes before it gets work: it imports nbtasks, at our version."""

from __future__ import annotations

from typing import Any

from .._version import __version__
from .errors import ClusterError

__all__ = ["check_engines"]


def _identify() -> tuple[str, int, str]:
    """Runs on each engine: its nbtasks version, pid and host."""
    import os
    import socket

    import nbtasks

    return nbtasks.__version__, os.getpid(), socket.gethostname()


# ipyparallel sends a function of __main__ by value and runs it in the engine's namespace:
# the check itself needs nothing of nbtasks there (an engine without it, or with another
# version, gets to say so), and it is one round trip.
_identify.__module__ = "__main__"


def check_engines(client: Any, ids: list[int], timeout: float = 15.0) -> dict[int, dict[str, Any]]:
    """Per engine its host and pid; raises ``ClusterError`` naming the engines that cannot
    import nbtasks, do not answer, or run another version."""
    view = client.direct_view(targets=ids)
    try:
        answers = view.apply_async(_identify).get(timeout)
    except Exception as exc:
        text = str(exc)
        if "ModuleNotFoundError" in text or "ImportError" in text \
                or getattr(exc, "ename", None) in ("ModuleNotFoundError", "ImportError"):
            raise ClusterError(f"engine(s) {ids} cannot import nbtasks: install nbtasks {__version__} "
                               f"in the engines' Python environment ({text.strip().splitlines()[-1]})") from exc
        raise ClusterError(f"engine(s) {ids} did not answer the nbtasks check within {timeout:g}s: "
                           f"{exc}") from exc
    wrong = {e: version for e, (version, _, _) in zip(ids, answers) if version != __version__}
    if wrong:
        raise ClusterError(f"engine(s) run another nbtasks version than this client ({__version__}): "
                           + ", ".join(f"engine {e} has {v}" for e, v in wrong.items()))
    return {engine: {"host": host, "pid": pid} for engine, (_, pid, host) in zip(ids, answers)}
