"""In real JupyterLab, a run's widget already shows the final state when the answer appears.

The widget used to be redrawn only by a ticker twice a second, so ``print('answer',
run.result())`` showed its answer under a bar still at "22/24 running". The test takes
the page's DOM at the very moment the printed answer is added to it (a MutationObserver
in the page, no sleeping or polling that would give the widget time to catch up).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_lab import open_with_cluster, stop_cluster

pytestmark = pytest.mark.timeout(180)

# Installed on a cell before it runs: records the run widget as it is when the cell's printed
# answer enters the DOM (MutationObserver callbacks run before the page draws again).
WATCH_FOR_ANSWER = """(cell) => {
    window.nbtasksAtAnswer = null;
    const take = (mutations, observer) => {
        const answer = [...cell.querySelectorAll('[data-mime-type="application/vnd.jupyter.stdout"]')]
            .find((el) => el.textContent.includes('answer'));
        if (!answer) return;
        observer.disconnect();
        const widget = cell.querySelector('.nbtasks-run');
        const texts = (selector) => widget ? [...widget.querySelectorAll(selector)].map((el) => el.textContent) : [];
        window.nbtasksAtAnswer = {
            answer: answer.textContent.trim(),
            badge: texts('.nbtasks-badge'),
            header: widget ? widget.querySelector('.widget-html-content').textContent : null,
            stats: texts('.nbtasks-row .nbtasks-stats'),
            bars: widget ? [...widget.querySelectorAll('.widget-hprogress .progress-bar')]
                .map((el) => el.style.width) : [],
        };
    };
    new MutationObserver(take).observe(cell, {childList: true, subtree: true, characterData: true});
}"""


def test_the_answer_appears_under_a_finished_bar(lab_page):
    open_with_cluster(lab_page, "final.ipynb", [
        "run = nt.ParallelTask(lambda x: time.sleep(0.1) or x).submit(range(24), cluster=cluster)\n"
        "display(run)\n"
        "print('answer', sum(run.result()))",
    ])
    cell = lab_page.cell(2)
    cell.evaluate(WATCH_FOR_ANSWER)
    lab_page.run_cell(2, wait=60)
    expect(lab_page.outputs(2).filter(has_text="answer")).to_have_count(1, timeout=10_000)
    seen = lab_page.page.evaluate("window.nbtasksAtAnswer")
    lab_page.screenshot("answer")
    assert seen is not None, "the answer never entered the page"
    assert seen["answer"] == f"answer {sum(range(24))}", seen
    # what the page showed when the answer appeared: the final state, not the last tick's
    assert seen["badge"] == ["done"], seen
    assert "24 done · 0 failed" in seen["header"], seen
    assert seen["stats"] and all(stats.startswith("24/24") for stats in seen["stats"]), seen
    assert seen["bars"] and set(seen["bars"]) == {"100%"}, seen
    stop_cluster(lab_page, 3)
    assert not lab_page.error_outputs()
