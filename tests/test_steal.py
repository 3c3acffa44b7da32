"""CPU steal (a VM's host running other guests) over what ovq measures: parsing /proc/stat, and what capacity
reports with it (bench's: tests/test_bench.py)."""

from __future__ import annotations

import sys

import pytest

from ovq.runtime import steal
from ovq.streaming.capacity import CapacityReport, Trial
from ovq.streaming.stats import RunSummary

STAT = """cpu  3629643 18973 858454 10529258 29685 0 8254 102077 0 0
cpu0 1814821 9486 429227 5264629 14842 0 4127 51038 0 0
intr 1 2 3
"""


def test_parse_stat_reads_the_aggregate_cpu_line():
    times = steal.parse_stat(STAT)
    assert times == steal.CpuTimes(steal=102077, total=3629643 + 18973 + 858454 + 10529258 + 29685 + 0 + 8254 + 102077,
                                   busy=3629643 + 18973 + 858454 + 0 + 8254)  # user nice system irq softirq


@pytest.mark.parametrize("text", ["", "intr 1 2\n", "cpu  1 2 3 4 5 6 7\n", "cpu  1 2 x 4 5 6 7 8\n"])
def test_parse_stat_without_a_usable_cpu_line_is_unknown(text):
    assert steal.parse_stat(text) is None


def test_sample_reads_a_file_and_is_unknown_without_one(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(STAT)
    assert steal.sample(stat) == steal.parse_stat(STAT)
    assert steal.sample(tmp_path / "nope") is None
    if sys.platform == "linux":
        assert steal.sample() is not None


def test_percent_between_samples_and_over_intervals():
    a, b = steal.CpuTimes(10, 1000), steal.CpuTimes(40, 1200)
    assert steal.percent(a, b) == pytest.approx(15.0)
    assert steal.percent(a, a) is None and steal.percent(None, b) is None and steal.percent(a, None) is None
    c, d = steal.CpuTimes(100, 5000), steal.CpuTimes(100, 5100)
    assert steal.percent_over([(a, b), (c, d)]) == pytest.approx(100 * 30 / 300)  # 30 of 300 ticks, not 15 and 0
    assert steal.percent_over([(a, b), (None, d)]) is None
    assert steal.percent_over([]) is None


def test_others_percent_is_busy_time_less_this_process():
    tick = steal._TICKS_PER_SECOND
    a = steal.CpuTimes(steal=0, total=0, busy=0)
    b = steal.CpuTimes(steal=0, total=4 * tick, busy=3 * tick)  # 4 CPU-seconds in all, 3 of them busy
    assert steal.others_percent(a, b, own_seconds=1.0) == pytest.approx(50.0)  # 2 of the 4 were someone else's
    assert steal.others_percent(a, b, own_seconds=3.5) == 0.0  # ovq's own time is never counted as others'
    assert steal.others_percent(a, None, 1.0) is None and steal.others_percent(b, b, 1.0) is None


def test_others_percent_over_intervals_adds_them_up():
    tick = steal._TICKS_PER_SECOND
    a, b = steal.CpuTimes(0, 0, 0), steal.CpuTimes(0, 2 * tick, 2 * tick)  # both cores busy for a second
    c, d = steal.CpuTimes(0, 10 * tick, 0), steal.CpuTimes(0, 12 * tick, 0)  # a second of nothing
    assert steal.others_percent_over([(a, b, 1.0), (c, d, 0.0)]) == pytest.approx(25.0)  # 1 of 4 CPU-seconds
    assert steal.others_percent_over([(a, b, 1.0), (None, d, 0.0)]) is None
    assert steal.others_percent_over([]) is None


def test_warning_only_above_the_threshold():
    assert steal.warning(None, "x") is None
    assert steal.warning(steal.STEAL_WARN_PERCENT - 0.1, "x") is None
    text = steal.warning(37.4, "figures are low")
    assert text is not None and "37 %" in text and text.endswith("figures are low")


def _trial(n, passed, stolen, others=None):
    return Trial(streams=n, fps=10.0, p95_ms=5.0, dropped=0 if passed else 3, cpu_percent=20.0, passed=passed,
                 why="" if passed else "3 dropped", steal_percent=stolen, others_percent=others)


def _report(trials, streams):
    return CapacityReport(model="m.xml", source="v.mp4", fps=10, max_p95_ms=None, device="CPU",
                          inference_precision="bf16", cpu="cpu", cores=2, seconds=3, streams=streams, trials=trials)


def test_capacity_table_shows_steal_and_warns_when_it_hit_the_failed_trials():
    stolen = _report([_trial(1, True, 2.0), _trial(2, True, None), _trial(4, False, 31.0), _trial(4, False, 2.0),
                      _trial(3, False, 3.0)], streams=2)
    table = stolen.table()
    assert "CPU % steal % others %  result" in table
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:] if line.split()[0].isdigit()}
    assert rows["1"][5] == "2" and rows["2"][5] == "-"
    assert table.splitlines()[-1].startswith("warning: this VM's host gave 31 %")
    assert "may take more streams" in table
    # steal only where the answer was not decided (a pass), or little of it where it was: no warning
    assert _report([_trial(1, True, 40.0), _trial(2, False, 1.0)], streams=1).steal_warning() is None
    assert "warning" not in _report([_trial(1, True, 40.0), _trial(2, True, 40.0)], streams=2).table()


def test_capacity_table_shows_other_processes_and_warns_when_they_hit_the_failed_trials():
    busy = _report([_trial(1, True, 0.0, 60.0), _trial(2, True, 0.0, 1.0), _trial(4, False, 0.0, 38.0),
                    _trial(3, False, 0.0, 2.0)], streams=2)
    table = busy.table()
    assert "CPU % steal % others %  result" in table
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:] if line.split()[0].isdigit()}
    assert rows["1"][6] == "60" and rows["4"][6] == "38"
    assert table.splitlines()[-1] == ("warning: other processes on this machine used 38 % of its CPU time while ovq "
                                      "measured: this machine alone may take more streams; measure again with them "
                                      "stopped")
    # busy only where a trial passed, or a little where the answer was decided: no warning
    assert _report([_trial(1, True, 0.0, 60.0), _trial(2, False, 0.0, 2.0)], streams=1).others_warning() is None
    assert "warning" not in _report([_trial(1, True, 0.0, None), _trial(2, False, 0.0, None)], streams=1).table()


@pytest.mark.parametrize("stolen, warned", [(None, False), (1.0, False), (22.0, True)])
def test_run_summary_warns_when_the_host_took_the_cpu(stolen, warned):
    lines = RunSummary(streams={}, seconds=2.0, device="CPU", extra={"steal_percent": stolen}).lines()
    assert (lines[-1] == "warning: this VM's host gave 22 % of its CPU time to other guests while ovq measured (steal): "
            "fps and latency are what the VM got from a busy host") is warned
    assert sum("warning" in line for line in lines) == warned


def test_own_cpu_seconds_counts_waited_children_only_when_asked():
    import subprocess

    before, before_children = steal.own_cpu_seconds(), steal.own_cpu_seconds(children=True)
    subprocess.run([sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"],
                   check=True)
    mine = steal.own_cpu_seconds() - before
    with_child = steal.own_cpu_seconds(children=True) - before_children
    assert with_child - mine >= 0.25, (mine, with_child)  # the child's 0.3 s (benchmark_app's, in bench_pipeline)
