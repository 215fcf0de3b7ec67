"""What is installed and what is the user's, and what a task brings with it by value."""

from __future__ import annotations

import importlib
import json
import pickle
import pickletools
import sys

import cloudpickle
import pytest

import nbtasks
from nbtasks.core import arrivals, installed, travel
from nbtasks.core.installed import Kind, origin_of
from tests.distributions import make_distribution


@pytest.fixture
def importable(tmp_path, monkeypatch):
    """Import modules from folders put on sys.path for one test; forgotten after it."""
    before = set(sys.modules)

    def load(folder, name):
        monkeypatch.syspath_prepend(str(folder))
        importlib.invalidate_caches()
        return importlib.import_module(name)

    yield load
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_nbtasks_itself_is_installed_even_as_an_editable_checkout():
    origin = origin_of(nbtasks)
    assert origin.kind is Kind.INSTALLED
    assert (origin.distribution, origin.version) == ("nbtasks", nbtasks.__version__)
    assert origin_of(sys.modules["nbtasks.core.task"]).distribution == "nbtasks"
    direct_url = json.loads(importlib.metadata.distribution("nbtasks").read_text("direct_url.json") or "{}")
    assert direct_url.get("dir_info", {}).get("editable"), "the test environment installs nbtasks editable"


def test_the_standard_library_and_site_packages_distributions_are_installed():
    assert origin_of(json).kind is Kind.STDLIB
    assert origin_of(sys).kind is Kind.STDLIB
    assert origin_of(cloudpickle) == (Kind.INSTALLED, "cloudpickle", cloudpickle.__version__)
    zmq = importlib.import_module("zmq")
    assert origin_of(zmq).distribution == "pyzmq"  # import name and project name differ


def test_a_helpers_module_beside_the_notebook_is_local(tmp_path, importable):
    (tmp_path / "nbt_helpers_a.py").write_text("def f(x):\n    return x\n")
    helpers = importable(tmp_path, "nbt_helpers_a")
    assert origin_of(helpers).kind is Kind.LOCAL
    assert not installed.is_installed(helpers)
    assert not installed.is_installed_file(helpers.__file__)


def test_installed_means_owned_by_a_distribution_not_living_beside_one(tmp_path, importable):
    """A file its distribution's RECORD lists is installed (with that version); a stray file
    in the same folder belongs to nobody and is the user's."""
    make_distribution(tmp_path / "site", "nbt-owned-dist", "1.2.3",
                  extra_files={"nbt_stray_mod.py": "def g():\n    return 1\n"})
    owned = importable(tmp_path / "site", "nbt_owned_dist")
    stray = importable(tmp_path / "site", "nbt_stray_mod")
    assert origin_of(owned) == (Kind.INSTALLED, "nbt-owned-dist", "1.2.3")
    assert origin_of(stray).kind is Kind.LOCAL


def test_local_modules_are_registered_to_go_by_value_and_installed_ones_are_not(tmp_path, importable):
    (tmp_path / "nbt_helpers_b.py").write_text("class Point:\n    pass\n")
    helpers = importable(tmp_path, "nbt_helpers_b")
    travel.mark_local_modules()
    registered = cloudpickle.list_registry_pickle_by_value()
    assert "nbt_helpers_b" in registered
    assert not {"nbtasks", "nbtasks.core.task", "json", "cloudpickle"} & registered
    # by value: the class itself is in the pickle, so a process without the module can load it
    assert ("nbt_helpers_b", "Point") not in _globals(cloudpickle.dumps(helpers.Point()))
    assert ("nbt_helpers_b", "Point") in _globals(pickle.dumps(helpers.Point()))  # plain pickle: by name


def test_a_synced_folder_goes_by_reference(tmp_path, importable):
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "nbt_synced_mod.py").write_text("def h():\n    return 2\n")
    synced = importable(folder, "nbt_synced_mod")
    travel.mark_local_modules()
    assert "nbt_synced_mod" in cloudpickle.list_registry_pickle_by_value()
    travel.imported_on_engines(folder)  # what cluster.sync(folder) says
    assert "nbt_synced_mod" not in cloudpickle.list_registry_pickle_by_value()
    assert _globals(cloudpickle.dumps(synced.h)) == [("nbt_synced_mod", "h")]


def _globals(blob: bytes) -> list[tuple[str, str]]:
    """The (module, name) references a pickle makes: what its loader imports."""
    found, memo, recent = [], [], []
    last = None
    for op, arg, _ in pickletools.genops(blob):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            last = arg
            recent.append(arg)
        elif op.name == "MEMOIZE":
            memo.append(last)
        elif op.name in ("BINGET", "LONG_BINGET"):
            last = memo[arg]
            recent.append(last)
        elif op.name == "STACK_GLOBAL":
            found.append((recent[-2], recent[-1]))
            last = None
        else:
            last = None
    return found


SURVEYED = '''\
import cloudpickle
import nbt_owned_two
from nbt_local_lib import Shape


def area(shape):
    import nbt_local_extra
    return nbt_local_extra.scale(shape.w * shape.h) + len(cloudpickle.__name__) * 0


def unrelated():
    return nbt_owned_two.VERSION
'''


