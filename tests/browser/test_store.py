"""The Tasks sidebar's Store section in real JupyterLab (headless Chromium): it shows how
much the run store holds, and removes a task's runs after its confirm dialog."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .test_lab import open_tasks_sidebar, open_with_cluster, stop_cluster

pytestmark = pytest.mark.timeout(180)


def test_tasks_sidebar_shows_the_store_size_and_prunes_a_tasks_runs(lab_page):
    open_with_cluster(lab_page, "store.ipynb", [
        "def keepsake(x):\n    return bytes(50_000)\n\n"
        "run = nt.ParallelTask(keepsake).submit(list(range(8)), cluster=cluster)\n"
        "print(len(run.result(60)), run.id)",
    ])
    lab_page.run_cell(2, wait=60)
    expect(lab_page.outputs(2)).to_have_text(re.compile(r"^8 \w+\s*$"), timeout=10_000)
    run_id = lab_page.outputs(2).inner_text().split()[1]

    panel = open_tasks_sidebar(lab_page)
    row = panel.locator(f'.nbtasks-run[data-run-id="{run_id}"]')
    expect(row).to_have_attribute("data-state", "done", timeout=10_000)
    store = panel.locator(".nbtasks-store")
    # 8 units of 50 kB and the run's result of 400 kB: at least 800 kB of results
    expect(store.locator(".nbtasks-store-summary")).to_contain_text(re.compile(r"(kB|MB) of results · \d+ runs?"),
                                                                     timeout=10_000)
    held = int(store.get_attribute("data-results"))
    assert held >= 800_000
    expect(store.locator(".nbtasks-store-limit")).to_contain_text(re.compile(r"limit .*GB"))
    lab_page.screenshot("store")

    store.locator(".nbtasks-store-days").fill("0")
    store.locator(".nbtasks-store-name").fill("parallel(keepsake)")
    store.locator(".nbtasks-store-prune").click()
    dialog = lab_page.page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Remove every finished run of parallel(keepsake)")
    dialog.locator("button", has_text="Remove").click()
    expect(store.locator(".nbtasks-store-outcome")).to_have_text(re.compile(r"^Removed 1 run \(\d+\.\d kB\)\.$"),
                                                               timeout=10_000)
    expect(row).to_have_count(0, timeout=10_000)  # gone from the list
    expect(store).not_to_have_attribute("data-results", str(held), timeout=10_000)
    assert int(store.get_attribute("data-results")) <= held - 800_000
    lab_page.screenshot("store-pruned")
    stop_cluster(lab_page, 3)
    assert not lab_page.error_outputs()
