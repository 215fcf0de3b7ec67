"""What the notebook UI costs, measured in a real kernel.

1. Widget overhead: the same 100,000-unit run with and without its live
   progress widget displayed (wall time of ``run.result()`` plus the widget's
   last refresh), and how many widget messages (``comm_msg``) the display
   sent. Two unit sizes: no-op units (the run lasts ~0.1 s, so fixed costs
   dominate) and ~20 µs units (2 s of work: about a second on 2 engines).
2. Kernel responsiveness: while a run of CPU-heavy units keeps both engines
   busy and its widget updates, how long a trivial cell (``1 + 1``) takes
   from request to reply.

Run: ``.venv/bin/python bench/ui.py`` (part of ``make bench``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import shutil
import tempfile
import time
from typing import Any

from jupyter_client.manager import start_new_kernel

from leftovers import reap_orphans  # bench/leftovers.py

SETUP = """
import time, nbtasks as nt
from IPython.display import display
cluster = nt.Cluster(n=2).start()
def noop(x):
    return x
def small(x):
    return sum(range(2000))
def heavy(x):
    end = time.perf_counter() + 0.2
    while time.perf_counter() < end:
        pass
    return x
nt.ParallelTask(noop).run(range(1000), cluster=cluster)
"""

DRAIN = 1.5  # seconds of messages collected after the cell, for the widget's last refreshes

TIMED = """
_t = time.perf_counter()
_run = nt.ParallelTask({fn}).submit(range({n}), cluster=cluster, cache=False)
{display}
_run.result()
_elapsed = time.perf_counter() - _t
print("ELAPSED", _elapsed)
"""


def execute(kc: Any, code: str, timeout: float = 300) -> tuple[list[dict], float]:
    """Run ``code``; return every iopub message until idle, and request-to-reply seconds."""
    started = time.perf_counter()
    msg_id = kc.execute(code)
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    replied = time.perf_counter() - started
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"cell failed: {reply['content'].get('ename')}: {reply['content'].get('evalue')}")
    messages = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        messages.append(msg)
        if (msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
                and msg["parent_header"].get("msg_id") == msg_id):
            return messages, replied


def drain(kc: Any, seconds: float) -> list[dict]:
    """Collect iopub messages for a while (the widget's last refreshes come after the cell)."""
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            out.append(kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic())))
        except Exception:
            break
    return out


def elapsed_of(messages: list[dict]) -> float:
    for m in messages:
        if m["msg_type"] == "stream" and "ELAPSED" in m["content"]["text"]:
            return float(m["content"]["text"].split()[1])
    raise RuntimeError("no timing printed")


def widget_overhead(kc: Any, fn: str, n: int, repeats: int) -> dict[str, Any]:
    plain, shown, msgs = [], [], []
    for _ in range(repeats):
        out, _ = execute(kc, TIMED.format(fn=fn, n=n, display=""))
        plain.append(elapsed_of(out))
        out, _ = execute(kc, TIMED.format(fn=fn, n=n, display="display(_run)"))
        shown.append(elapsed_of(out))
        out += drain(kc, DRAIN)  # until the ticker's final refresh has gone out
        msgs.append((sum(1 for m in out if m["msg_type"] == "comm_open"),
                     sum(1 for m in out if m["msg_type"] == "comm_msg")))
    p, s = statistics.median(plain), statistics.median(shown)
    opens, updates = max(msgs)
    return {"units": n, "unit": fn, "plain": p, "shown": s, "overhead": s / p - 1, "opens": opens,
            "updates": updates}


def responsiveness(kc: Any, samples: int) -> list[float]:
    execute(kc, "_busy = nt.ParallelTask(heavy).submit(range(60), cluster=cluster, cache=False); display(_busy)")
    times = []
    for _ in range(samples):
        time.sleep(0.2)
        _, replied = execute(kc, "1 + 1")
        times.append(replied)
    execute(kc, "_busy.cancel()")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--units", type=int, default=100_000)
    args = parser.parse_args()
    ipython_dir = os.environ["IPYTHONDIR"] = tempfile.mkdtemp(prefix="nbtasks-bench-ui-")
    # the kernel's `import nbtasks` must not start a default cluster beside the one SETUP starts
    os.environ["NBTASKS_PRESTART"] = "0"
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        execute(kc, SETUP)
        rows = [widget_overhead(kc, "noop", args.units, args.repeats),
                widget_overhead(kc, "small", args.units, args.repeats)]
        replies = responsiveness(kc, 8)
        execute(kc, "cluster.stop()")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        orphans = reap_orphans(ipython_dir)  # the kernel's cluster stopped with it: nothing should be left
        shutil.rmtree(ipython_dir, ignore_errors=True)
    lines = ["## nbtasks notebook UI — " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "",
             "| run | no display (s) | with live widget (s) | overhead | widgets opened | "
             f"widget updates (per s over the run and the {DRAIN:g} s after) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['units']:,} × {r['unit']} | {r['plain']:.3f} | {r['shown']:.3f} | "
                     f"{r['overhead']:+.1%} | {r['opens']} | "
                     f"{r['updates']} ({r['updates'] / (r['shown'] + DRAIN):.1f}/s) |")
    worst = max(replies)
    lines += ["", f"Trivial cell while 2 engines run CPU-heavy units under a live widget: "
                  f"median {statistics.median(replies) * 1000:.0f} ms, worst {worst * 1000:.0f} ms "
                  f"over {len(replies)} cells.", "",
              "| target | measured | result |", "|---|---|---|",
              f"| widget overhead < 5% (~1 s run of 100,000 units) | {rows[1]['overhead']:+.1%} | "
              f"{'PASS' if rows[1]['overhead'] < 0.05 else 'FAIL'} |",
              f"| a trivial cell answers in < 1 s during a heavy run | {worst * 1000:.0f} ms | "
              f"{'PASS' if worst < 1.0 else 'FAIL'} |", "",
              "Processes left behind (terminated by pid): " + ("; ".join(orphans) if orphans else "none")]
    report = "\n".join(lines)
    print(report)
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "results", "ui.md"), "w") as f:
        f.write(report + "\n")
    return 1 if orphans else 0


if __name__ == "__main__":
    sys.exit(main())
