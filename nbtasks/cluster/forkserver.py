"""A fork server: one process imports ipyparallel's controller and engine once, then forks
a local cluster's controller, engines and the engines' nannies from that warm state.

Started as separate interpreters, each of these processes spends most of its start-up
importing the same modules (ipyparallel, IPython, zmq, tornado, nbtasks), and on a
machine with few cores that CPU is what the first result waits for. A fork costs
milliseconds instead, and shares the imported code's memory.

    owner (kernel) ──stdin: {"role", "argv", "env", "cwd", "output"}──> fork server
                   <─stdout: {"pid"}────────────────────────────────── │ fork
                                                                        ├─ controller
                                                                        ├─ engine ──socket: nanny kwargs + pipe──┐
                                                                        └─ nanny (forked on the engine's request) <┘

Engines are forked at once, with the controller: each waits for the controller's
connection file itself. The server stays single-threaded (forking a threaded process is
unsafe), reaps its children as they exit (a zombie would hide an engine's death from its
nanny), and when its stdin closes, however the owner ended, it stops everything it forked
and exits.

    python -m nbtasks.cluster.forkserver
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import selectors
import signal
import socket
import sys
import time
import traceback
from typing import IO, Any

from .forks import GRACE

__all__ = ["forked_start_nanny", "main"]

URL_FILE_POLL = 0.005  # seconds between two looks for the controller's connection file
_NANNY_MESSAGE = 1 << 20  # the largest nanny request (pickled keyword arguments)


# -- the server ---------------------------------------------------------------------------------
def main() -> None:
    _retitle([sys.executable, "-m", __spec__.name if __spec__ else "nbtasks.cluster.forkserver"])
    _adopt_orphans()
    server = _Server()
    signal.signal(signal.SIGCHLD, server.reap)
    try:
        server.serve()
    except _ChildDone as done:  # in a forked child
        sys.exit(done.code)


# What forked processes would import anyway, imported once here: first the controller's (it is
# forked first), then the engines'. Imported while no request waits, or before a fork needs them.
_WARM = {
    "controller": ("ipyparallel.controller.app",),
    "engine": (
        "ipyparallel.engine.app", "ipyparallel.engine.nanny",
        "nbtasks.cluster.engine",  # the engines' side of nbtasks
        "ipykernel.debugger",  # see _kernels_without_debugger
        "IPython.core.completerlib", "IPython.extensions.storemagic",  # imported as a kernel starts
        "numpy",  # ipyparallel's serializer imports it with an engine's first message
    ),
}


def _kernels_without_debugger() -> None:
    """An engine's kernel loads debugpy, the Jupyter debugger's backend, as it starts (half
    of what is left to import after ipyparallel), though no frontend can debug an engine
    through it. ipykernel loads it only if it can: here it cannot, so kernels forked from
    this process start without it; a unit that imports debugpy itself still can."""
    saved = sys.modules.get("debugpy", _MISSING)
    sys.modules["debugpy"] = None  # type: ignore[assignment]  (makes "import debugpy" fail)
    try:
        import ipykernel.debugger  # noqa: F401  (remembers that debugpy is not available)
    finally:
        if saved is _MISSING:
            del sys.modules["debugpy"]
        else:
            sys.modules["debugpy"] = saved


_MISSING = object()


class _Server:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.children: set[int] = set()
        self.selector = selectors.DefaultSelector()
        self.engines: dict[int, tuple[socket.socket, int]] = {}  # socket fd -> (socket, engine pid)
        self.buffer = b""
        self.imported: set[str] = set()

    def reap(self, *_: Any) -> None:
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)

    def warm(self, role: str | None = None) -> bool:
        """Import the next module a fork will want (all that ``role`` wants, if given);
        False when there is nothing left to import."""
        import importlib

        roles = [role] if role else list(_WARM)
        for name in [m for r in roles for m in _WARM[r] if m not in self.imported]:
            self.imported.add(name)
            try:
                if name == "ipykernel.debugger":
                    _kernels_without_debugger()
                else:
                    importlib.import_module(name)
            except ImportError:
                pass  # optional ones (numpy) may be missing
            if role is None:
                return True
        return role is not None

    def serve(self) -> None:
        """Fork what the owner asks for until it is gone, then end everything forked. Also
        when serving fails: the owner killed while a fork was under way makes the reply a
        write to a closed pipe (BrokenPipeError), and nothing forked may outlive us."""
        self.selector.register(0, selectors.EVENT_READ, "owner")
        warming = True
        try:
            while True:
                ready = self.selector.select(0 if warming else None)
                if not ready and warming:
                    warming = self.warm()
                for key, _ in ready:
                    if key.data == "owner":
                        if not self._owner_readable():
                            return
                    else:
                        self._nanny_request(key.fileobj)
        finally:
            if os.getpid() == self.pid:  # not in a forked child leaving the server's code
                self._end_all()

    def _owner_readable(self) -> bool:
        chunk = os.read(0, 65536)
        if not chunk:
            return False
        self.buffer += chunk
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            request = json.loads(line)
            try:
                reply = {"pid": self._fork(request)}
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(1, json.dumps(reply).encode() + b"\n")
        return True

    def _fork(self, request: dict[str, Any]) -> int:
        role = request["role"]
        if role not in ("controller", "engine"):
            raise ValueError(f"unknown role {role!r}")
        self.warm(role)
        ours = theirs = None
        if role == "engine":
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the child
            if ours is not None:
                os.close(ours.detach())
            self._become_child(request.get("output"))
            _run_role(request, theirs)  # never returns
        self.children.add(pid)
        if ours is not None:
            theirs.close()
            self.engines[ours.fileno()] = (ours, pid)
            self.selector.register(ours, selectors.EVENT_READ, "engine")
        return pid

    def _become_child(self, output: str | None) -> None:
        """Drop the server's signal handler and descriptors (the child's copies: the server
        keeps its own); input from nowhere, output to the process's log (or nowhere)."""
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()  # like ipyparallel's launchers: a signal to the owner's group spares it
        self.selector.close()
        for sock, _ in self.engines.values():
            os.close(sock.detach())
        null = os.open(os.devnull, os.O_RDWR)
        log = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if output else null
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        for fd in {null, log}:
            os.close(fd)

    def _nanny_request(self, sock: socket.socket) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(sock, _NANNY_MESSAGE, 2)
        except OSError:
            data, fds = b"", []
        if not data:  # the engine is gone
            self.selector.unregister(sock)
            self.engines.pop(sock.fileno(), None)
            sock.close()
            return
        try:
            pid = os.fork()
        except OSError:
            pid = -1
        if pid == 0:
            self._become_child(None)
            _run_nanny(pickle.loads(data), *fds)  # never returns
        if pid > 0:
            self.children.add(pid)
        for fd in fds:  # the nanny has them now (or, if the fork failed, the engine sees EOF)
            os.close(fd)

    def _end_all(self) -> None:
        """The owner is gone (or stopped the cluster): stop everything we forked, and what
        they started. A process started while we looked (a controller starting its
        schedulers) is orphaned when its parent ends, and comes to us: it ends next round."""
        from .guard import end

        import psutil

        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # psutil waits for them now
        for _ in range(3):
            found = psutil.Process().children(recursive=True)
            if not found:
                return
            end(found, GRACE)


