"""Real JupyterLab in headless Chromium.

One JupyterLab server per session, started from this interpreter with every
Jupyter and IPython directory pointing into a temporary tree (config, runtime,
data, IPYTHONDIR), so nothing of the user's set-up leaks in and nothing the
tests start leaks out. The labextensions installed in the virtualenv
(``<prefix>/share/jupyter/labextensions``: the ipywidgets manager among them)
stay visible, since Jupyter always searches ``sys.prefix`` besides
``JUPYTER_DATA_DIR``. The server's root is a temporary copy of ``notebooks/``;
tests write their own notebooks there too.

Every process the server starts (kernels, the ipyparallel controllers, engines
and nannies those kernels start) inherits a marker in its environment, so the
fixtures can find and stop whatever survives a test, and fail the test that
left ipyparallel processes behind.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``.ci/run``); never
Playwright's own download.
"""

from __future__ import annotations

import json
import os
import re
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Iterable

import psutil
import pytest

from nbtasks.cluster.guard import end

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "tests" / "artifacts"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

MARKER = "NBTASKS_BROWSER_TEST"   # environment variable inherited by everything the server starts
START_TIMEOUT = 60                # seconds for JupyterLab to answer /api/status
EXIT_GRACE = 20                   # seconds for stopped processes to go away


# -- Playwright: the system Chromium -------------------------------------------------------

@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium "
                    "(`apt-get install -y chromium`, as .ci/run does); never `playwright install`",
                    pytrace=False)
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "headless": True,
            "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


@pytest.fixture(scope="session")
def base_url(lab: "Lab") -> str:
    """Playwright's base URL: our server (replaces pytest-playwright's fallback fixture,
    which pytest 9 warns about)."""
    return lab.base_url


# pytest-jupyter (if some other test module brings it in) has autouse fixtures that
# close the event loop Playwright's sync API runs on: make them no-ops here.
try:
    import pytest_jupyter  # noqa: F401
except ImportError:
    pass
else:
    @pytest.fixture
    def jp_asyncio_loop():
        yield None

    @pytest.fixture
    def jp_server_cleanup():
        yield None


# -- order: the browser tests last ------------------------------------------------------------

