"""Parameter forms: fields from annotations, validation, runs and history."""

import enum
import pathlib
import time
from typing import Annotated, Literal

import ipywidgets as W
import pytest

import nbtasks as nt
from tests.core.test_compose import scale_then_shift


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
    assert f["sigma"].step == 0.01  # round steps: the default and round values are on the grid
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
    form = scale_then_shift().form([1, 2])
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
    assert history.count(">done</td>") == 2


def test_show_turns_a_result_into_what_is_displayed(cluster):
    form = model.form([1], cluster=cluster, show=lambda value: f"value is {value}")
    form.submit().result(30)
    wait_for(lambda: form.refresh() and form.result.outputs)
    assert form.result.outputs[0]["data"]["text/plain"] == "'value is 10.0'"


def test_optional_parameters_run_from_the_form(cluster):
    from typing import Optional

    @nt.task
    def limit(xs, top: Optional[int] = None, ratio: float | None = None):
        return xs[:top] if ratio is None else [x * ratio for x in xs[:top]]

    form = limit.form([1, 2, 3], cluster=cluster)
    assert form.values == {"top": None, "ratio": None}
    assert form.submit().result(30) == [1, 2, 3]
    form.set(top=2)
    assert form.values == {"top": 2, "ratio": None}
    form.fields["ratio"].value = "0.5"  # typed by a person
    assert form.submit().result(30) == [0.5, 1.0]
    form.fields["top"].value = "two"
    assert form.submit() is None and "top" in form.error


def test_presets_are_checked_like_values_set_from_code():
    with pytest.raises(ValueError, match="sigma.*<= 10"):
        model.form([1], sigma=50.0)
    with pytest.raises(TypeError, match="kind"):
        model.form([1], kind="zzz")
    with pytest.raises(TypeError, match="no parameter named 'bogus'"):
        model.form([1], bogus=1)


def test_a_failing_show_is_reported_and_the_form_goes_on(cluster):
    form = model.form([1], cluster=cluster, show=lambda value: 1 / 0)
    form.submit()
    assert form.wait(30) == 10.0
    assert "show(result) failed: ZeroDivisionError" in form.error
    assert ">done</td>" in form.history_html.value


def test_a_matplotlib_figure_shows_as_a_png(cluster):
    from matplotlib.figure import Figure

    def plot(value):
        fig = Figure(figsize=(2, 2))
        fig.subplots().plot([0, value])
        return fig

    form = model.form([1], cluster=cluster, show=plot)
    form.submit()
    form.wait(30)
    data = form.result.outputs[0]["data"]
    assert "image/png" in data


def test_wait_before_any_run_says_why():
    with pytest.raises(RuntimeError, match="not run yet"):
        model.form([1]).wait(1)
