"""``ovq run`` on a video vs ``benchmark_app`` on the same IR, against the decode ceiling; capacity tables.

For each model, interleaved ``rounds`` times (the order rotates, so a machine drifting between runs does not
skew the ratios):

- ``benchmark_app -hint throughput`` on the very IR the pipeline compiles (saved next to the results), at the
  detector's inference precision: the device's ceiling for inference alone;
- ``ovq.Pipeline`` on the shared person video, no sinks: decode, resize, async inference, decoding and NMS,
  in order, every frame - once resizing in Python, once in the graph (:meth:`Detector.for_source`); both with
  NMS where the pipeline puts it by default (in the graph on the CPU for the families with NMS), and for those
  two once more resizing and decoding in Python (``python_nms_fps``: what ``--nms python`` costs);
- the leanest loop Python can run around the same compiled model (``lean_fps``): one thread reads frames with
  OpenCV (the pipeline's decoder threads), the main thread resizes and starts requests in turn with shared inputs,
  waiting for a request's previous frame first; no callback (:func:`lean_loop_fps`). No ordering, no results, no metering: what any Python pipeline pays. ``ovq run``
  against it is the pipeline's own overhead; the lean loop against benchmark_app is what decoding and Python
  cost when they share the cores with inference.

For the default ``ovq run`` and the lean loop, the CPU each thread spent a frame is recorded too
(``run_cpu_ms`` / ``lean_cpu_ms``: median ms a frame by thread, Python threads by name, OpenVINO's and FFmpeg's
own threads together as "native"): where a pipeline's overhead goes, not only how large it is.

Both compete for the same cores: video decoding takes CPU time inference would otherwise get. The physical
ceiling is inference plus software decoding: with ``d`` CPU-seconds of decoding a frame (measured single-threaded)
on ``c`` cores, ``ceiling = 1 / (1 / B + d / c)`` for benchmark_app's ``B`` FPS. Each ratio is reported against
benchmark_app and against that ceiling. Then :func:`ovq.capacity` at 10 and 25 fps.

The 1-minute load average before each run is recorded, the CPU time a VM's host gave other guests during it
(``steal``, % of all CPU time, as ``top``'s ``st``) and the CPU time other processes on the machine took (``others``,
the machine's busy time less this process's and benchmark_app's): on a shared machine, say so with the numbers.

    python benchmarks/bench_pipeline.py [--models yolox_nano fastestdet person-0013] [--precision f32]
        [--time 10] [--rounds 3] [--capacity-fps 10 25] [--capacity-seconds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Self

ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "assets"
MODELS = {
    "yolox_nano": "models/yolox_nano/yolox_nano.onnx",
    "fastestdet": "models/fastestdet/FastestDet.onnx",
    "person-0013": "models/person-detection-retail-0013-fp32/person-detection-retail-0013.xml",
}
VIDEO = "videos/one-by-one-person-detection.mp4"


@dataclass
class PipelineBench:
    model: str
    precision: str
    cpu: str
    decode_ms: float  # CPU ms to decode one frame, one thread
    app_fps: list[float] = field(default_factory=list)
    python_fps: list[float] = field(default_factory=list)
    graph_fps: list[float] = field(default_factory=list)
    python_nms_fps: list[float] = field(default_factory=list)  # decoding and NMS in Python too (--nms python)
    lean_fps: list[float] = field(default_factory=list)  # the leanest Python loop (lean_loop_fps)
    nms: str = "python"  # where the default pipeline decoded (graph or python)
    load: list[float] = field(default_factory=list)
    steal: dict[str, list[float | None]] = field(default_factory=dict)  # run kind -> % CPU the VM's host took, per round
    others: dict[str, list[float | None]] = field(default_factory=dict)  # run kind -> % CPU other processes took
    run_cpu_ms: dict[str, list[float]] = field(default_factory=dict)  # default ovq run: thread -> ms a frame, per round
    lean_cpu_ms: dict[str, list[float]] = field(default_factory=dict)  # the lean loop, likewise
    # CPU us of one frame's preprocess + postprocess (median): back to back, and on a thread that slept 10 ms first
    python_us: dict[str, float] = field(default_factory=dict)  # {"back_to_back": .., "after_sleep": ..}
    capacity: dict[str, int] = field(default_factory=dict)  # fps -> streams
    capacity_tables: list[str] = field(default_factory=list)

    def ceiling(self) -> float:
        app = statistics.median(self.app_fps)
        return 1.0 / (1.0 / app + self.decode_ms / 1000.0 / (os.cpu_count() or 1))

    def ratios(self) -> dict[str, float]:
        app = statistics.median(self.app_fps)
        out = {"ceiling/app": self.ceiling() / app}
        for name, fps in (("python", self.python_fps), ("graph", self.graph_fps), ("python_nms", self.python_nms_fps),
                          ("lean", self.lean_fps)):
            if not fps:
                continue
            out[f"{name}/app"] = statistics.median(fps) / app
            out[f"{name}/ceiling"] = statistics.median(fps) / self.ceiling()
        if self.lean_fps and self.python_fps:  # paired: the two ran in the same round every time
            out["python/lean"] = statistics.median(p / q for p, q in zip(self.python_fps, self.lean_fps, strict=True))
        return out

    def spread(self) -> str:
        def lo_hi(values: list[float]) -> str:
            return f"{min(values):.1f}-{max(values):.1f}"

        nms = f", python NMS {lo_hi(self.python_nms_fps)}" if self.python_nms_fps else ""
        lean = f", lean loop {lo_hi(self.lean_fps)}" if self.lean_fps else ""
        return (f"{len(self.app_fps)} rounds, fps min-max: benchmark_app {lo_hi(self.app_fps)}, python "
                f"{lo_hi(self.python_fps)}, graph {lo_hi(self.graph_fps)}{nms}{lean}")

    def line(self) -> str:
        r = self.ratios()
        nms = (f" | NMS in Python too {statistics.median(self.python_nms_fps):6.1f} ({r['python_nms/app']:.2f}x app)"
               if self.python_nms_fps else "")
        return (
            f"{self.model:12s} {self.precision:4s} benchmark_app {statistics.median(self.app_fps):6.1f} fps | ovq run "
            f"python-resize {statistics.median(self.python_fps):6.1f} ({r['python/app']:.2f}x app, "
            f"{r['python/ceiling']:.2f}x ceiling) graph-resize {statistics.median(self.graph_fps):6.1f} "
            f"({r['graph/app']:.2f}x app, {r['graph/ceiling']:.2f}x ceiling), NMS in {self.nms}{nms}{self._lean()} | "
            f"decode {self.decode_ms:.2f} ms/frame "
            f"-> ceiling {self.ceiling():.1f} fps ({r['ceiling/app']:.2f}x app) | load {min(self.load):.1f}-{max(self.load):.1f}"
            f"{self._steal()}"
        )

    def _steal(self) -> str:
        known = {what: [v for v in values if v is not None] for what, values in self.steal.items()}
        parts = [f"{what} {min(v):.0f}-{max(v):.0f}" for what, v in known.items() if v]
        busy = {what: [v for v in values if v is not None] for what, values in self.others.items()}
        others = [f"{what} {min(v):.0f}-{max(v):.0f}" for what, v in busy.items() if v]
        return (f" | steal % {', '.join(parts)}" if parts else "") + (
            f" | other processes % {', '.join(others)}" if others else "")

    def cpu_line(self) -> str:
        def one(table: dict[str, list[float]]) -> str:
            medians = {name: statistics.median(v) for name, v in table.items()}
            parts = ", ".join(f"{name} {ms:.2f}" for name, ms in sorted(medians.items(), key=lambda kv: -kv[1]))
            return f"{sum(medians.values()):.2f} ({parts})"

        run = f"CPU ms a frame: ovq run {one(self.run_cpu_ms)}" if self.run_cpu_ms else ""
        lean = f" | lean loop {one(self.lean_cpu_ms)}" if self.lean_cpu_ms else ""
        us = self.python_us
        woken = (f" | a frame's preprocess + postprocess {us['back_to_back']:.0f} us of CPU back to back, "
                 f"{us['after_sleep']:.0f} us on a thread woken after 10 ms" if us else "")
        return run + lean + woken

    def _lean(self) -> str:
        if not self.lean_fps:
            return ""
        r = self.ratios()
        return (f" | lean loop {statistics.median(self.lean_fps):6.1f} ({r['lean/app']:.2f}x app, "
                f"{r['lean/ceiling']:.2f}x ceiling; ovq run {r['python/lean']:.2f}x of it)")


class ThreadCpu:
    """CPU seconds this process's threads spend while the ``with`` block runs, by thread.

    Read from ``/proc/self/task`` every ``interval`` s and once at the end; a thread that ends between two samples
    counts up to its last sample (a reader thread's final ``interval`` at most). Python threads are named by their
    ``threading`` name without a trailing stream suffix (``ovq-read-s0`` -> ``ovq-read``), the others (OpenVINO's
    and FFmpeg's workers) are "native"."""

    def __init__(self, interval: float = 0.05) -> None:
        import threading

        self.interval = interval
        self._names: dict[int, str] = {}
        self._start: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_done, name="bench-thread-cpu", daemon=True)

    @staticmethod
    def _cpu() -> dict[int, float]:
        ticks = os.sysconf("SC_CLK_TCK")
        out = {}
        for tid in os.listdir("/proc/self/task"):
            try:
                stat = Path(f"/proc/self/task/{tid}/stat").read_text()
            except OSError:  # ended meanwhile
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        return out

    def _sample(self) -> None:
        import threading

        for t in threading.enumerate():
            if t.native_id is not None:
                self._names[t.native_id] = re.sub(r"-s\d+$", "", t.name)
        self._last.update(self._cpu())

    def _sample_until_done(self) -> None:
        while not self._done.wait(self.interval):
            self._sample()

    def __enter__(self) -> Self:
        self._start = self._cpu()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self._sample()

    def ms_per_frame(self, frames: int) -> dict[str, float]:
        """CPU ms a frame by thread name (the sampler's own thread left out)."""
        out: dict[str, float] = {}
        for tid, seconds in self._last.items():
            name = self._names.get(tid, "native")
            if name != "bench-thread-cpu":
                out[name] = out.get(name, 0.0) + (seconds - self._start.get(tid, 0.0)) * 1000.0 / max(frames, 1)
        return {name: ms for name, ms in out.items() if ms > 0}


def add_cpu(table: dict[str, list[float]], sample: dict[str, float], round_index: int) -> None:
    """Append one round's ms a frame by thread to ``table`` (0 for a thread absent from a round)."""
    for name in set(table) | set(sample):
        table.setdefault(name, [0.0] * round_index).append(sample.get(name, 0.0))


def lean_loop_fps(detector: object, video: Path, nireq: int, threads: int) -> float:
    """Frames a second of the leanest Python loop around ``detector``'s compiled model on every frame of ``video``.

    ``nireq`` requests taken in turn: the main thread waits for a request's previous frame (the wait releases the
    GIL), hands it the next input as a shared tensor and starts it; no callback, so no Python in OpenVINO's
    threads. Each input array is held until its request is reused: an ``AsyncInferQueue`` given a fresh array
    with ``share_inputs=True`` and no reference kept read freed memory and crashed this benchmark (a segfault in
    ``start_async``, YOLOX-Nano, 2-core EPYC Zen 5)."""
    import queue
    import threading

    import cv2
    import openvino as ov

    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    frames: queue.Queue = queue.Queue(8)  # as far ahead as the pipeline's file reader runs

    def read() -> None:
        while True:
            ok, image = cap.read()
            frames.put(image if ok else None)
            if not ok:
                return

    requests = [detector.compiled.create_infer_request() for _ in range(nireq)]
    held: list[object] = [None] * nireq  # the input each request reads, alive until the request is reused
    reader = threading.Thread(target=read, name="lean-read", daemon=True)
    done = 0
    t0 = time.perf_counter()
    reader.start()
    while (image := frames.get()) is not None:
        i = done % nireq
        if held[i] is not None:
            requests[i].wait()
        tensor, _ = detector.preprocess(image)
        requests[i].set_input_tensor(0, ov.Tensor(tensor, shared_memory=True))
        held[i] = tensor
        requests[i].start_async()
        done += 1
    for request, tensor in zip(requests, held, strict=True):
        if tensor is not None:
            request.wait()
    seconds = time.perf_counter() - t0
    cap.release()
    return done / seconds


def python_cost_us(detector: object, video: Path, calls: int = 100) -> dict[str, float]:
    """CPU microseconds (median) one frame's preprocess + postprocess takes on ``detector``: back to back, and
    right after the thread slept 10 ms, as a pipeline thread does each frame it wakes for. Where the two differ a
    lot, the core's caches went cold meanwhile (another tenant of a VM's host, say): what every thread that wakes
    pays, for each frame, beside its own work."""
    import cv2

    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    ok, image = cap.read()
    cap.release()
    if not ok:
        raise RuntimeError(f"{video}: no frame")
    request = detector.compiled.create_infer_request()
    request.infer({0: detector.preprocess(image)[0]})

    def one() -> int:
        start = time.thread_time_ns()
        detector.postprocess(detector.output_views(request), detector.preprocess(image)[1])
        return time.thread_time_ns() - start

    back_to_back = [one() for _ in range(calls)]
    after_sleep = []
    for _ in range(calls):
        time.sleep(0.01)
        after_sleep.append(one())
    return {"back_to_back": statistics.median(back_to_back) / 1e3, "after_sleep": statistics.median(after_sleep) / 1e3}


def decode_cost_ms(video: Path, frames: int = 400) -> float:
    """CPU milliseconds FFmpeg (through OpenCV, one thread) spends decoding one frame of ``video``."""
    import cv2

    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    cap.read()
    t0, n = time.thread_time(), 0
    while n < frames and cap.read()[0]:
        n += 1
    spent = time.thread_time() - t0
    cap.release()
    return spent / max(n, 1) * 1000.0


def video_frames(video: Path) -> int:
    """The frames of ``video``, counted by decoding it (what the lean loop infers)."""
    import cv2

    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def record_shares(row: PipelineBench, kind: str, host: object, own: float) -> None:
    """The VM host's (steal) and other processes' share of the CPU since ``host`` (a sample) and ``own`` (seconds)."""
    from ovq.runtime import steal

    end = steal.sample()
    row.steal.setdefault(kind, []).append(steal.percent(host, end))
    row.others.setdefault(kind, []).append(steal.others_percent(host, end, steal.own_cpu_seconds(children=True) - own))


def benchmark_app(xml: Path, precision: str, seconds: float) -> float:
    app = Path(sys.executable).with_name("benchmark_app")
    cmd = [str(app), "-m", str(xml), "-d", "CPU", "-hint", "throughput", "-t", str(int(seconds)),
           "-infer_precision", precision]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Throughput:\s+([\d.]+) FPS", out)
    if match is None:
        raise RuntimeError(f"benchmark_app printed no throughput:\n{out[-2000:]}")
    return float(match.group(1))


def main(
    models: list[str] | None = None, *, precision: str | None = None, seconds: float = 10.0, rounds: int = 3,
    capacity_fps: tuple[float, ...] = (10.0, 25.0), capacity_seconds: float = 5.0, video: Path | None = None,
) -> list[PipelineBench]:
    """Run the comparison and the capacity searches; one :class:`PipelineBench` per model."""
    import openvino as ov

    from ovq.model.detector import Detector
    from ovq.runtime import steal
    from ovq.runtime.cpu import cpu_model
    from ovq.streaming.capacity import capacity
    from ovq.streaming.pipeline import Pipeline
    from ovq.streaming.sources import decode_threads
    from ovq.streaming.variants import with_nms

    if not ASSETS.exists():
        raise SystemExit(f"shared assets not found at {ASSETS}")
    video = video or ASSETS / VIDEO
    decode_ms = decode_cost_ms(video)
    frames = video_frames(video)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models or list(MODELS):
            detector = Detector(ASSETS / MODELS[name], precision=precision, hint="throughput")
            xml = Path(tmp) / f"{name}.xml"
            ov.save_model(detector.model, str(xml), compress_to_fp16=False)
            row = PipelineBench(model=name, precision=detector.inference_precision, cpu=cpu_model(), decode_ms=decode_ms)
            runs = ("app", "python", "lean", "graph") + (("python-nms",) if detector.why_not_nms_in_graph() is None else ())
            lean = with_nms(detector, None, None)  # the model the default pipeline compiles
            row.python_us = python_cost_us(lean, video)
            for r in range(rounds):
                for what in runs[r % len(runs):] + runs[: r % len(runs)]:
                    row.load.append(os.getloadavg()[0])
                    host, own = steal.sample(), steal.own_cpu_seconds(children=True)
                    if what == "app":
                        row.app_fps.append(benchmark_app(xml, detector.inference_precision, seconds))
                        record_shares(row, what, host, own)
                        continue
                    if what == "lean":
                        nireq = 2 * int(lean.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) + 1
                        with ThreadCpu() as cpu:
                            row.lean_fps.append(lean_loop_fps(lean, video, nireq, decode_threads(1)))
                        add_cpu(row.lean_cpu_ms, cpu.ms_per_frame(frames), r)
                        record_shares(row, what, host, own)
                        continue
                    pipeline = Pipeline(detector, [str(video)], stats_interval=0, resize_in_graph=what == "graph",
                                        nms_in_graph=False if what == "python-nms" else None)
                    with ThreadCpu() as cpu:
                        summary = pipeline.run()
                    record_shares(row, what, host, own)
                    if what == "python":
                        add_cpu(row.run_cpu_ms, cpu.ms_per_frame(summary.streams["s0"].frames), r)
                    assert summary.extra["resize"].startswith(what.split("-")[0]), summary.extra
                    fps = summary.streams["s0"].fps
                    if what == "python-nms":
                        row.python_nms_fps.append(fps)
                    else:
                        row.nms = summary.extra["nms"]
                        (row.python_fps if what == "python" else row.graph_fps).append(fps)
            print(row.line(), flush=True)
            print(f"{'':12s} {row.spread()}", flush=True)
            print(f"{'':12s} {row.cpu_line()}", flush=True)
            for fps in capacity_fps:
                report = capacity(detector, video, fps=fps, seconds=capacity_seconds, warmup=1.0)
                row.capacity[f"{fps:g}"] = report.streams
                row.capacity_tables.append(report.table())
                print(report.table(), flush=True)
            results.append(row)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=None)
    parser.add_argument("--precision", choices=("f32", "bf16"), default=None)
    parser.add_argument("--time", type=float, default=10.0, help="seconds per benchmark_app run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--capacity-fps", type=float, nargs="*", default=[10.0, 25.0])
    parser.add_argument("--capacity-seconds", type=float, default=5.0)
    parser.add_argument("--json", help="write the results as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = main(args.models, precision=args.precision, seconds=args.time, rounds=args.rounds,
                capacity_fps=tuple(args.capacity_fps), capacity_seconds=args.capacity_seconds)
    if args.json:
        Path(args.json).write_text(json.dumps([{**asdict(r), "ratios": r.ratios()} for r in rows], indent=2) + "\n")
    sys.exit(0)