def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Run the browser tests after every other test. Playwright's sync API keeps an asyncio
    loop marked as running on the main thread from the first browser test to the end of the
    session (its fixtures are session-scoped), so any later test calling ``asyncio.run`` would
    fail with "cannot be called from a running event loop"."""
    here = pathlib.Path(__file__).resolve().parent
    browser = [item for item in items if here in pathlib.Path(item.path).resolve().parents]
    if browser:
        chosen = set(map(id, browser))
        items[:] = [item for item in items if id(item) not in chosen] + browser


# -- reports, so that fixtures can tell a failed test ------------------------------------------

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# -- processes ---------------------------------------------------------------------------------

def _environ(proc: psutil.Process) -> dict:
    try:
        return proc.environ()
    except (psutil.Error, OSError):
        return {}


def marked_processes(marker: str) -> list[psutil.Process]:
    """Live processes whose environment carries our marker (kernels, ipyparallel, ...)."""
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
            continue
        if _environ(proc).get(MARKER) == marker:
            found.append(proc)
    return found


def is_ipyparallel(proc: psutil.Process) -> bool:
    try:
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return any(word in cmdline for word in ("ipyparallel", "ipengine", "ipcontroller"))


def describe(procs: Iterable[psutil.Process]) -> str:
    lines = []
    for p in procs:
        try:
            lines.append(f"  {p.pid}: {' '.join(p.cmdline())[:160]}")
        except psutil.Error:
            lines.append(f"  {p.pid}: (gone)")
    return "\n".join(lines)


def kill_all(procs: Iterable[psutil.Process], grace: float = 5.0) -> None:
    end(list(procs), grace)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the server --------------------------------------------------------------------------------

class Lab:
    """A JupyterLab server in a temporary tree, and a small REST client for it."""

    def __init__(self, base: pathlib.Path) -> None:
        self.base = base
        self.root = base / "root"
        self.config_dir = base / "config"
        self.runtime_dir = base / "runtime"
        self.data_dir = base / "data"
        self.ipython_dir = base / "ipython"
        self.log_path = ARTIFACTS / "jupyterlab-server.log"
        self.token = uuid.uuid4().hex
        self.marker = f"{base}:{self.token[:8]}"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    # set-up ---------------------------------------------------------------------------------
    def prepare(self) -> None:
        for d in (self.root, self.config_dir, self.runtime_dir, self.data_dir, self.ipython_dir):
            d.mkdir(parents=True, exist_ok=True)
        for nb in NOTEBOOKS.glob("*.ipynb"):
            shutil.copy(nb, self.root / nb.name)
        labconfig = self.config_dir / "labconfig"
        labconfig.mkdir(exist_ok=True)
        (labconfig / "page_config.json").write_text(json.dumps(
            {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
        # no news feed, no update check, no PyPI queries: the machine may have no network
        (self.config_dir / "jupyter_lab_config.json").write_text(json.dumps(
            {"LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                        "extension_manager": "readonly"}}))

    def env(self) -> dict[str, str]:
        # no NBTASKS_STORE either: kernels and the server must agree on the default store
        # (<JUPYTER_DATA_DIR>/nbtasks/runs.db) by themselves, as on a user's machine
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("JUPYTER", "IPYTHON", "PYTEST_", "COV_", "NBTASKS_STORE"))}
        env.update({
            "JUPYTER_CONFIG_DIR": str(self.config_dir),
            "JUPYTER_RUNTIME_DIR": str(self.runtime_dir),
            "JUPYTER_DATA_DIR": str(self.data_dir),
            "IPYTHONDIR": str(self.ipython_dir),
            MARKER: self.marker,
            "PYTHONUNBUFFERED": "1",
        })
        # the venv's scripts first, whatever launched pytest
        env["PATH"] = os.pathsep.join([str(pathlib.Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def start(self) -> None:
        self.prepare()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
               f"--port={self.port}", "--port-retries=0",
               f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root}", "--allow-root",
               "--ServerApp.log_level=INFO"]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=self.env(), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status", timeout=2)
                break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not answer in {START_TIMEOUT} s:\n{self.log_tail()}")
            time.sleep(0.2)
        # the page must load the ipywidgets manager (a prebuilt labextension of the venv),
        # or every widget would show as its text repr
        with urllib.request.urlopen(self.url("/lab"), timeout=10) as resp:
            html = resp.read().decode(errors="replace")
        if "@jupyter-widgets/jupyterlab-manager" not in html:
            raise RuntimeError("JupyterLab does not load the ipywidgets labextension "
                               "(@jupyter-widgets/jupyterlab-manager, from jupyterlab_widgets): "
                               f"is it installed in {sys.prefix}/share/jupyter/labextensions?")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # REST -------------------------------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}{path}{sep}token={self.token}"

    # notebooks --------------------------------------------------------------------------------
    def write_notebook(self, name: str, cells: list[str]) -> str:
        """A notebook of code cells in the server's root; returns its file name."""
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                                     "name": "python3"}
        nb.metadata["language_info"] = {"name": "python"}
        nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        path = self.root / name
        nbformat.write(nb, path)
        return name

    def read_notebook(self, name: str) -> Any:
        import nbformat

        return nbformat.read(self.root / name, as_version=4)

    # kernels and processes --------------------------------------------------------------------
    def shutdown_kernels(self) -> None:
        """Shut every session's kernel down the way JupyterLab does (kernels exit cleanly,
        so their atexit handlers stop the clusters they own)."""
        try:
            for session in self.api("GET", "/api/sessions"):
                try:
                    self.api("DELETE", f"/api/sessions/{session['id']}", timeout=30)
                except (urllib.error.URLError, OSError):
                    pass
            for kernel in self.api("GET", "/api/kernels"):
                try:
                    self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=30)
                except (urllib.error.URLError, OSError):
                    pass
        except (urllib.error.URLError, OSError):
            pass

    def processes(self) -> list[psutil.Process]:
        """Everything the server started that is still alive (not the server itself)."""
        server = self.proc.pid if self.proc else None
        return [p for p in marked_processes(self.marker) if p.pid != server]

    def ipyparallel_processes(self) -> list[psutil.Process]:
        return [p for p in self.processes() if is_ipyparallel(p)]

    def wait_ipyparallel_gone(self, grace: float = EXIT_GRACE) -> list[psutil.Process]:
        deadline = time.monotonic() + grace
        left = self.ipyparallel_processes()
        while left and time.monotonic() < deadline:
            time.sleep(0.25)
            left = self.ipyparallel_processes()
        return left

    def stop(self) -> list[psutil.Process]:
        """Stop the server, then whatever it started; returns the processes that had to be killed."""
        if self.proc is None:
            return []
        self.shutdown_kernels()
        try:
            self.api("POST", "/api/shutdown", timeout=10)
        except (urllib.error.URLError, OSError):
            pass
        try:
            self.proc.wait(timeout=EXIT_GRACE)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        self._log.close()
        self.wait_ipyparallel_gone(5)
        left = self.processes()
        kill_all(left)
        return left


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory):
    server = Lab(tmp_path_factory.mktemp("lab"))
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    left = server.stop()
    if left:
        print(f"\nprocesses left after JupyterLab stopped (killed):\n{describe(left)}")


