"""What every engine of a cluster holds before it runs units: shared values
(``cluster.share``) and task packages (``cluster.sync``).

Each is sent once to every engine, and to engines that join later; one lock
orders sending against engines joining, so a newcomer never misses one. A
shared value is kept as pickled when shared (``Pickled.owned``: a later change
to the original reaches no engine), its big buffers sent as zmq frames.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any, Callable, Iterator

from ..core.fingerprint import digest, feed
from ..core.serialize import Pickled
from .engine import drop_shared, install_packages, store_shared
from .packages import Package

__all__ = ["Shipments"]

#: send(engine ids, function, *arguments): run ``function(*arguments)`` on those engines
Send = Callable[..., Any]


class Shipments:
    """Shared values (pickled) and task packages of one cluster."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._values: dict[str, Pickled] = {}  # name -> pickled value
        #: name -> the digest of its pickle (taken once: a shared value never changes), or
        #: the value itself when it holds paths (counted by the files' content when asked)
        self._keys: dict[str, bytes | Any] = {}
        self._packages: dict[str, Package] = {}  # name -> the last version synced
        self.lock = threading.Lock()  # held while engines are sent something or let in

    def share(self, values: dict[str, Pickled], engines: Callable[[], list[int]],
              originals: dict[str, Any]) -> None:
        """``values`` pickled for the engines; ``originals``: the same values as given,
        which key the results that read them."""
        values = {name: pickled.owned() for name, pickled in values.items()}
        keys = {name: _key(originals[name]) for name in values}
        with self.lock:
            self._values.update(values)
            self._keys.update(keys)
            ids = engines()
            if ids:
                self._send(ids, store_shared, *_arguments(values))

    def unshare(self, names: tuple[str, ...], engines: Callable[[], list[int]]) -> None:
        with self.lock:
            for name in names:
                self._values.pop(name, None)
                self._keys.pop(name, None)
            ids = engines()
            if ids:
                self._send(ids, drop_shared, list(names))

    def sync(self, package: Package, engines: Callable[[], list[int]]) -> bool:
        """Ship ``package`` (False: this version is there already)."""
        missing = [r for r in package.requires if r not in self._packages]
        if missing:
            raise ValueError(f"cluster.sync: {package.name!r} requires {missing}, not synced yet: "
                             f"sync them first")
        with self.lock:
            old = self._packages.get(package.name)
            if old is not None and old.digest == package.digest:
                return False
            self._packages[package.name] = package
            ids = engines()
            if ids:
                self._send(ids, install_packages, self._ordered([package.name]))
        return True

    def welcome(self, ids: list[int]) -> None:
        """Bring engines that just joined up to date (call with ``lock`` held)."""
        if self._values:
            self._send(ids, store_shared, *_arguments(self._values))
        if self._packages:
            self._send(ids, install_packages, self._ordered(list(self._packages)))

    def _ordered(self, names: list[str]) -> list[Package]:
        """Packages with everything they require, dependencies first."""
        out: list[Package] = []

        def visit(name: str) -> None:
            package = self._packages[name]
            for dependency in package.requires:
                visit(dependency)
            if package not in out:
                out.append(package)

        for name in names:
            visit(name)
        return out

    def digests(self) -> dict[str, bytes]:
        """A digest of each shared value (results that read them depend on it); a value
        holding paths by the files' content as they are now."""
        with self.lock:
            keys = dict(self._keys)
        return {name: key if isinstance(key, bytes) else digest(key) for name, key in sorted(keys.items())}

    def names(self) -> Iterator[str]:
        return iter(sorted(self._values))


def _key(value: Any) -> Any:
    """What keys a shared value: the digest of it now, or the value itself when it holds
    paths (their files are read again each time keys are made: they may change)."""
    h = hashlib.blake2b(digest_size=16)
    return value if feed(h, value) else h.digest()


def _arguments(values: dict[str, Pickled]) -> list[Any]:
    """``engine.store_shared``'s arguments: (name, pickle, buffer count) of each value,
    then every buffer, each an argument of its own so ipyparallel sends it as a frame."""
    layout = [(name, pickled.head, len(pickled.buffers)) for name, pickled in values.items()]
    return [layout, *(buffer for pickled in values.values() for buffer in pickled.buffers)]