def _adopt_orphans() -> None:
    """Become the "child subreaper" of what we fork (Linux): a process whose parent ended
    becomes our child instead of init's, so that ``_end_all`` finds it and ``reap`` waits
    for it (a controller's schedulers, if the controller ends while it starts them)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


_PR_SET_CHILD_SUBREAPER = 36


def _run_role(request: dict[str, Any], nanny_socket: socket.socket | None) -> None:
    """In the forked child: become an ipyparallel controller or engine, then exit."""

    def role() -> None:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        module = "ipyparallel.controller" if request["role"] == "controller" else "ipyparallel.engine"
        _retitle([sys.executable, "-m", module, *request["argv"]])
        _fresh_random_state()
        if request["role"] == "controller":
            from ipyparallel.controller import app

            sys.argv = ["ipcontroller", *request["argv"]]
            app.time = _NoDatabaseWait()
            _register_hearts_at_first_pong()
        else:
            from ipyparallel.engine import app

            sys.argv = ["ipengine", *request["argv"]]
            if request.get("connection_file") and "IPP_CONNECTION_INFO" not in os.environ:
                _await_file(request["connection_file"], request.get("wait") or 60.0)
            app.start_nanny = lambda **kwargs: forked_start_nanny(nanny_socket, kwargs)
        app.main()

    _exit_after(role)


def _exit_after(main: Any) -> None:
    """In a forked child: run ``main``, then end as an interpreter would (``SystemExit``'s
    code; 1 and the traceback for any other exception)."""
    code: Any = 1
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        traceback.print_exc()
    raise _ChildDone(code)


def _fresh_random_state() -> None:
    """A forked child starts with its parent's random generators, so every engine would
    draw the same numbers: Python's ``random`` reseeds itself after a fork; numpy's global
    generator (not loaded here today, numpy loads it lazily) is reseeded if it is there."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


