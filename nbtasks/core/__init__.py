"""Task model and composition; imports neither ipyparallel nor Jupyter."""

from .compose import ContainerTask, MapReduceTask, ParallelTask
from .errors import NbtasksError, RemoteTraceback, Retry, RunFailed, TaskDefinitionError, UnitError, UnitTimeout
from .params import Range
from .run import Run
from .states import RunState, UnitState
from .task import FunctionTask, Task, as_task, task

__all__ = [
    "Task", "FunctionTask", "task", "as_task",
    "ContainerTask", "ParallelTask", "MapReduceTask",
    "Range", "Run", "RunState", "UnitState",
    "NbtasksError", "TaskDefinitionError", "UnitError", "RunFailed", "RemoteTraceback", "Retry", "UnitTimeout",
]
