"""CPU time a virtual machine's hypervisor gave to other guests ("steal"), over the time something was measured.

A benchmark on a VM measures the share of the host it was given, not the machine. On this project's 2-core EPYC
Zen 5 VM, ``benchmark_app`` on FastestDet (bf16) read 322 fps in a 15 s run in which the hypervisor took 37 % of the
CPU time (``/proc/stat``), against 511 fps on another day; idle, the same VM showed 1 %. So ``ovq bench`` and
``ovq capacity`` say how much was stolen while they measured, and warn above :data:`STEAL_WARN_PERCENT`.

Other processes on the same machine take CPU time the same way, with no steal at all: on the 2-core AMX Xeon, with
test runs beside it, a capacity trial of 10 FastestDet streams at 25 fps failed while other processes had 32 % of
the CPU time, and the search's answer read as the machine's.
:func:`others_percent` is the CPU time the machine spent busy, less what ovq's own process used.

Read from Linux's ``/proc/stat`` (the ``cpu`` line's 8th field for steal; user, nice, system, irq and softirq for
busy); elsewhere :func:`sample` is ``None`` and nothing is reported.

    start = steal.sample()
    ...  # the measured work
    percent = steal.percent(start, steal.sample())   # None where unknown
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Above this, absolute figures (fps, capacity) are said to be the host's share, not the machine's. Idle, these VMs
# showed 0-1 %; a noisy hour 30-40 %.
STEAL_WARN_PERCENT = 5.0
# Likewise for other processes: 5 % of a 2-core machine is a tenth of a core, several streams of a small model.
OTHERS_WARN_PERCENT = 5.0
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc/stat's unit


@dataclass(frozen=True)
class CpuTimes:
    """All CPUs' time since boot, in clock ticks: ``steal`` of ``total`` (every state, steal included), and
    ``busy`` (user, nice, system, irq, softirq: running something, on this machine)."""

    steal: int
    total: int
    busy: int = 0


def parse_stat(text: str) -> CpuTimes | None:
    """The aggregate ``cpu`` line of ``/proc/stat`` text; ``None`` when it has none or no steal field (old kernels)."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            try:
                # user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is counted in user
                # already, so the total is the first eight
                ticks = [int(f) for f in fields[1:9]]
            except ValueError:
                return None
            if len(ticks) < 8:
                return None
            user, nice, system, _idle, _iowait, irq, softirq = ticks[:7]
            return CpuTimes(steal=ticks[7], total=sum(ticks), busy=user + nice + system + irq + softirq)
    return None


def sample(stat: str | Path = "/proc/stat") -> CpuTimes | None:
    """The machine's CPU times now, or ``None`` where ``/proc/stat`` cannot be read."""
    try:
        return parse_stat(Path(stat).read_text(encoding="ascii", errors="replace"))
    except OSError:
        return None


def percent(start: CpuTimes | None, end: CpuTimes | None) -> float | None:
    """Steal between two samples, in % of all CPU time in between; ``None`` when either is unknown or no time
    passed."""
    if start is None or end is None or end.total <= start.total:
        return None
    return 100.0 * max(0, end.steal - start.steal) / (end.total - start.total)


def percent_over(intervals: Iterable[tuple[CpuTimes | None, CpuTimes | None]]) -> float | None:
    """Steal over several (start, end) intervals taken together, e.g. one configuration's turns in an interleaved
    benchmark; ``None`` when any bound is unknown."""
    stolen = total = 0
    for start, end in intervals:
        if start is None or end is None:
            return None
        stolen += max(0, end.steal - start.steal)
        total += end.total - start.total
    return 100.0 * stolen / total if total > 0 else None


def own_cpu_seconds(*, children: bool = False) -> float:
    """This process's CPU time so far (all its threads, user and system), seconds: what :func:`others_percent`
    takes away from the machine's busy time; with ``children``, that of the child processes it waited for too."""
    t = os.times()
    return t.user + t.system + (t.children_user + t.children_system if children else 0.0)


def others_percent(start: CpuTimes | None, end: CpuTimes | None, own_seconds: float) -> float | None:
    """CPU time the machine spent running other processes between two samples (busy time less ``own_seconds``,
    this process's CPU time in between), in % of all CPU time; ``None`` when either sample is unknown."""
    if start is None or end is None or end.total <= start.total:
        return None
    busy = (end.busy - start.busy) / _TICKS_PER_SECOND
    return 100.0 * max(0.0, busy - own_seconds) / ((end.total - start.total) / _TICKS_PER_SECOND)


def others_percent_over(intervals: Iterable[tuple[CpuTimes | None, CpuTimes | None, float]]) -> float | None:
    """:func:`others_percent` over several (start, end, own seconds) intervals taken together; ``None`` when any
    bound is unknown or no time passed."""
    busy = own = total = 0.0
    for start, end, seconds in intervals:
        if start is None or end is None:
            return None
        busy += end.busy - start.busy
        total += end.total - start.total
        own += seconds
    if total <= 0:
        return None
    return 100.0 * max(0.0, busy / _TICKS_PER_SECOND - own) / (total / _TICKS_PER_SECOND)


def warning(steal_percent: float | None, consequence: str) -> str | None:
    """``consequence`` prefixed with how much was stolen, when that is enough to move absolute figures; else
    ``None``. The percentage is of all CPU time, as ``top`` shows it (``st``)."""
    if steal_percent is None or steal_percent < STEAL_WARN_PERCENT:
        return None
    return f"this VM's host gave {steal_percent:.0f} % of its CPU time to other guests while ovq measured (steal): {consequence}"
