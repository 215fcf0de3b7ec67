"""The bench's arithmetic (bench/metrics.py) and its command line: what the report's ratios,
growths and targets are computed from, and the order fresh-process measurements run in."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import metrics  # noqa: E402  (bench/ is not a package)
import run  # noqa: E402


def test_efficiency_is_the_share_of_the_workers_cores_that_did_the_work():
    assert metrics.efficiency(2.0, 1.0, 2) == 1.0
    assert metrics.efficiency(2.0, 1.25, 2) == pytest.approx(0.8)
    assert metrics.efficiency(2.0, 2.0, 1) == 1.0


@pytest.mark.parametrize("serial, wall, workers", [(2.0, 0.0, 2), (-1.0, 1.0, 2), (2.0, 1.0, 0)])
def test_efficiency_refuses_what_is_not_a_measurement(serial, wall, workers):
    with pytest.raises(ValueError, match="efficiency needs"):
        metrics.efficiency(serial, wall, workers)


def test_spread_gives_best_median_and_90th_percentile():
    times = [float(t) for t in range(1, 11)]  # 1..10, given out of order
    out = metrics.spread(times[::-1])
    assert out["best"] == 1.0 and out["median"] == 5.5
    assert out["p90"] == pytest.approx(9.1)
    assert metrics.spread([0.004]) == {"best": 0.004, "median": 0.004, "p90": 0.004}
    with pytest.raises(ValueError):
        metrics.spread([])


def test_growth_is_the_highest_reading_above_the_first_and_never_negative():
    assert metrics.growth(60.0, [75.0, 90.0, 88.0]) == 30.0
    assert metrics.growth(60.0, [59.0, 58.0]) == 0.0
    with pytest.raises(ValueError):
        metrics.growth(60.0, [])


def test_descendants_are_the_process_and_everything_below_it():
    # 1 (init) -> 100 (controller) -> 101, 102 (schedulers) -> 103; 200 is a stranger; 0 -> 0 loops
    parents = {0: 0, 1: 0, 100: 1, 101: 100, 102: 100, 103: 102, 200: 1}
    assert sorted(metrics.descendants(100, parents)) == [100, 101, 102, 103]
    assert metrics.descendants(103, parents) == [103]
    with pytest.raises(KeyError, match="999"):
        metrics.descendants(999, parents)


def test_interleave_runs_fresh_process_peers_round_by_round():
    plan = ["tiny", "cold-a", "cold-b", "cold-c", "cpu"]
    rounds = {"cold-a": 3, "cold-b": 3, "cold-c": 1}
    assert metrics.interleave(plan, rounds) == [
        "tiny", "cold-a", "cold-b", "cold-c", "cold-a", "cold-b", "cold-a", "cold-b", "cpu"]
    assert metrics.interleave(["cold-b", "x"], rounds) == ["cold-b", "cold-b", "cold-b", "x"]
    assert metrics.interleave(["x", "y"], rounds) == ["x", "y"]


def test_parse_size_reads_units_and_milliseconds():
    assert metrics.parse_size("40x50") == (40, 0.05)
    assert metrics.parse_size("4X500") == (4, 0.5)
    assert metrics.size_label(400, 0.005) == "400 x 5 ms"
    for bad in ("40", "x50", "0x50", "40x0", "40x-5", "ax5"):
        with pytest.raises(ValueError, match="UNITSxMILLISECONDS"):
            metrics.parse_size(bad)


def test_thin_keeps_the_first_and_the_last_reading_evenly_spaced():
    readings = [(float(i),) for i in range(11)]
    assert metrics.thin(readings, 3) == [(0.0,), (5.0,), (10.0,)]
    assert metrics.thin(readings[:2], 8) == readings[:2]
    with pytest.raises(ValueError):
        metrics.thin(readings, 1)


def test_the_command_line_names_each_section_and_refuses_bad_sizes(capsys):
    args = run.parse_args(["--only", "cpu", "cold-start", "rtt-dask", "--cpu-sizes", "40x50", "4X500"])
    assert run.plan_of(args) == [*run.GROUPS["cpu"], *run.GROUPS["cold-start"], "rtt-dask"]
    assert args.cpu_sizes == ["40x50", "4x500"]  # written as the targets name them
    default = run.plan_of(run.parse_args([]))
    assert "memory-million" in default and "rtt-nbtasks" in default and "cpu-dask" in default
    assert not set(run.OPT_IN) & set(default)  # big arrays and many engines only when asked for
    assert set(run.OPT_IN) <= set(run.plan_of(run.parse_args(["--all"])))
    for argv in (["--cpu-sizes", "40"], ["--only", "nothing"], ["--repeats", "0"]):
        with pytest.raises(SystemExit):
            run.parse_args(argv)
    assert "UNITSxMILLISECONDS" in capsys.readouterr().err


def test_a_target_is_not_run_error_pass_or_fail():
    results = {"a": {"error": "not run"}, "b": {"error": "exit code 1"}, "c": {"best": 1.0}}
    assert run.verdict(results, ["a"], None) == "not run"
    assert run.verdict(results, ["a", "b"], None) == "ERROR"
    assert run.verdict(results, ["c"], True) == "PASS"
    assert run.verdict(results, ["c"], False) == "FAIL"
