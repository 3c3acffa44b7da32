"""Stream density: how many cameras at N fps one machine sustains with a model.

A *trial* runs ``n`` copies of one video file through the pipeline, each paced at ``fps`` like a camera
(newest frame only, the copies out of phase), for a warm-up and then a measured window. It passes when, in
the window, no stream dropped a frame, every stream delivered ``fps`` results per second, and (when a bound is
given) the p95 capture-to-result latency of every stream stayed under it. :func:`search` doubles ``n`` until
a trial fails, then bisects between the last pass and the first failure; the answer is the largest ``n`` that
passed (0 when even one stream cannot keep up). A failed trial is run once more before ``n`` counts as failed:
one hiccup of the machine must not decide the answer. On the 2-core EPYC Zen 5 VM, YOLOX-Nano at 25 fps once
dropped 2 frames with 2 streams at 36 % CPU, so the search answered 1; the same search answered 7 an hour
earlier, and the 2-stream trial passed in each of 3 searches right after.

    report = capacity("model.xml", "camera.mp4", fps=25, max_p95_ms=200)
    report.streams    # the answer
    report.trials     # every trial, in the order run
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ovq.core.errors import ConfigError, SourceError
from ovq.model.decoders.graph_nms import nms_mode
from ovq.model.detector import Detector
from ovq.model.ingraph import resize_mode
from ovq.runtime import steal
from ovq.streaming.sources import check_decode, open_source, parse_source

logger = logging.getLogger(__name__)

FPS_TOLERANCE = 0.02  # a stream keeps up when it delivers >= 98 % of the frames due in the window (minus one)
# The shortest window a trial measures. It counts whole frames, so one frame more or less moves a stream's rate by
# 1/seconds fps (the verdict's "minus one"): under a second, or under 5 frames per stream, that slack lets a
# stream that fell a fifth or more behind pass, and --seconds 1e-9 reported "1 stream, 0.00 fps, ok".
MIN_TRIAL_SECONDS = 1.0
MIN_TRIAL_FRAMES = 5


@dataclass(frozen=True)
class Trial:
    """One trial: ``streams`` paced copies; the slowest stream's fps, the worst stream's p95, drops in all."""

    streams: int
    fps: float  # results per second of the slowest stream, in the measured window
    p95_ms: float | None  # the largest per-stream p95 latency (capture -> result), ms
    dropped: int  # frames replaced before inference took them, all streams, in the window
    cpu_percent: float  # this process's CPU time over the window, in % of all cores
    passed: bool
    why: str = ""  # what failed, empty when passed
    attempt: int = 1  # 2: the same count run again after a failure
    steal_percent: float | None = None  # CPU time a VM's host gave other guests in the window (None: unknown)
    others_percent: float | None = None  # CPU time other processes on this machine used in the window, % of all


@dataclass
class CapacityReport:
    """The answer (``streams``) and every trial behind it."""

    model: str
    source: str
    fps: float
    max_p95_ms: float | None
    device: str
    inference_precision: str
    cpu: str
    cores: int
    seconds: float  # measured window per trial
    resize: str = "auto"  # where frames were resized (auto, python, graph)
    nms: str = "auto"  # where boxes were decoded and NMS'd (auto, python, graph)
    decode: str = "auto"  # video decoding asked for (auto, software, vaapi...)
    streams: int = 0
    trials: list[Trial] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C ended the search: ``streams`` is only the most that passed so far

    def to_dict(self) -> dict[str, Any]:
        data = {**asdict(self), "trials": [asdict(t) for t in sorted(self.trials, key=lambda t: t.streams)]}
        if self.interrupted:  # never an answer a reader of "streams" takes for the search's
            data["streams"], data["streams_at_least"] = None, self.streams
        return data

    def table(self) -> str:
        bound = f", p95 <= {self.max_p95_ms:g} ms" if self.max_p95_ms is not None else ""
        head = (
            f"{Path(self.model).name} on {self.device} ({self.inference_precision}), {self.cpu}, {self.cores} cores; "
            f"source {self.source} paced at {self.fps:g} fps{bound}; resize {self.resize}, {self.decode} decoding, NMS {self.nms}"
        )
        lines = [
            head,
            (f"{'streams':>7} {'fps/stream':>10} {'p95 ms':>7} {'dropped':>7} {'CPU %':>6} {'steal %':>7} "
             f"{'others %':>8}  result"),
        ]
        for t in sorted(self.trials, key=lambda t: t.streams):
            p95 = f"{t.p95_ms:7.1f}" if t.p95_ms is not None else f"{'-':>7}"
            stolen = f"{t.steal_percent:7.0f}" if t.steal_percent is not None else f"{'-':>7}"
            others = f"{t.others_percent:8.0f}" if t.others_percent is not None else f"{'-':>8}"
            verdict = ("ok" if t.passed else f"FAIL: {t.why}") + (" (run again)" if t.attempt > 1 else "")
            lines.append(f"{t.streams:7d} {t.fps:10.2f} {p95} {t.dropped:7d} {t.cpu_percent:6.0f} {stolen} {others}  {verdict}")
        if self.interrupted:
            lines.append(f"capacity: at least {self.streams} stream(s) at {self.fps:g} fps (interrupted: the search "
                         "did not finish)")
        else:
            lines.append(f"capacity: {self.streams} stream(s) at {self.fps:g} fps")
        lines += [f"warning: {warn}" for warn in (self.steal_warning(), self.others_warning()) if warn]
        return "\n".join(lines)

    def steal_warning(self) -> str | None:
        """What to tell the user when a VM's host took enough CPU in the trials that failed above the answer to
        have lowered it; ``None`` otherwise (no failure, or little steal)."""
        failed = [t.steal_percent for t in self.trials
                  if not t.passed and t.streams > self.streams and t.steal_percent is not None]
        return steal.warning(max(failed, default=None), "this machine alone may take more streams; measure again "
                             "when the host is quiet")

    def others_warning(self) -> str | None:
        """Likewise for other processes on this machine (``others_percent``): they took CPU time the failed trials
        above the answer needed; ``None`` otherwise."""
        failed = [t.others_percent for t in self.trials
                  if not t.passed and t.streams > self.streams and t.others_percent is not None]
        worst = max(failed, default=None)
        if worst is None or worst < steal.OTHERS_WARN_PERCENT:
            return None
        return (f"other processes on this machine used {worst:.0f} % of its CPU time while ovq measured: this machine "
                "alone may take more streams; measure again with them stopped")


class CapacityInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`capacity`'s search; ``report`` holds the trials done, marked ``interrupted``."""

    def __init__(self, report: CapacityReport) -> None:
        super().__init__()
        self.report = report


