"""The public names users and tutorials rely on, and the layer rule for core."""

import subprocess
import sys

import nbtasks as nt

PUBLIC = {
    "__version__", "task", "Task", "FunctionTask", "ContainerTask", "ParallelTask", "MapReduceTask",
    "Range", "Run", "RunState", "UnitState", "progress", "shared", "Cluster", "ClusterError",
    "NbtasksError", "TaskDefinitionError", "UnitError", "RunFailed", "RemoteTraceback",
    "Retry", "UnitTimeout", "runs",
}


def test_public_names_are_pinned():
    assert set(nt.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(nt, name) is not None


def test_core_imports_no_cluster_or_jupyter():
    code = ("import sys, nbtasks, nbtasks.core; "
            "bad = [m for m in ('ipyparallel', 'jupyter_server', 'ipywidgets', 'zmq', 'IPython') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_attribute_is_an_attribute_error():
    try:
        _ = nt.NoSuchThing
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
