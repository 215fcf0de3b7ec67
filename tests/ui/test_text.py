"""Text progress for scripts and CI logs."""

import subprocess

SCRIPT = '''
import nbtasks as nt
with nt.Cluster(n=2) as c:
    print(nt.ParallelTask(lambda x: x + 1, collect=sum).run(range(300), cluster=c{extra}))
'''


def test_a_script_shows_a_text_bar_while_it_waits(python_script):
    out = subprocess.run(python_script(SCRIPT.format(extra="")), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "45150"
    assert "100%" in out.stderr and "300/300" in out.stderr and "done" in out.stderr


def test_progress_false_draws_nothing(python_script):
    out = subprocess.run(python_script(SCRIPT.format(extra=", progress=False")), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "45150"
    assert "300/300" not in out.stderr