def search(
    trial: Callable[[int], Trial], *, max_streams: int, confirm: bool = True, trials: list[Trial] | None = None,
) -> tuple[int, list[Trial]]:
    """The largest ``n`` in 1..``max_streams`` whose trial passes (doubling, then bisection), and the trials run.

    Assumes passing is monotonic in ``n`` (more streams never make it easier). With ``confirm``, a count fails
    only when its trial fails twice in a row. Each trial is appended to ``trials`` (when given) as it ends, so a
    search that is interrupted leaves the ones done there.
    """
    if max_streams < 1:
        raise ConfigError(f"max_streams {max_streams}: must be at least 1")
    trials = [] if trials is None else trials

    def run(n: int) -> bool:
        result = trial(n)
        trials.append(result)
        if not result.passed and confirm:
            logger.info("%d stream(s) failed (%s): running them again", n, result.why)
            result = replace(trial(n), attempt=2)
            trials.append(result)
        return result.passed

    good, bad = 0, None
    n = 1
    while n <= max_streams:
        if not run(n):
            bad = n
            break
        good = n
        if n == max_streams:
            break
        n = min(2 * n, max_streams)
    if bad is None:
        return good, trials
    while bad - good > 1:
        mid = (good + bad) // 2
        if run(mid):
            good = mid
        else:
            bad = mid
    return good, trials


class _Recorder:
    """A sink that keeps, per stream, when each result came, its frame index and latency."""

    def __init__(self) -> None:
        self.records: dict[str, list[tuple[float, int, float]]] = {}

    def write(self, result: Any) -> None:
        self.records.setdefault(result.stream, []).append((time.monotonic(), result.frame_index, result.latency_ms))

    def close(self) -> None:
        pass

    def window(self, start: float, end: float) -> dict[str, tuple[int, int, float | None]]:
        """Per stream: results in [start, end), frames dropped between them, p95 latency (ms)."""
        out = {}
        for name, rows in self.records.items():
            inside = [r for r in rows if start <= r[0] < end]
            before = [r for r in rows if r[0] < start]
            last = before[-1][1] if before else (inside[0][1] - 1 if inside else 0)
            dropped = 0
            for _, index, _ in inside:
                dropped += max(0, index - last - 1)
                last = index
            p95 = float(np.percentile([r[2] for r in inside], 95)) if inside else None
            out[name] = (len(inside), dropped, p95)
        return out


