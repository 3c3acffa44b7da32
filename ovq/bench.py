"""``ovq bench``: throughput and latency of compiled models, the way ``benchmark_app`` measures them.

One compilation per (model, device, precision, performance hint); a real preprocessed u8 image tensor is
set once on every infer request; after a warm-up, an ``AsyncInferQueue`` is kept full for the given time.
Throughput is completed inferences over the wall time until the last one finished; latency is each
request's own start-to-finish time as OpenVINO measures it. The inference precision the device actually
used is read back from the compiled model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from ovq.geometry import letterbox, stretch
from ovq.images import read_image
from ovq.metadata import ModelInfo
from ovq.model import compile_config, load
from ovq.runtime import compile_model, execution_precision, new_core

logger = logging.getLogger(__name__)

HINTS = ("throughput", "latency")
WARMUP_ROUNDS = 2  # every infer request runs this many times before timing starts


@dataclass
class BenchResult:
    """One benchmark run. ``precision_requested`` is what was asked (``model`` = the model's stored
    setting, ``default`` = the device's default); ``precision_used`` what the device reports it ran."""

    model: str
    device: str
    hint: str
    precision_requested: str
    precision_used: str
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


def model_name(model: str | Path | ov.Model, info: ModelInfo | None = None) -> str:
    """A short name: the folder of a ``model.xml``, else the file stem."""
    if isinstance(model, ov.Model):
        return (info.source if info and info.source else model.get_friendly_name()) or "model"
    path = Path(model)
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
    if hint not in HINTS:
        from ovq.errors import ConfigError

        raise ConfigError(f"unknown performance hint '{hint}'; expected one of {', '.join(HINTS)}")
    if seconds <= 0:
        from ovq.errors import ConfigError

        raise ConfigError(f"benchmark time must be positive, got {seconds}")
    core = core or new_core()
    ov_model, info = load(model, core=core)
    asked = None if precision in (None, "model") else precision
    cfg = compile_config(info, precision=asked, hint=hint, config=config)
    if asked is None:
        stored = info.compile_config.get("INFERENCE_PRECISION_HINT")
        requested = f"model ({stored})" if stored else "default"
    else:
        requested = asked
    name = model_name(model, info)
    compiled = compile_model(ov_model, device, config=cfg, core=core)
    used = execution_precision(compiled)
    if requests <= 0:
        if hint == "latency":
            requests = 1
        else:
            requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    tensor = bench_input(info, image)
    queue = ov.AsyncInferQueue(compiled, requests)
    for i in range(len(queue)):
        queue[i].set_input_tensor(0, ov.Tensor(tensor))
    latencies: list[float] = []

    def on_done(request: ov.InferRequest, _: Any) -> None:
        latencies.append(request.latency)

    queue.set_callback(on_done)
    logger.info(
        "benchmarking %s on %s: %s hint, %d requests, precision %s (asked %s), %.0f s",
        name, device, hint, requests, used, requested, seconds,
    )
    for _ in range(WARMUP_ROUNDS * requests):
        queue.start_async()
    queue.wait_all()
    latencies.clear()
    iterations = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        queue.start_async()
        iterations += 1
    queue.wait_all()
    elapsed = time.perf_counter() - start
    lat = np.asarray(latencies, dtype=np.float64)
    if len(lat) != iterations:  # pragma: no cover - a lost callback would make the numbers wrong
        raise RuntimeError(f"benchmark: {iterations} inferences started but {len(lat)} reported back")
    return BenchResult(
        model=name,
        device=device,
        hint=hint,
        precision_requested=requested,
        precision_used=used,
        throughput_fps=iterations / elapsed,
        latency_median_ms=float(np.median(lat)),
        latency_p95_ms=float(np.percentile(lat, 95)),
        requests=requests,
        iterations=iterations,
        seconds=elapsed,
        latency_mean_ms=float(lat.mean()),
        latency_min_ms=float(lat.min()),
        latency_max_ms=float(lat.max()),
        input_shape=tuple(int(d) for d in tensor.shape),
    )


def format_table(results: Sequence[BenchResult]) -> str:
    """Side-by-side table; ``vs first`` is the throughput ratio to the first result of the same device and hint
    (for latency, the ratio of median latencies, first / this, so > 1 means faster too)."""
    header = ("model", "device", "hint", "precision", "req", "FPS", "median ms", "p95 ms", "vs first")
    first: dict[tuple[str, str], BenchResult] = {}
    rows = []
    for r in results:
        base = first.setdefault((r.device, r.hint), r)
        if r.hint == "latency":
            ratio = base.latency_median_ms / r.latency_median_ms if r.latency_median_ms > 0 else float("nan")
        else:
            ratio = r.throughput_fps / base.throughput_fps if base.throughput_fps > 0 else float("nan")
        asked = r.precision_requested
        precision = r.precision_used if asked in ("default", r.precision_used) else f"{r.precision_used} (asked {asked})"
        rows.append(
            (
                r.model, r.device, r.hint, precision, str(r.requests), f"{r.throughput_fps:.1f}",
                f"{r.latency_median_ms:.2f}", f"{r.latency_p95_ms:.2f}", f"{ratio:.2f}x",
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    right = {4, 5, 6, 7, 8}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out.extend(line(row) for row in rows)
    return "\n".join(out)