class _NoDatabaseWait:
    """``time`` for ipyparallel's controller module, which uses it for one thing: a quarter
    second of sleep after connecting to its database, before it writes the connection
    files everyone waits for. Without a database (``NoDB``, ipyparallel's default and our
    ``--nodb``) there is nothing to wait for."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        from ipyparallel.controller.app import IPController
        from ipyparallel.controller.dictdb import NoDB

        if IPController.initialized() and issubclass(IPController.instance().db_class, NoDB):
            return
        time.sleep(seconds)


def _register_hearts_at_first_pong() -> None:
    """ipyparallel's heart monitor counts an engine's heart as new only at the beat after its
    first answer, and the engine joins then: 1.5 periods after its heart starts, on average.
    Here a heart is new at its first answer (the next beat finds it beating, as before);
    nothing else changes: the same beats, the same misses counted."""
    from ipyparallel.controller.heartmonitor import HeartMonitor

    handle_pong = HeartMonitor.handle_pong

    def handle_first_pong(self: Any, msg: list) -> None:
        handle_pong(self, msg)
        heart = msg[0]
        if heart in self.responses and heart not in self.hearts:
            self.handle_new_hearts({heart})

    HeartMonitor.handle_pong = handle_first_pong


def _await_file(path: str, timeout: float) -> None:
    """Wait, more finely than the engine would (0.1 s), for the controller's connection
    file, written in full (the engine reads it once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                json.load(f)
            return
        except (OSError, ValueError):  # not there yet, or half written
            time.sleep(URL_FILE_POLL)


def forked_start_nanny(nanny_socket: socket.socket | None, kwargs: dict[str, Any]) -> tuple[str, IO[bytes]]:
    """ipyparallel's ``start_nanny`` for a forked engine: the fork server forks the nanny
    (ipyparallel's own ``KernelNanny``); it writes its url into a pipe whose other end the
    engine keeps open, as with the subprocess ipyparallel would start."""
    from ipyparallel.engine import nanny

    kwargs["pid"] = os.getpid()
    if nanny_socket is not None:
        read, write = os.pipe()
        try:
            socket.send_fds(nanny_socket, [pickle.dumps(kwargs)], [write, 2])
        except OSError:
            os.close(read)
        else:
            os.close(write)
            pipe = os.fdopen(read, "rb")
            url = pipe.readline().decode().strip()
            if url:
                return url, pipe
            pipe.close()
        print("nbtasks: the fork server did not start a nanny; starting one the usual way", file=sys.stderr)
    return nanny.start_nanny(**kwargs)


def _run_nanny(kwargs: dict[str, Any], pipe_fd: int, stderr_fd: int) -> None:
    def nanny() -> None:
        _retitle([sys.executable, "-m", "ipyparallel.engine.nanny"])
        os.dup2(stderr_fd, 1)
        os.dup2(stderr_fd, 2)
        os.close(stderr_fd)
        from ipyparallel.engine.nanny import KernelNanny

        KernelNanny.main(pipe=os.fdopen(pipe_fd, "w", buffering=1), **kwargs)

    _exit_after(nanny)


def _retitle(words: list[str]) -> None:
    """Show a forked process as what it became (``ps``, ``/proc/<pid>/cmdline``, psutil): the
    command line ipyparallel would have started it with, so that tools looking for its
    controllers, engines and nannies find them. Linux only (elsewhere the server's shows):
    the text goes into the command line's own memory (``forks.TITLE_ROOM`` made it big enough),
    ending with a NUL before a non-NUL last byte, which tells the kernel it was rewritten."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48, 49)
        with open("/proc/self/cmdline", "rb") as f:
            shown = f.read()
    except (OSError, IndexError, ValueError):
        return
    size = end - start
    if size < 2 or not shown or ctypes.string_at(start, min(size, len(shown))) != shown[:size]:
        return  # not the memory we expect: leave it alone
    title = " ".join(words).encode(errors="replace")[: size - 2] + b"\0"
    ctypes.memmove(start, title.ljust(size - 1, b"\0") + b" ", size)


class _ChildDone(BaseException):
    """A forked child finished being what it was forked for: it leaves the server's frames
    and exits as its own interpreter would (exit handlers run: a controller's stop its
    scheduler processes), with this exit status."""

    def __init__(self, code: Any) -> None:
        super().__init__(code)
        self.code = code


if __name__ == "__main__":
    main()