def run_trial(
    detector: Detector, source: str, streams: int, *, fps: float, seconds: float, warmup: float,
    max_p95_ms: float | None = None, resize: str = "auto", decode: str = "auto", nms: str = "auto",
) -> Trial:
    """Run ``streams`` copies of ``source`` paced at ``fps`` for ``warmup`` + ``seconds``; measure the window."""
    from ovq.streaming.pipeline import Pipeline

    recorder = _Recorder()
    frames = math.ceil(fps * (warmup + seconds)) + 2
    pipeline = Pipeline(
        detector, [source] * streams, sinks=[recorder], max_frames=frames, pace_fps=fps, stats_interval=0,
        resize_in_graph=resize_mode(resize), decode=decode, nms_in_graph=nms_mode(nms),
    )
    t0 = time.monotonic()
    cpu0 = steal.own_cpu_seconds()
    start, end = t0 + warmup, t0 + warmup + seconds
    marks: dict[str, float] = {}
    host: dict[str, steal.CpuTimes | None] = {}

    def sample_cpu() -> None:  # CPU time of the window only, not of opening files or draining at the end
        for name, at in (("start", start), ("end", end)):
            if stop.wait(max(0.0, at - time.monotonic())):
                return
            marks[name], host[name] = steal.own_cpu_seconds(), steal.sample()
        pipeline.stop()  # a trial that falls behind must not run on

    stop = threading.Event()
    sampler = threading.Thread(target=sample_cpu, name="ovq-capacity-cpu", daemon=True)
    sampler.start()
    try:
        pipeline.run()
    finally:
        stop.set()
        sampler.join()
    if "end" in marks:
        cpu = (marks["end"] - marks.get("start", cpu0)) / seconds
    else:  # the run ended before the window did (a short file): the whole run
        cpu = (steal.own_cpu_seconds() - cpu0) / max(time.monotonic() - t0, 1e-6)
    stats = recorder.window(start, end)
    counts = [stats.get(f"s{i}", (0, 0, None)) for i in range(streams)]
    slowest = min(c[0] for c in counts) / seconds
    dropped = sum(c[1] for c in counts)
    p95s = [c[2] for c in counts if c[2] is not None]
    p95 = max(p95s) if p95s else None
    why = []
    if dropped:
        why.append(f"{dropped} dropped")
    if slowest < fps * (1 - FPS_TOLERANCE) - 1.0 / seconds:
        why.append(f"{slowest:.1f} < {fps:g} fps")
    if max_p95_ms is not None and (p95 is None or p95 > max_p95_ms):
        why.append(f"p95 {p95:.0f} > {max_p95_ms:g} ms" if p95 is not None else "no results")
    trial = Trial(
        streams=streams, fps=slowest, p95_ms=p95, dropped=dropped, cpu_percent=100.0 * cpu / (os.cpu_count() or 1),
        passed=not why, why=", ".join(why), steal_percent=steal.percent(host.get("start"), host.get("end")),
        others_percent=steal.others_percent(host.get("start"), host.get("end"), cpu * seconds)
        if "end" in marks else None,
    )
    logger.info(
        "%d stream(s): %.2f fps/stream, p95 %s ms, %d dropped, CPU %.0f %%, steal %s %%, others %s %%: %s",
        streams, trial.fps, "-" if p95 is None else f"{p95:.1f}", dropped, trial.cpu_percent,
        "-" if trial.steal_percent is None else f"{trial.steal_percent:.0f}",
        "-" if trial.others_percent is None else f"{trial.others_percent:.0f}", "ok" if trial.passed else trial.why,
    )
    return trial


CLI_FLAGS = {"fps": "--fps", "seconds": "--seconds", "warmup": "--warmup", "max_p95_ms": "--max-p95-ms",
             "max_streams": "--max-streams"}


