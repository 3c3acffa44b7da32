"""``ovq bench``: throughput and latency of compiled models, the way ``benchmark_app`` measures them.

One compilation per (model, device, precision, performance hint); a real preprocessed u8 image tensor is
set once on every infer request; after a warm-up, an ``AsyncInferQueue`` is kept full for the given time.
Throughput is completed inferences over the wall time until the last one finished; latency is each
request's own start-to-finish time as OpenVINO measures it. The inference precision the device actually
used is read back from the compiled model.

A served model (a v2 URL) is timed the same way from here, end to end: its numbers include the network, the
protocol's encoding and the server's queue, which its other clients share. Its device, hint and precision are
the ones its server reports (``ovq serve`` does; OpenVINO Model Server does not: ``None``), never bench's own.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from ovq.core.errors import ConfigError
from ovq.core.geometry import letterbox, stretch
from ovq.core.metadata import ModelInfo
from ovq.core.urls import is_serving_url
from ovq.data.images import read_image
from ovq.model.detector import compile_config, load
from ovq.model.paths import repository_version
from ovq.runtime import steal
from ovq.runtime.compilation import compile_model, execution_precision, new_core
from ovq.runtime.inference import InferQueue
from ovq.serving.remote import DEFAULT_JOBS, open_detector

logger = logging.getLogger(__name__)

HINTS = ("throughput", "latency")
WARMUP_ROUNDS = 2  # every infer request runs this many times before timing starts


@dataclass
class BenchResult:
    """One benchmark run. ``precision_requested`` is what was asked (``model`` = the model's stored
    setting, ``default`` = the device's default); ``precision_used`` what the device reports it ran.
    ``served``: a model on a server, timed over the network; its ``device``, ``hint`` and ``precision_used`` are
    what the server reports, ``None`` where it does not say, and ``precision_requested`` is ``server``."""

    model: str
    device: str | None
    hint: str | None
    precision_requested: str
    precision_used: str | None
    throughput_fps: float
    latency_median_ms: float
    latency_p95_ms: float
    requests: int
    iterations: int
    seconds: float
    latency_mean_ms: float = 0.0
    latency_min_ms: float = 0.0
    latency_max_ms: float = 0.0
    input_shape: tuple[int, ...] = ()
    slices_fps: tuple[float, ...] = ()  # throughput of each timed slice (several when interleaved)
    steal_percent: float | None = None  # CPU time the hypervisor gave other guests in this one's slices (None: unknown)
    others_percent: float | None = None  # CPU time other processes on this machine took in its slices (None: unknown,
    # or a served model, whose server is one of them)
    served: bool = False


def model_name(model: str | Path | ov.Model, info: ModelInfo | None = None) -> str:
    """A short name: NAME/VERSION for a serving repository's version folder, the folder of a ``model.xml``, else
    the file stem."""
    if isinstance(model, ov.Model):
        return (info.source if info and info.source else model.get_friendly_name()) or "model"
    path = Path(model)
    if (version := repository_version(path)) is not None:  # was '1': which model, and which of its versions
        return "/".join(version)
    if path.is_dir():
        return path.name
    if path.name == "model.xml":
        return path.parent.name
    return path.stem


def bench_input(info: ModelInfo, image: str | Path | np.ndarray | None = None) -> np.ndarray:
    """The model's input for ``image`` (default: a fixed synthetic scene), u8 NHWC batch 1."""
    if image is None:
        rng = np.random.default_rng(0)
        bgr = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    elif isinstance(image, np.ndarray):
        bgr = image
    else:
        bgr = read_image(image)
    if info.resize == "letterbox":
        resized, _ = letterbox(bgr, info.input_size, pad_value=info.pad_value, center=info.letterbox_center)
    else:
        resized, _ = stretch(bgr, info.input_size)
    return np.ascontiguousarray(resized[None])


@dataclass(frozen=True)
class BenchSpec:
    """One configuration to benchmark: a model on a device at a precision with a performance hint."""

    model: str | Path | ov.Model
    device: str = "CPU"
    precision: str | None = None
    hint: str = "throughput"
    requests: int = 0
    config: dict[str, Any] | None = None


class _Prepared:
    """A compiled configuration with its infer queue full of the input tensor, ready to be timed."""

    def __init__(self, spec: BenchSpec, image: str | Path | np.ndarray | None, core: ov.Core) -> None:
        if spec.hint not in HINTS:
            raise ConfigError(f"unknown performance hint '{spec.hint}'; expected one of {', '.join(HINTS)}")
        if spec.requests < 0:
            raise ConfigError(f"requests {spec.requests}: expected 0 (the device's optimum) or more")
        self.errors: list[BaseException] = []
        if is_serving_url(spec.model):
            self._init_served(spec, image)
            return
        ov_model, info = load(spec.model, core=core)
        asked = None if spec.precision in (None, "model") else spec.precision
        cfg = compile_config(info, precision=asked, hint=spec.hint, config=spec.config)
        if asked is None:
            stored = info.compile_config.get("INFERENCE_PRECISION_HINT")
            self.requested = f"model ({stored})" if stored else "default"
        else:
            self.requested = asked
        self.spec, self.device, self.hint, self.served = spec, spec.device, spec.hint, False
        self.name = model_name(spec.model, info)
        compiled = compile_model(ov_model, spec.device, config=cfg, core=core)
        self.used = execution_precision(compiled)
        requests = spec.requests
        if requests <= 0:
            requests = 1 if spec.hint == "latency" else int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.requests = requests
        self.tensor = bench_input(info, image)
        self.latencies: list[float] = []
        self.slices: list[tuple[int, float]] = []  # (inferences, seconds) of every timed slice
        self.stolen: list[tuple[steal.CpuTimes | None, steal.CpuTimes | None]] = []  # every slice's start and end
        self.own: list[float] = []  # this process's CPU seconds in every slice
        self.queue = InferQueue(compiled, requests, self._done)
        for i in range(len(self.queue)):
            self.queue.request(i).set_input_tensor(0, ov.Tensor(self.tensor))

    def close(self) -> None:
        """Free the requests (and OpenVINO's hold on the callback, which refers back to this object)."""
        self.queue.close()

    def _init_served(self, spec: BenchSpec, image: str | Path | np.ndarray | None) -> None:
        """A model on a server: the same timing over the v2 protocol (a failed request fails the benchmark)."""
        detector = open_detector(str(spec.model), jobs=spec.requests or DEFAULT_JOBS, retry=False)
        self.spec, self.name, self.requested, self.served = spec, str(spec.model), "server", True
        server = detector.server  # its settings, not bench's defaults (which it never sees)
        self.device, self.hint, self.used = server.device, server.hint, server.precision
        self.requests = detector.jobs
        self.tensor = bench_input(detector.info, image)
        self.queue = detector.async_queue(self.requests, self._done)
        self.queue.default_input = self.tensor
        self.latencies, self.slices, self.stolen, self.own = [], [], [], []

    def _done(self, request: ov.InferRequest, _: Any) -> None:
        self.latencies.append(request.latency)
        if getattr(request, "error", None) is not None:  # a served model's request that failed
            self.errors.append(request.error)

    def time_slice(self, seconds: float, warmup_rounds: int) -> None:
        """Warm up, then keep the queue full for ``seconds`` (and one inference per request at least); the slice's
        latencies are kept."""
        for _ in range(warmup_rounds * self.requests):
            self.queue.start_async()
        self.queue.wait_all()
        del self.latencies[len(self.latencies) - warmup_rounds * self.requests:]
        iterations = 0
        before, cpu = steal.sample(), steal.own_cpu_seconds()
        start = time.perf_counter()
        end = start + seconds
        # at least one inference per request: a slice shorter than that (--time 1e-9) timed none, and the median of
        # no latencies was an IndexError
        while iterations < self.requests or time.perf_counter() < end:
            self.queue.start_async()
            iterations += 1
        self.queue.wait_all()
        if self.errors:
            raise self.errors[0]
        self.slices.append((iterations, time.perf_counter() - start))
        self.stolen.append((before, steal.sample()))
        self.own.append(steal.own_cpu_seconds() - cpu)

    def result(self) -> BenchResult:
        iterations = sum(n for n, _ in self.slices)
        elapsed = sum(t for _, t in self.slices)
        lat = np.asarray(self.latencies, dtype=np.float64)
        if len(lat) != iterations:  # pragma: no cover - a lost callback would make the numbers wrong
            raise RuntimeError(f"benchmark: {iterations} inferences started but {len(lat)} reported back")
        per_slice = [n / t for n, t in self.slices]
        return BenchResult(
            model=self.name,
            device=self.device,
            hint=self.hint,
            precision_requested=self.requested,
            precision_used=self.used,
            # one slice: completed inferences over wall time; several: the median slice, so a slow spell
            # of the machine (another tenant, clock changes) that hits one slice does not move the result
            throughput_fps=float(np.median(per_slice)) if len(per_slice) > 1 else iterations / elapsed,
            latency_median_ms=float(np.median(lat)),
            latency_p95_ms=float(np.percentile(lat, 95)),
            requests=self.requests,
            iterations=iterations,
            seconds=elapsed,
            latency_mean_ms=float(lat.mean()),
            latency_min_ms=float(lat.min()),
            latency_max_ms=float(lat.max()),
            input_shape=tuple(int(d) for d in self.tensor.shape),
            slices_fps=tuple(round(f, 2) for f in per_slice),
            steal_percent=steal.percent_over(self.stolen),  # its own slices, not the others' turns
            others_percent=None if self.served else steal.others_percent_over(
                (a, b, own) for (a, b), own in zip(self.stolen, self.own, strict=True)),
            served=self.served,
        )


def benchmark(
    model: str | Path | ov.Model,
    *,
    device: str = "CPU",
    precision: str | None = None,
    hint: str = "throughput",
    seconds: float = 10.0,
    requests: int = 0,
    config: dict[str, Any] | None = None,
    image: str | Path | np.ndarray | None = None,
    core: ov.Core | None = None,
) -> BenchResult:
    """Benchmark one model on one device with one precision and performance hint.

    ``precision``: ``None`` (or ``model``) uses the setting stored in the model (``ovq quantize`` stores the
    precision it validated at), else the device default; ``default`` forces the device's own (bf16 on AMX
    CPUs); ``f32``/``bf16``/``f16`` force one.
    ``requests``: infer requests in flight (0: the device's optimal number for THROUGHPUT, 1 for LATENCY).
    ``config`` is added to the compile config last.
    """
    spec = BenchSpec(model, device=device, precision=precision, hint=hint, requests=requests, config=config)
    return benchmark_interleaved([spec], seconds=seconds, rounds=1, image=image, core=core)[0]


def bench_rounds(seconds: float) -> int:
    """Turns for an interleaved comparison of ``seconds`` per configuration: slices of about 2 s, at least 3."""
    return max(3, round(seconds / 2))


def benchmark_interleaved(
    specs: Sequence[BenchSpec],
    *,
    seconds: float = 10.0,
    rounds: int = 3,
    image: str | Path | np.ndarray | None = None,
    core: ov.Core | None = None,
) -> list[BenchResult]:
    """Benchmark several configurations side by side: each is compiled once, then they take turns, ``rounds``
    slices of ``seconds / rounds`` each, and each one's throughput is its median slice.

    Run one after the other, two configurations can differ by a few percent only because the machine
    changed between them (clock, temperature, other tenants); taking turns puts every configuration through
    the same spells, so the ratios between them hold. With ``rounds=1`` this is one run per configuration.
    """
    if not 0 < seconds < math.inf:  # NaN measured nothing (np.quantile of no slices), inf never ended
        raise ConfigError(f"benchmark time must be a positive number of seconds, got {seconds}")
    if rounds < 1:
        raise ConfigError(f"benchmark rounds must be at least 1, got {rounds}")
    if isinstance(image, (str, Path)):
        image = read_image(image)  # a bad image is said before any model is compiled or a server is asked
    core = core or new_core()
    prepared: list[_Prepared] = []
    try:
        for spec in specs:
            prepared.append(_Prepared(spec, image, core))
        for p in prepared:
            logger.info(
                "benchmarking %s %s: %s hint, %d requests, precision %s (asked %s), %.0f s%s",
                p.name, f"served on {p.device or 'a device it does not say'}" if p.served else f"on {p.device}",
                p.hint or "unknown", p.requests, p.used or "unknown", p.requested, seconds,
                f" in {rounds} turns" if rounds > 1 else "",
            )
        for turn in range(rounds):
            for p in prepared:
                # a full warm-up before the first slice, one inference per request before the others
                p.time_slice(seconds / rounds, WARMUP_ROUNDS if turn == 0 else 1)
        return [p.result() for p in prepared]
    finally:
        for p in prepared:
            p.close()


def format_table(results: Sequence[BenchResult]) -> str:
    """Side-by-side table; ``vs first`` is the throughput ratio to the first result of the same device and hint
    (for latency, the ratio of median latencies, first / this, so > 1 means faster too). A served model is
    compared only with the first served one of the same device and hint: its numbers hold the network and the
    server's queue, so a ratio to a local model would not be the models' ratio. Notes below the table say so."""
    header = ("model", "device", "hint", "precision", "req", "FPS", "median ms", "p95 ms", "vs first")
    first: dict[tuple[bool, str | None, str | None], BenchResult] = {}
    rows = []
    for r in results:
        base = first.setdefault((r.served, r.device, r.hint), r)
        if r.hint == "latency":
            ratio = base.latency_median_ms / r.latency_median_ms if r.latency_median_ms > 0 else float("nan")
        else:
            ratio = r.throughput_fps / base.throughput_fps if base.throughput_fps > 0 else float("nan")
        asked, used = r.precision_requested, r.precision_used or "?"
        precision = used if asked in ("default", "server", used) else f"{used} (asked {asked})"
        device = f"{r.device or '?'} (served)" if r.served else str(r.device)
        rows.append(
            (
                r.model, device, r.hint or "?", precision, str(r.requests), f"{r.throughput_fps:.1f}",
                f"{r.latency_median_ms:.2f}", f"{r.latency_p95_ms:.2f}", f"{ratio:.2f}x",
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    right = {4, 5, 6, 7, 8}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out.extend(line(row) for row in rows)
    served = [r for r in results if r.served]
    if served:
        out.append("(served): timed from here over the network, on the device and settings its server reports; "
                   "req is this client's requests in flight")
        if len(served) < len(results):
            out.append("vs first: served models are compared with the first served one, local ones with the first "
                       "local one (a served model's FPS includes the network and the server's queue)")
        if any(r.device is None or r.hint is None or r.precision_used is None for r in served):
            out.append("?: the server does not say (ovq serve does; OpenVINO Model Server does not)")
    return "\n".join(out)
