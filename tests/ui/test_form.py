"""Parameter forms: fields from annotations, validation, runs and history."""

import enum
import pathlib
import time
from typing import Annotated, Literal

import ipywidgets as W
import pytest

import nbtasks as nt


class Method(enum.Enum):
    FAST = "fast"
    EXACT = "exact"


@nt.task
def model(xs, sigma: Annotated[float, nt.Range(0.1, 10)] = 1.0, steps: Annotated[int, nt.Range(1, 20)] = 5,
          *, kind: Literal["sum", "max"] = "sum", method: Method = Method.FAST, verbose: bool = False,
          label: str = "run", out: pathlib.Path = pathlib.Path("out.txt"), scale: float = 2.0, count: int = 1):
    value = sum(xs) if kind == "sum" else max(xs)
    return value * sigma * steps * scale * count


def wait_for(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_fields_follow_the_annotations():
    form = model.form([1, 2, 3])
    f = form.fields
    assert isinstance(f["sigma"], W.FloatSlider) and (f["sigma"].min, f["sigma"].max) == (0.1, 10)
    assert isinstance(f["steps"], W.IntSlider) and (f["steps"].min, f["steps"].max) == (1, 20)
    assert isinstance(f["kind"], W.Dropdown) and list(f["kind"].options) == ["sum", "max"]
    assert isinstance(f["method"], W.Dropdown) and f["method"].value is Method.FAST
    assert isinstance(f["verbose"], W.Checkbox)
    assert isinstance(f["label"], W.Text) and isinstance(f["out"], W.Text)
    assert isinstance(f["scale"], W.FloatText) and isinstance(f["count"], W.IntText)
    assert form.values == {"sigma": 1.0, "steps": 5, "kind": "sum", "method": Method.FAST, "verbose": False,
                           "label": "run", "out": pathlib.Path("out.txt"), "scale": 2.0, "count": 1}


def test_values_can_be_set_from_code_and_bad_ones_are_refused():
    form = model.form([1], sigma=2.0)
    assert form.values["sigma"] == 2.0
    form.set(steps=7, kind="max")
    assert form.fields["steps"].value == 7 and form.values["kind"] == "max"
    form.values = {"label": "second"}
    assert form.values["label"] == "second"
    with pytest.raises(ValueError, match="sigma.*<= 10"):
        form.set(sigma=50.0)
    with pytest.raises(TypeError, match="kind"):
        form.set(kind="median")
    with pytest.raises(TypeError, match="no parameter named 'bogus'"):
        form.set(bogus=1)
    assert form.values["sigma"] == 2.0  # nothing changed by a refused set


def test_a_composed_task_gathers_the_parameters_of_its_subtasks():
    @nt.task
    def scale(x, factor: float = 1.0):
        return x * factor

    @nt.task
    def shift(x, offset: int = 0):
        return x + offset

    form = nt.ContainerTask(nt.ParallelTask(scale, collect=sum), shift).form([1, 2])
    assert set(form.fields) == {"factor", "offset"}


def test_invalid_input_is_shown_inline_and_nothing_is_dispatched(cluster):
    @nt.task
    def needs_name(x, *, name: str):
        return f"{name}:{x}"

    form = needs_name.form(1, cluster=cluster)
    assert form.submit() is None
    assert "missing required keyword argument &#x27;name&#x27;" in form.message.value
    assert form.runs == [] and form.current.children == ()
    form.set(name="ok")
    assert form.message.value == ""  # editing clears the message
    run = form.submit()
    assert run.result(30) == "ok:1"


def test_run_button_shows_progress_result_and_history(cluster):
    form = model.form([1, 2, 3], cluster=cluster)
    form.set(sigma=2.0)
    form.button.click()
    first = form.runs[-1]
    assert form.current.children[0].__class__.__name__ == "VBox"  # the run's progress tree
    assert first.result(30) == 6 * 2.0 * 5 * 2.0
    wait_for(lambda: form.refresh() and form.result.outputs)
    assert form.result.outputs[0]["data"]["text/plain"] == "120.0"
    form.set(sigma=4.0, kind="max")
    form.button.click()
    assert form.runs[-1].result(30) == 3 * 4.0 * 5 * 2.0
    wait_for(lambda: form.refresh() and form.result.outputs)
    assert form.result.outputs[-1]["data"]["text/plain"] == "120.0"
    history = form.history_html.value
    assert history.index("sigma=4.0") < history.index("sigma=2.0")  # newest first
    assert history.count("<td>done</td>") == 2


def test_show_turns_a_result_into_what_is_displayed(cluster):
    form = model.form([1], cluster=cluster, show=lambda value: f"value is {value}")
    form.submit().result(30)
    wait_for(lambda: form.refresh() and form.result.outputs)
    assert form.result.outputs[0]["data"]["text/plain"] == "'value is 10.0'"