def check_numbers(*, fps: float, max_p95_ms: float | None, seconds: float, warmup: float, max_streams: int = 1,
                  names: dict[str, str] | None = None) -> None:
    """:class:`ConfigError` for a rate, bound or duration that is not a finite number in range, or a window too
    short to measure (``MIN_TRIAL_SECONDS``, ``MIN_TRIAL_FRAMES``). ``names`` shows each value by another name
    (``CLI_FLAGS``: the command's flags; 'ovq capacity --warmup -1' said "seconds 8.0 must be > 0 and warmup -1.0
    >= 0", naming neither flag and a value it was not given)."""
    def name(key: str) -> str:
        return (names or {}).get(key, key)

    given = {"fps": fps, "seconds": seconds, "warmup": warmup, "max_p95_ms": max_p95_ms}
    for key, value in given.items():
        if value is not None and not math.isfinite(value):  # inf overflowed math.ceil, NaN passed every check
            raise ConfigError(f"{name(key)} {value}: must be a finite number")
    if not fps > 0:
        raise ConfigError(f"{name('fps')} {fps:g}: must be > 0")
    if max_p95_ms is not None and not max_p95_ms > 0:
        raise ConfigError(f"{name('max_p95_ms')} {max_p95_ms:g}: must be > 0")
    if not seconds > 0:
        raise ConfigError(f"{name('seconds')} {seconds:g}: must be > 0")
    if warmup < 0:
        raise ConfigError(f"{name('warmup')} {warmup:g}: must be >= 0")
    if max_streams < 1:
        raise ConfigError(f"{name('max_streams')} {max_streams}: must be at least 1")
    if seconds < MIN_TRIAL_SECONDS or fps * seconds < MIN_TRIAL_FRAMES:
        raise ConfigError(
            f"{name('seconds')} {seconds:g}: a trial must measure at least {MIN_TRIAL_SECONDS:g} s and "
            f"{MIN_TRIAL_FRAMES} frames per stream (here {fps * seconds:.3g}): a window counts whole frames, so a "
            "shorter one cannot tell a stream that keeps up from one that falls behind")
    if not math.isfinite(fps * (warmup + seconds)):
        raise ConfigError(f"{name('fps')} {fps:g} x {warmup + seconds:g} s: more frames than any video holds")


def capacity(
    model: str | Path | Detector,
    source: str | Path,
    *,
    fps: float,
    max_p95_ms: float | None = None,
    device: str = "CPU",
    precision: str | None = None,
    seconds: float = 8.0,
    warmup: float = 2.0,
    max_streams: int = 64,
    resize: str = "auto",
    decode: str = "auto",
    nms: str = "auto",
) -> CapacityReport:
    """How many copies of ``source``, each paced at ``fps``, the machine runs through ``model`` in real time.

    ``model`` is a path or a built :class:`Detector` (compiled with the throughput hint when built here). Each
    trial takes ``warmup + seconds``; a search takes about ``3 log2(answer) + 2`` trials (a failed one runs twice). ``resize`` (auto, python,
    graph), ``nms`` (auto, python, graph) and ``decode`` (``ovq.streaming.sources.DECODE_MODES``) are the
    pipeline's, as in ``ovq run``. Ctrl-C raises :class:`CapacityInterrupted` (a ``KeyboardInterrupt``) holding
    the report of the trials done, marked ``interrupted``.
    """
    from ovq.runtime.cpu import cpu_model

    check_numbers(fps=fps, max_p95_ms=max_p95_ms, seconds=seconds, warmup=warmup, max_streams=max_streams)
    resize_mode(resize)
    nms_mode(nms)
    check_decode(decode, on_this_machine=True)
    spec = parse_source(source)
    if spec.kind != "video":
        raise SourceError(f"{spec.display}: capacity needs a video file (it plays copies of it as cameras)")
    probe = open_source(spec)
    try:
        count = probe.frame_count
    finally:
        probe.close()
    needed = math.ceil(fps * (warmup + seconds))
    if count is not None and count < needed:
        raise SourceError(
            f"{spec.display}: {count} frames, a trial needs {needed} ({warmup:g} + {seconds:g} s at {fps:g} fps); "
            "use a longer file or shorter --seconds"
        )
    detector = model if isinstance(model, Detector) else Detector(
        model, device=device, precision=precision, hint="throughput", graph_nms=nms_mode(nms) is True
    )
    report = CapacityReport(
        # the model as given: the file it was converted from (info.source) named an INT8 IR and its float model alike
        model=str(detector.info.source) if isinstance(model, Detector) else str(model), source=spec.display, fps=float(fps), max_p95_ms=max_p95_ms,
        device=detector.device, inference_precision=detector.inference_precision, cpu=cpu_model(),
        cores=os.cpu_count() or 1, seconds=seconds, resize=resize, decode=decode, nms=nms,
    )
    try:
        report.streams, _ = search(
            lambda n: run_trial(
                detector, str(source), n, fps=fps, seconds=seconds, warmup=warmup, max_p95_ms=max_p95_ms,
                resize=resize, decode=decode, nms=nms,
            ),
            max_streams=max_streams, trials=report.trials,
        )
    except KeyboardInterrupt as exc:  # the trials done are kept (the one running is not: its window never ended)
        report.interrupted = True
        report.streams = max((t.streams for t in report.trials if t.passed), default=0)
        raise CapacityInterrupted(report) from exc
    return report