# -- driving JupyterLab like a person ----------------------------------------------------------

PROMPT_DONE = re.compile(r"^\[\d+\]:$")
IDLE = re.compile(r"\|\s*Idle$")
# An exception in a cell renders as stderr text that starts with a rule of dashes and
# "<Name>   Traceback (most recent call last)"; stderr *streams* (ipyparallel's noise) do not.
ERROR_TRACE = re.compile(r"^\s*-{20,}\s*\n\s*\S+\s+Traceback \(most recent call last\)")


class LabPage:
    """One notebook open in JupyterLab, and the gestures a person makes on it."""

    def __init__(self, page: Any, lab: Lab, nodeid: str, console: list[str]) -> None:
        self.page = page
        self.lab = lab
        self.nodeid = nodeid
        self.console = console
        self.name: str | None = None

    # locators -------------------------------------------------------------------------------
    @property
    def notebook(self) -> Any:
        return self.page.locator(".jp-NotebookPanel:visible .jp-Notebook").first

    @property
    def cells(self) -> Any:
        return self.notebook.locator(".jp-Cell")

    @property
    def code_cells(self) -> Any:
        return self.notebook.locator(".jp-Cell.jp-CodeCell")

    def cell(self, index: int) -> Any:
        """The index-th *code* cell."""
        return self.code_cells.nth(index)

    def prompt(self, index: int) -> Any:
        return self.cell(index).locator(".jp-InputPrompt")

    def outputs(self, index: int | None = None) -> Any:
        scope = self.notebook if index is None else self.cell(index)
        return scope.locator(".jp-OutputArea-output")

    @property
    def kernel_status(self) -> Any:
        # the status bar item reads "Python 3 (ipykernel) | Idle"
        return self.page.locator(".jp-StatusBar-TextItem", has_text="|").filter(
            has_text=re.compile(r"(Idle|Busy|Starting|Connecting|Unknown|Restarting|Dead|No Kernel)")).first

    # gestures -------------------------------------------------------------------------------
    def open(self, name: str, timeout: float = 60) -> None:
        """Open a notebook by URL (a fresh workspace) and wait for its kernel to be idle."""
        from playwright.sync_api import expect

        self.name = name
        n_cells = len(self.lab.read_notebook(name).cells)
        self.page.goto(self.lab.url(f"/lab/tree/{name}?reset"), timeout=timeout * 1000)
        expect(self.cells.first).to_be_visible(timeout=timeout * 1000)
        # cells are attached progressively: wait for all of them
        expect(self.cells).to_have_count(n_cells, timeout=timeout * 1000)
        self.wait_idle(timeout)

    def wait_idle(self, timeout: float = 60) -> None:
        from playwright.sync_api import expect

        expect(self.kernel_status).to_have_text(IDLE, timeout=timeout * 1000)

    def run_cell(self, index: int, wait: float | None = 60, key: str = "Control+Enter") -> None:
        """Click into a code cell and run it with the keyboard; wait (up to ``wait`` s) for
        its prompt to show an execution count, unless ``wait`` is None."""
        from playwright.sync_api import expect

        prompt = self.prompt(index)
        before = prompt.text_content().strip()
        editor = self.cell(index).locator(".jp-InputArea-editor")
        for attempt in range(4):
            editor.click()
            self.page.keyboard.press(key)
            try:  # a first key press in a fresh page is sometimes dropped: press again
                expect(prompt).not_to_have_text(before, timeout=3000)
                break
            except AssertionError:
                if attempt == 3:
                    raise AssertionError(f"cell {index} did not start after 4 presses of {key}") from None
        if wait is not None:
            expect(prompt).to_have_text(PROMPT_DONE, timeout=wait * 1000)

    def menu(self, *path: str) -> None:
        """Click through the menu bar: menu("Run", "Run All Cells")."""
        self.page.locator(".lm-MenuBar-item", has_text=re.compile(f"^{re.escape(path[0])}$")).click()
        for item in path[1:]:
            self.page.locator(".lm-Menu:visible .lm-Menu-item",
                              has_text=re.compile(f"^{re.escape(item)}")).first.click()

    def save(self, timeout: float = 20) -> None:
        """Ctrl+S, then wait until the file on disk is what the page shows (no dirty mark)."""
        from playwright.sync_api import expect

        self.notebook.locator(".jp-InputPrompt").first.click()  # command mode, focus in the notebook
        self.page.keyboard.press("Control+s")
        tab = self.page.locator(".lm-TabBar-tab.lm-mod-current", has_text=self.name or "")
        expect(tab).not_to_have_class(re.compile(r"jp-mod-dirty"), timeout=timeout * 1000)

    def error_outputs(self) -> list[str]:
        """Texts of the outputs that are exceptions raised by cells (not stderr streams)."""
        stderr = self.outputs().and_(
            self.page.locator('[data-mime-type="application/vnd.jupyter.stderr"]'))
        return [t for t in stderr.all_inner_texts() if ERROR_TRACE.match(t)]

    def screenshot(self, what: str) -> pathlib.Path:
        path = screenshot_name(self.nodeid, what)
        self.page.screenshot(path=str(path))
        return path

    def assert_no_ipyparallel_left(self, grace: float = EXIT_GRACE) -> None:
        left = self.lab.wait_ipyparallel_gone(grace)
        assert not left, (f"ipyparallel processes still alive {grace} s after cluster.stop() "
                          f"(kernel still running):\n{describe(left)}")


