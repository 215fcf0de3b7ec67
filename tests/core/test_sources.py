"""Shipped code keeps its file names and lines in tracebacks, wherever it is rebuilt."""

import linecache
import pickle
import traceback

import cloudpickle

from nbtasks.core.sources import code_origins

SOURCE = '''\
def outer(values):
    return [inner(v) for v in values]


def inner(v):
    return 10 / v
'''


def _defined_in(path):
    scope = {"__name__": "analysis"}  # no such module: pickled by value, as a cell's code is
    exec(compile(SOURCE, str(path), "exec"), scope)
    return scope["outer"]


def _failure(fn, *args):
    try:
        fn(*args)
    except Exception as exc:
        return exc
    raise AssertionError("no failure")


def test_frames_name_the_original_files_and_lines_of_rebuilt_code(tmp_path):
    path = tmp_path / "analysis.py"
    path.write_text(SOURCE)
    origins = code_origins(_defined_in(path))
    assert str(path) in origins.lines

    rebuilt = cloudpickle.loads(cloudpickle.dumps(_defined_in(path)))
    path.unlink()  # like a remote host, which lacks the client's files
    linecache.checkcache()
    shipped = pickle.loads(pickle.dumps(origins))
    shipped.install()
    exc = _failure(rebuilt, [1, 0])
    text = "".join(traceback.format_list(shipped.frames(exc.__traceback__)))
    assert f'File "{path}", line 2, in outer' in text
    assert "return [inner(v) for v in values]" in text
    assert f'File "{path}", line 6, in inner' in text
    assert "return 10 / v" in text


def test_code_from_elsewhere_keeps_its_own_frames(tmp_path):
    path = tmp_path / "analysis.py"
    path.write_text(SOURCE)
    origins = code_origins(_defined_in(path))
    exc = _failure(lambda: int("x"))
    frames = origins.frames(exc.__traceback__)
    assert [f.name for f in frames] == ["_failure", "<lambda>"]
    assert frames[0].filename == __file__
