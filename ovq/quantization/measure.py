"""Measuring a quantized model: accuracy, which layers run INT8, size, speed, latency, memory.

This is the one place the quantization result is measured; :mod:`ovq.quantization.report` only renders what
:func:`measure_result` returns. The INT8 model is saved and compiled exactly as ``run``/``eval``/``bench``
will compile it (with the compile settings stored in its IR), so the report describes the model users get.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import openvino as ov
import psutil

from ovq.core.errors import OvqError
from ovq.core.metadata import ModelInfo
from ovq.evaluation.speed import BenchSpec, bench_rounds, benchmark_interleaved
from ovq.model.detector import Detector
from ovq.quantization.accuracy_control import RevertPlanner, Validator
from ovq.quantization.inputs import QuantizeInputs
from ovq.quantization.layers import count_fake_quantize, int8_layers, quantizable_layers
from ovq.quantization.options import QuantizeOptions
from ovq.quantization.report import Accuracy, Latency, QuantizeReport, SpeedRun, Throughput
from ovq.runtime.timing import paired_latency_ms

logger = logging.getLogger(__name__)


class PeakMemory:
    """The peak resident memory of this process while the block runs (sampled every ``interval`` s).

    The process's lifetime peak (``ru_maxrss``) would include whatever ran before the call.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process = psutil.Process()

    def _sample(self) -> None:
        self.peak_mb = max(self.peak_mb, self._process.memory_info().rss / 2**20)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> Self:
        self._sample()
        self._thread = threading.Thread(target=self._run, name="ovq-peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()


@dataclass
class Measured:
    """:func:`measure_result`'s answer: the report, and the layers the device runs in INT8."""

    report: QuantizeReport
    int8_layers: set[str]


def measure_result(
    *,
    fp_model: ov.Model,
    quantized: ov.Model,
    info: ModelInfo,
    options: QuantizeOptions,
    inputs: QuantizeInputs,
    fp: Any,
    validator: Validator | None,
    planner: RevertPlanner | None,
    precision: str,
    seconds: tuple[float, float],
    memory: PeakMemory,
    progress: bool,
) -> Measured:
    """Everything the report says about ``quantized`` (whose IR already carries ``info``).

    ``fp`` is the FP model's :class:`~ovq.evaluation.metrics.MapResult` at the deployment precision (``None``
    without labels); ``seconds`` is (quantization time, start of the whole call as ``perf_counter``).
    """
    adv = options.advanced
    with tempfile.TemporaryDirectory(prefix="ovq-q-") as tmp:
        xml = Path(tmp) / "model.xml"
        ov.save_model(quantized, str(xml), compress_to_fp16=False)
        int8_mb = xml.with_suffix(".bin").stat().st_size / 1e6
        det = Detector(xml, device=options.device, cache=False)
        final_int8 = int8_layers(det.compiled, quantizable_layers(fp_model))
        if not final_int8:
            raise OvqError(f"{info.source}: no layer runs in INT8 after quantization on {options.device}; nothing gained")
        reverted = validator.revert_steps(final_int8) if validator is not None else []
        if planner is not None:
            planner.annotate(reverted)
        accuracy = Accuracy()
        if inputs.val is not None and fp is not None:
            int8 = inputs.score(det.compiled, det, conf=adv.eval_conf, progress="INT8 model" if progress else False)
            accuracy = Accuracy(fp.map50_95, int8.map50_95, fp.map50, int8.map50, len(inputs.val))
        del det
    report = QuantizeReport(
        model=info.source, family=info.family, device=options.device, deployment_precision=precision,
        compile_config=dict(info.compile_config), quantization=info.quantization, accuracy=accuracy,
        quantized_ops=count_fake_quantize(quantized), int8_layers_at_runtime=len(final_int8),
        size_fp32_mb=_bin_size_mb(fp_model), size_int8_mb=int8_mb, quantization_seconds=seconds[0],
        total_seconds=0.0, peak_rss_mb=0.0,
        first_int8_metric=validator.first_int8_metric() if validator is not None else None, reverted=reverted,
        throughput=_throughput(fp_model, quantized, options) if adv.bench_seconds > 0 else None,
    )
    if planner is not None:
        report.latency = _latency(fp_model, quantized, planner, precision, adv.latency_runs)
        report.ranking_rounds = planner.rounds if report.latency is not None else None
    if validator is not None:
        calls = validator.calls
        report.validation_calls = {
            "full": sum(1 for c in calls if c.items == validator.total),
            "ranking": sum(1 for c in calls if c.items != validator.total),
            "seconds": round(sum(c.seconds for c in calls), 1),
        }
    report.total_seconds = time.perf_counter() - seconds[1]
    report.peak_rss_mb = memory.peak_mb
    return Measured(report, final_int8)


def _bin_size_mb(model: ov.Model) -> float:
    with tempfile.TemporaryDirectory(prefix="ovq-size-") as tmp:
        ov.save_model(model, f"{tmp}/m.xml", compress_to_fp16=False)
        return Path(f"{tmp}/m.bin").stat().st_size / 1e6


def _throughput(fp_model: ov.Model, quantized: ov.Model, options: QuantizeOptions) -> Throughput:
    """FP and INT8 at the device default and at f32, taking turns (``ovq bench``'s interleaving)."""
    seconds = options.advanced.bench_seconds
    runs = ((fp_model, "default"), (fp_model, "f32"), (quantized, None), (quantized, "f32"))
    rounds = bench_rounds(seconds)
    logger.info("benchmarking FP and INT8 at the default precision and f32, taking turns: %d x %.1f s each",
                rounds, seconds / rounds)
    results = benchmark_interleaved(
        [BenchSpec(m, device=options.device, precision=p, hint="throughput") for m, p in runs],
        seconds=seconds, rounds=rounds,
    )
    speed = [SpeedRun(r.throughput_fps, r.precision_used, r.latency_median_ms, list(r.slices_fps)) for r in results]
    return Throughput(*speed)


def _latency(fp_model: ov.Model, quantized: ov.Model, planner: RevertPlanner, precision: str,
             runs: int) -> Latency | None:
    """Batch-1 latency of the final and FP models, timed in alternation (only when reverts were timed)."""
    if planner.int8_latency_ms is None or planner.timing_input is None:
        return None
    n = max(runs, 100)
    final_ms, fp_ms = paired_latency_ms(
        ov.compile_model(quantized, device_name="CPU", config=planner.config),
        ov.compile_model(fp_model, device_name="CPU", config=planner.config),
        planner.timing_input, n,
    )
    return Latency(
        method=f"median of {n} synchronous batch-1 inferences on CPU, LATENCY hint (the default), at the "
               f"validation precision, final and FP timed in alternating blocks; each revert timed on the candidate "
               f"NNCF compiled against the model it would replace (median of {runs} each, alternating)",
        precision=precision, fp_ms=fp_ms, int8_all_layers_ms=planner.int8_latency_ms, final_ms=final_ms,
        free_below_ms=planner.free_ms,
    )
