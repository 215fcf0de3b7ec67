"""Tasks: the decorator, subclassing, local calls, declared parameters."""

import enum
import pathlib
from typing import Annotated, Literal

import pytest

import nbtasks as nt
from nbtasks.core.task import as_task


@nt.task
def square(x: int) -> int:
    """Square a number."""
    return x * x


class Colour(enum.Enum):
    RED = 1
    BLUE = 2


@nt.task
def blur(image: list, sigma: Annotated[float, nt.Range(0.1, 10)] = 1.0, *,
         mode: Literal["wrap", "clip"] = "clip", colour: Colour = Colour.RED,
         out: pathlib.Path = pathlib.Path("x"), verbose: bool = False) -> list:
    return [v * sigma for v in image]


def test_decorated_function_is_a_task_called_locally():
    assert isinstance(square, nt.Task)
    assert square(3) == 9
    assert square.name == "square"
    assert square.__doc__ == "Square a number."


def test_decorator_with_options_and_tag():
    @nt.task(name="sq", tag="math")
    def f(x):
        return x * x

    assert (f.name, f.tag, f(4)) == ("sq", "math", 16)
    assert square.tag == "square"


def test_subclass_overrides_work():
    class Scale(nt.Task):
        def work(self, x, factor: float = 2.0):
            return x * factor

    t = Scale()
    assert t(3) == 6.0
    assert t(3, factor=3) == 9
    assert set(t.params()) == {"factor"}


def test_task_without_work_says_so():
    with pytest.raises(nt.TaskDefinitionError, match="override work"):
        nt.Task()(1)


def test_params_come_from_defaults_and_keyword_only_arguments():
    params = blur.params()
    assert list(params) == ["sigma", "mode", "colour", "out", "verbose"]
    assert params["sigma"].annotation is float
    assert params["sigma"].constraints == (nt.Range(0.1, 10),)
    assert params["sigma"].default == 1.0


def test_unknown_parameter_is_a_type_error_like_a_normal_call():
    with pytest.raises(TypeError, match="unexpected keyword argument 'sigm'"):
        blur([1], sigm=2)


def test_wrong_parameter_types_are_type_errors():
    with pytest.raises(TypeError, match="sigma"):
        blur([1], sigma="big")
    with pytest.raises(TypeError, match="mode"):
        blur([1], mode="reflect")
    with pytest.raises(TypeError, match="colour"):
        blur([1], colour="RED")
    with pytest.raises(TypeError, match="verbose"):
        blur([1], verbose="yes")


def test_accepted_parameter_values():
    assert blur([1], sigma=2) == [2]  # an int is a fine float
    assert blur([1], out="a/b", colour=Colour.BLUE, mode="wrap", verbose=True) == [1.0]


def test_range_violation_is_a_value_error():
    with pytest.raises(ValueError, match="sigma.*<= 10"):
        blur([1], sigma=11.0)


def test_required_keyword_parameter_missing():
    @nt.task
    def f(x, *, k: int):
        return x + k

    with pytest.raises(TypeError, match="missing required keyword argument 'k'"):
        f(1)
    assert f(1, k=2) == 3


def test_plain_callables_become_tasks_and_others_are_rejected():
    assert as_task(len)([1, 2]) == 2
    with pytest.raises(nt.TaskDefinitionError, match="must be a Task or a callable"):
        as_task(42)
    with pytest.raises(nt.TaskDefinitionError):
        nt.ContainerTask(square, "not a task")


def test_task_with_no_input():
    @nt.task
    def load(n: int = 3):
        return list(range(n))

    assert load() == [0, 1, 2]
    assert load(n=2) == [0, 1]
