"""How an explanation reads: one line per task, a table in a notebook, the numbers, and
the same again when a later kernel loads it from the store."""

from __future__ import annotations

import pytest

from nbtasks.core.explain import Explanation, TaskExplanation


def explanation() -> Explanation:
    return Explanation([
        TaskExplanation("smooth", 2, units=365, reused=360, ran={"failed before": 1, "input new": 4}),
        TaskExplanation("report", 3, units=1, reused=1),
    ])


def test_one_line_per_task_the_commonest_reason_first():
    assert str(explanation()) == ("smooth: 360 of 365 units from the store; 5 ran: input new (4); failed before (1)\n"
                                  "report: 1 of 1 units from the store")


def test_a_notebook_shows_a_table_with_the_reasons_escaped():
    html = Explanation([TaskExplanation("<b>", 1, units=1, reused=0, ran={"parameter x<y changed": 1})])._repr_html_()
    assert "<table" in html and "&lt;b&gt;" in html and "parameter x&lt;y changed (1)" in html


def test_tasks_by_name_and_a_clear_error_for_a_name_it_lacks():
    assert explanation()["smooth"].ran == {"failed before": 1, "input new": 4}
    with pytest.raises(KeyError, match="no task named 'smoothe'.*'smooth', 'report'"):
        explanation()["smoothe"]


def test_the_stores_record_gives_the_same_explanation_back():
    again = Explanation.from_record(explanation().to_record())
    assert str(again) == str(explanation()) and again["report"].reused == 1
    assert str(Explanation.from_record(None)) == "no units"  # a run recorded before explanations
