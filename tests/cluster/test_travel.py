"""Code travels by itself: engines that cannot read the client's files run its local
modules, and an installed package they lack (or have at another version) is a clear error
before any unit runs.

The engines here run in a mount namespace with an empty tmpfs over the client's folder,
as on a remote host, which lacks the client's files.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys

import pytest
from traitlets.config import Config

import nbtasks as nt
from nbtasks.cluster import EngineUnfit
from nbtasks.cluster.requirements import PackageMismatch, verify
from tests.distributions import make_distribution


def hidden_from_engines(folder, environment: dict[str, str] | None = None) -> Config:
    """ipyparallel config whose engines cannot read ``folder`` (an empty tmpfs over it,
    in a mount namespace of their own; cwd ``/``, so no handle into it is left)."""
    config = Config()
    config.LocalEngineSetLauncher.engine_cmd = [
        "unshare", "--mount", "sh", "-c", f'mount -t tmpfs none "{folder}" && cd / && exec "$@"', "sh",
        sys.executable, "-m", "ipyparallel.engine"]
    if environment:
        config.LocalEngineSetLauncher.environment = environment
    return config


HELPERS = '''\
import re

import nbtasks as nt


class Word:
    """A word and its weight."""

    def __init__(self, text, weight=1):
        self.text, self.weight = text, weight

    def __eq__(self, other):
        return isinstance(other, Word) and (self.text, self.weight) == (other.text, other.weight)

    def __repr__(self):
        return f"Word({self.text!r}, {self.weight})"


class StopWords:
    def __init__(self, words):
        self.words = set(words)


def split_words(line):
    for text in re.findall(r"[a-z]+", line.lower()):
        if text not in nt.shared("stop").words:
            yield text, Word(text, WEIGHT)


def total(text, words):
    return Word(text, sum(w.weight for w in words))


def heavier(word, by=None):
    return Word(word.text, word.weight * by.weight)


WEIGHT = 1
'''

SCRIPT = '''\
import importlib
import json
import os
import pathlib
import sys

from traitlets.config import Config

import nbtasks as nt
import helpers

here = pathlib.Path(__file__).resolve().parent
config = Config()
config.LocalEngineSetLauncher.engine_cmd = [
    "unshare", "--mount", "sh", "-c", f'mount -t tmpfs none "{here}" && cd / && exec "$@"', "sh",
    sys.executable, "-m", "ipyparallel.engine"]
LINES = ["The cat and the hat", "a cat, a bat", "and the rat sat"]


def sees_helpers(_):
    return os.path.exists(here / "helpers.py")


def results(cluster):
    counts = nt.MapReduceTask(mapper=helpers.split_words, reducer=helpers.total, partitions=2)
    weigh = nt.ParallelTask(helpers.heavier)
    words = [helpers.Word("ox", 2), helpers.Word("yak", 5)]
    by = helpers.Word("factor", 3)
    got = {"counts": counts.run(LINES, cluster=cluster, progress=False, timeout=60),
           "weighed": weigh.run(words, cluster=cluster, progress=False, timeout=60, by=by)}
    serial = {"counts": counts(LINES), "weighed": weigh(words, by=by)}
    values = list(got["counts"].values()) + got["weighed"]
    return {"same_as_serial": got == serial,
            "clients_class": all(type(v) is helpers.Word for v in values),
            "counts": {k: v.weight for k, v in got["counts"].items()},
            "weighed": [v.weight for v in got["weighed"]]}


with nt.Cluster(n=2, config=config) as cluster:
    cluster.share(stop=helpers.StopWords({"the", "a", "and"}))
    out = {"engines_see_helpers": nt.ParallelTask(sees_helpers).run([0, 1], cluster=cluster, progress=False,
                                                                    timeout=60),
           "before": results(cluster)}
    (here / "helpers.py").write_text((here / "helpers.py").read_text().replace("WEIGHT = 1", "WEIGHT = 10"))
    importlib.reload(helpers)
    out["after_edit"] = results(cluster)
print("RESULT " + json.dumps(out))
'''


def test_a_scripts_helpers_module_runs_on_engines_that_cannot_read_it(tmp_path, python_script):
    """A mapper, a reducer and classes from helpers.py beside the script, with no sync: as a
    task's code, as shared value, input and parameter, in results; then edited and reloaded."""
    (tmp_path / "helpers.py").write_text(HELPERS)
    command = python_script(SCRIPT, name="wordcount.py")
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    [line] = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    out = json.loads(line[len("RESULT "):])
    assert out["engines_see_helpers"] == [False, False]
    before, after = out["before"], out["after_edit"]
    assert before["same_as_serial"] and before["clients_class"]
    assert before["counts"] == {"cat": 2, "hat": 1, "bat": 1, "rat": 1, "sat": 1}
    assert before["weighed"] == [6, 15]
    assert after["same_as_serial"] and after["clients_class"], after
    assert after["counts"] == {"cat": 20, "hat": 10, "bat": 10, "rat": 10, "sat": 10}  # the edited helpers