# -- a page per test ---------------------------------------------------------------------------

def screenshot_name(nodeid: str, what: str) -> pathlib.Path:
    test = nodeid.split("::")[-1].replace("[", "-").replace("]", "").replace("/", "_")
    return ARTIFACTS / f"{test}--{what}.png"


@pytest.fixture
def lab_page(lab: Lab, page: Any, request: pytest.FixtureRequest):
    """A Playwright page on the session's JupyterLab; on teardown: a screenshot if the test
    failed, every kernel shut down, and no ipyparallel process left behind."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob(screenshot_name(request.node.nodeid, "*").name):
        old.unlink()  # a stale FAILED.png from an earlier run would mislead
    page.set_default_timeout(30_000)
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}")
            if msg.type in ("error",) else None)
    helper = LabPage(page, lab, request.node.nodeid, console)
    yield helper
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed:
        try:
            page.screenshot(path=str(screenshot_name(request.node.nodeid, "FAILED")), full_page=True)
        except Exception as exc:  # the page may be gone; the failure is reported anyway
            print(f"no failure screenshot: {exc}")
        if console:
            print("browser console errors:\n" + "\n".join(console[-20:]))
        print("JupyterLab log (tail):\n" + lab.log_tail(30))
    lab.shutdown_kernels()
    left = lab.wait_ipyparallel_gone()
    if left:
        listing = describe(left)
        kill_all(left)
        if report is not None and report.passed:
            pytest.fail(f"ipyparallel processes survived the notebook's cluster.stop() and its "
                        f"kernel's shutdown by {EXIT_GRACE} s:\n{listing}", pytrace=False)