def test_survey_names_the_distributions_a_task_needs_and_the_local_code_it_brings(tmp_path, importable):
    make_distribution(tmp_path / "site", "nbt-owned-two", "0.9")
    (tmp_path / "nbt_local_lib.py").write_text("class Shape:\n    def __init__(self, w, h):\n"
                                              "        self.w, self.h = w, h\n")
    (tmp_path / "nbt_local_extra.py").write_text("def scale(x):\n    return 2 * x\n")
    (tmp_path / "nbt_surveyed.py").write_text(SURVEYED)
    importable(tmp_path / "site", "nbt_owned_two")
    importable(tmp_path, "nbt_local_extra")
    surveyed = importable(tmp_path, "nbt_surveyed")
    lib = sys.modules["nbt_local_lib"]

    found = travel.survey([surveyed.area], [lib.Shape(1, 2), 3.0])
    assert dict(found.distributions) == {"cloudpickle": (cloudpickle.__version__, {"cloudpickle"})}
    assert found.members["nbt_surveyed"] == {"area": surveyed.area}
    assert found.members["nbt_local_lib"] == {"Shape": lib.Shape}  # the class of a value
    assert set(found.modules) == {"nbt_local_extra"}  # imported in the body: goes whole

    assert travel.survey([surveyed.unrelated]).needs() == (("nbt-owned-two", "0.9", ("nbt_owned_two",)),)
    assert travel.survey([nbtasks.task]).needs() == ()  # nbtasks is checked when engines join


ARRIVING = '''\
class Reading:
    def __init__(self, value):
        self.value = value


def read(x):
    return Reading(x * 10)
'''


def test_local_code_arrives_as_a_module_so_its_instances_go_back_by_reference(tmp_path, importable):
    """What an engine does with a task's local code (here, in this process, with the module
    taken away as a remote host lacks it): the module is there again under its name, and
    an instance of its class pickles as a reference to it (the client's own class)."""
    (tmp_path / "nbt_arriving.py").write_text(ARRIVING)
    module = importable(tmp_path, "nbt_arriving")
    found = travel.survey([module.read])
    travel.mark_local_modules()
    blob = cloudpickle.dumps((module.read, arrivals.Arrivals("origins", found.members, found.modules)))

    del sys.modules["nbt_arriving"]
    sys.path.remove(str(tmp_path))
    importlib.invalidate_caches()
    try:
        read, origins = pickle.loads(blob)
        assert origins == "origins"
        arrived = sys.modules["nbt_arriving"]
        assert arrived is not module and arrived.read is read
        reading = read(4)
        assert type(reading) is arrived.Reading and reading.value == 40
        cloudpickle.unregister_pickle_by_value(arrived)  # as on an engine, where it never was
        assert ("nbt_arriving", "Reading") in _globals(cloudpickle.dumps(reading))
        arrivals.forget_arrived()
        assert sys.modules["nbt_arriving"] is arrived  # nothing of its own to import instead
    finally:
        sys.modules.pop("nbt_arriving", None)
        arrivals._ours.pop("nbt_arriving", None)
        arrivals._own.clear()


def test_arriving_code_never_replaces_a_module_the_process_has(tmp_path, importable):
    (tmp_path / "nbt_arriving_b.py").write_text(ARRIVING)
    module = importable(tmp_path, "nbt_arriving_b")
    found = travel.survey([module.read])
    travel.mark_local_modules()
    # as when the client's own process loads it
    pickle.loads(cloudpickle.dumps(arrivals.Arrivals(None, found.members, found.modules)))
    assert sys.modules["nbt_arriving_b"] is module
    assert "nbt_arriving_b" not in arrivals._ours


def test_a_module_imported_in_a_body_arrives_whole_and_is_not_sent_back_by_value(tmp_path, importable):
    (tmp_path / "nbt_arriving_lib.py").write_text(ARRIVING)
    (tmp_path / "nbt_arriving_c.py").write_text("def go(x):\n    import nbt_arriving_lib\n\n"
                                                "    return nbt_arriving_lib.read(x)\n")
    importable(tmp_path, "nbt_arriving_lib")
    module = importable(tmp_path, "nbt_arriving_c")
    found = travel.survey([module.go])
    assert set(found.modules) == {"nbt_arriving_lib"}
    travel.mark_local_modules()
    blob = cloudpickle.dumps((module.go, arrivals.Arrivals(None, found.members, found.modules)))

    for name in ("nbt_arriving_lib", "nbt_arriving_c"):
        cloudpickle.unregister_pickle_by_value(sys.modules.pop(name))  # as on an engine
    while str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))
    importlib.invalidate_caches()
    try:
        go, _ = pickle.loads(blob)
        reading = go(2)
        arrived = sys.modules["nbt_arriving_lib"]
        assert type(reading) is arrived.Reading and arrived.__file__ == str(tmp_path / "nbt_arriving_lib.py")
        travel.mark_local_modules()  # what an engine does before pickling a result
        assert "nbt_arriving_lib" not in cloudpickle.list_registry_pickle_by_value()
        assert ("nbt_arriving_lib", "Reading") in _globals(cloudpickle.dumps(reading))
    finally:
        sys.modules.pop("nbt_arriving_lib", None)
        arrivals._ours.pop("nbt_arriving_lib", None)
        arrivals._own.clear()


def test_relative_imports_in_a_body_are_resolved_against_the_package(tmp_path, importable):
    package = tmp_path / "nbt_relpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "rules.py").write_text("X = 1\n")
    (package / "work.py").write_text("def go():\n    from .rules import X\n    from . import rules\n\n"
                                     "    return X + rules.X\n")
    importable(tmp_path, "nbt_relpkg.rules")
    work = importable(tmp_path, "nbt_relpkg.work")
    found = travel.survey([work.go])
    assert set(found.modules) == {"nbt_relpkg", "nbt_relpkg.rules"}
    assert found.distributions == {}


def test_a_local_module_named_like_the_standard_librarys_is_local(tmp_path, importable, monkeypatch):
    (tmp_path / "test.py").write_text("def probe():\n    return 'mine'\n")
    monkeypatch.delitem(sys.modules, "test", raising=False)
    mine = importable(tmp_path, "test")
    assert mine.probe() == "mine"
    assert origin_of(mine).kind is Kind.LOCAL