PACKAGE = {
    "__init__.py": "from .clean import normalize\n",
    "clean.py": "from . import rules\n\n\ndef normalize(text):\n    return rules.apply(text.strip().lower())\n",
    "rules.py": "REPLACE = {'colour': 'color'}\n\n\ndef apply(text):\n"
                "    return ' '.join(REPLACE.get(w, w) for w in text.split())\n",
    "stats/__init__.py": "",
    "stats/summary.py": "from ..clean import normalize\n\n\nclass Summary:\n"
                        "    def __init__(self, text):\n        self.words = len(normalize(text).split())\n\n\n"
                        "def summarize(text):\n    return Summary(text)\n",
}


@pytest.fixture
def local_package(tmp_path, monkeypatch):
    """A package folder with a subpackage, importable here only."""
    root = tmp_path / "src"
    for name, text in PACKAGE.items():
        path = root / "nbt_textkit" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    yield root
    for name in [m for m in sys.modules if m.startswith("nbt_textkit")]:
        del sys.modules[name]


def _uses_rules_by_import(text):
    import nbt_textkit.rules  # imported in the body: the module travels too

    return nbt_textkit.rules.apply(text)


def test_a_local_package_and_its_submodules_run_on_engines_that_cannot_read_it(local_package):
    summary = importlib.import_module("nbt_textkit.stats.summary")
    texts = ["  The Colour red ", "one two three four"]
    with nt.Cluster(n=2, config=hidden_from_engines(local_package.parent)) as own:
        summaries = nt.ParallelTask(summary.summarize).run(texts, cluster=own, progress=False, timeout=60)
        assert [s.words for s in summaries] == [3, 4]
        assert all(type(s) is summary.Summary for s in summaries)  # the client's class
        normalized = nt.ParallelTask(sys.modules["nbt_textkit"].normalize).run(texts, cluster=own, progress=False,
                                                                              timeout=60)
        assert normalized == ["the color red", "one two three four"]
        assert nt.ParallelTask(_uses_rules_by_import).run(["colour"], cluster=own, progress=False,
                                                           timeout=60) == ["color"]


@pytest.fixture
def client_and_engine_sites(tmp_path, monkeypatch):
    """nbt-tiny-dist 1.0 and nbt-tiny-extra 1.0 here; the engines' PYTHONPATH has
    nbt-tiny-dist 2.0 and no nbt-tiny-extra."""
    client, engine = tmp_path / "client-site", tmp_path / "engine-site"
    make_distribution(client, "nbt-tiny-dist", "1.0")
    make_distribution(client, "nbt-tiny-extra", "1.0")
    make_distribution(engine, "nbt-tiny-dist", "2.0")
    monkeypatch.syspath_prepend(str(client))
    importlib.invalidate_caches()
    yield client, engine
    for name in ("nbt_tiny_dist", "nbt_tiny_extra"):
        sys.modules.pop(name, None)


def test_an_installed_package_at_another_version_or_missing_fails_the_run_before_any_unit(
        client_and_engine_sites, tmp_path):
    client, engine = client_and_engine_sites
    tiny = importlib.import_module("nbt_tiny_dist")
    extra = importlib.import_module("nbt_tiny_extra")
    ran = tmp_path / "ran"
    ran.mkdir()

    def with_tiny(x):
        (ran / f"tiny-{x}").touch()
        return tiny.plus(x)

    def with_extra(x):
        (ran / f"extra-{x}").touch()
        return extra.plus(x)

    with nt.Cluster(n=1, config=hidden_from_engines(client, {"PYTHONPATH": str(engine)})) as own:
        [engine_id] = own.engines
        host = socket.gethostname()
        slow = nt.ParallelTask(lambda x: __import__("time").sleep(0.2) or x).submit(list(range(4)), cluster=own,
                                                                                    progress=False)
        with pytest.raises(EngineUnfit) as mismatch:
            nt.ParallelTask(with_tiny).run([1, 2], cluster=own, progress=False, timeout=60)
        text = str(mismatch.value)
        assert f"engine {engine_id}" in text and repr(host) in text
        assert "nbt-tiny-dist is 2.0 there, 1.0 on the client" in text

        with pytest.raises(EngineUnfit) as missing:
            nt.ParallelTask(with_extra).run([1], cluster=own, progress=False, timeout=60)
        assert "nbt-tiny-extra is not installed there (the client has nbt-tiny-extra==1.0)" in str(missing.value)
        assert f"engine {engine_id}" in str(missing.value) and repr(host) in str(missing.value)

        assert os.listdir(ran) == []  # no unit of either ran
        assert slow.result(60) == [0, 1, 2, 3]  # other runs go on
        assert nt.task(lambda x: x + 1).run(1, cluster=own, progress=False, timeout=60) == 2


def test_the_engine_check_passes_what_imports_and_names_what_does_not():
    """Checked on this process, as an engine checks itself."""
    import cloudpickle

    assert verify((("cloudpickle", cloudpickle.__version__, ("cloudpickle",)),))
    # no metadata for that name, but the module imports: it is there, whatever its version
    assert verify((("nbt-no-such-dist", "1.0", ("json",)),))
    with pytest.raises(PackageMismatch, match=r"cloudpickle is .* there, 0\.0 on the client; "
                                              r"nbt-no-such-dist is not installed there"):
        verify((("cloudpickle", "0.0", ("cloudpickle",)), ("nbt-no-such-dist", "1.0", ("nbt_no_such_dist",))))
