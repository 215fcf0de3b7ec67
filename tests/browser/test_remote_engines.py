"""The Tasks sidebar with engines on other hosts (SSH engines on the test hosts of
``tests/hosts/``): it lists them under their hosts' names, shows them busy while a run
goes, and its Cancel stops units running there."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from .test_lab import SETUP, STOP, open_tasks_sidebar

pytestmark = pytest.mark.timeout(240)


def ssh_cluster_cell(ssh_hosts) -> str:
    """The cell a user writes for SSH engines: only the Cluster line differs from a laptop's
    (its settings spelled out here; a user keeps them in ipcluster_config.py)."""
    config = ssh_hosts.launcher_config(per_host=1, hosts=["node1", "node2"])
    return "\n".join([
        "from traitlets.config import Config",
        "config = Config()",
        f"config.SSHLauncher.ssh_args = config.SSHLauncher.scp_args = {list(config.SSHLauncher.ssh_args)!r}",
        f"config.SSHLauncher.remote_python = {config.SSHLauncher.remote_python!r}",
        f"config.SSHEngineSetLauncher.engines = {dict(config.SSHEngineSetLauncher.engines)!r}",
        'cluster = nt.Cluster(engines="ssh", config=config).start()',
        'sorted(row["host"] for row in cluster.engines_status())',
    ])


def test_the_sidebar_shows_remote_engines_and_cancels_a_run_on_them(lab_page, ssh_hosts):
    lab_page.open(lab_page.lab.write_notebook("remote.ipynb", [
        SETUP, ssh_cluster_cell(ssh_hosts),
        "run = nt.ParallelTask(time.sleep).submit([0.25] * 400, cluster=cluster, cache=False); run",
        "run.cancelled(), run.cancel_reason",
        STOP,
    ]))
    lab_page.run_cell(0, key="Shift+Enter")
    lab_page.run_cell(1, wait=120)
    # (beside it, on stderr: ipyparallel's SSH launcher creating the profile on each host)
    expect(lab_page.outputs(1).filter(has_text="['node1', 'node2']")).to_have_count(1)
    lab_page.run_cell(2, wait=30)
    badge = lab_page.cell(2).locator(".nbtasks-run .nbtasks-badge")
    expect(badge).to_have_text("running", timeout=20_000)

    panel = open_tasks_sidebar(lab_page)
    busy = panel.locator('.nbtasks-engine[data-busy="true"]')
    expect(busy).to_have_count(2, timeout=15_000)
    details = sorted(busy.nth(k).locator(".nbtasks-engine-detail").inner_text() for k in range(2))
    assert [d.split()[0] for d in details] == ["node1", "node2"], details
    row = panel.locator(".nbtasks-run").first
    expect(row).to_have_attribute("data-state", "running", timeout=10_000)
    lab_page.screenshot("remote-engines-running")

    row.locator(".nbtasks-cancel").click()
    expect(badge).to_have_text("cancelled", timeout=10_000)
    expect(row).to_have_attribute("data-state", "cancelled", timeout=10_000)
    expect(row.locator(".nbtasks-run-counts")).to_have_text(re.compile(r"^\d+ / 400 · \d+ cancelled$"),
                                                            timeout=10_000)
    expect(busy).to_have_count(0, timeout=15_000)  # the units running on the hosts were interrupted
    lab_page.run_cell(3, wait=15)
    expect(lab_page.outputs(3)).to_have_text("(True, 'cancelled from the JupyterLab Tasks panel')")
    lab_page.screenshot("remote-engines-cancelled")
    lab_page.run_cell(4, wait=90)
    expect(lab_page.outputs(4).filter(has_text="cluster stopped")).to_have_count(1, timeout=60_000)
    assert not lab_page.error_outputs()
    deadline = time.monotonic() + 20
    while any(host.processes() for host in ssh_hosts.network.hosts) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [(h.name, p.cmdline()) for h in ssh_hosts.network.hosts for p in h.processes()]
