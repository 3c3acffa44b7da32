"""Measuring a quantized model: accuracy (with per-class AP, the operating point and the drop's bootstrap interval),
the score on held-out images, which layers run INT8, size, speed, latency, memory.

This is the one place the quantization result is measured; :mod:`ovq.quantization.report` only renders what
:func:`measure_result` returns. The INT8 model is saved and compiled exactly as ``run``/``eval``/``bench``
will compile it (with the compile settings stored in its IR), so the report describes the model users get.
The held-out images are scored here, once, after everything quantization decided.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import openvino as ov
import psutil

from ovq.core.errors import OvqError
from ovq.core.metadata import ModelInfo
from ovq.evaluation.metrics import MapResult
from ovq.evaluation.speed import BenchSpec, bench_rounds, benchmark_interleaved
from ovq.model.detector import Detector
from ovq.quantization import findings
from ovq.quantization.accuracy_control import RevertPlanner, Validator
from ovq.quantization.inputs import QuantizeInputs
from ovq.quantization.layers import count_fake_quantize, int8_layers, quantizable_layers
from ovq.quantization.options import DropType, QuantizeOptions
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
    fp: MapResult | None,
    fp_holdout: MapResult | None = None,
    validator: Validator | None,
    planner: RevertPlanner | None,
    precision: str,
    seconds: tuple[float, float],
    memory: PeakMemory,
    progress: bool,
) -> Measured:
    """Everything the report says about ``quantized`` (whose IR already carries ``info``).

    ``fp`` is the FP model's :class:`~ovq.evaluation.metrics.MapResult` at the deployment precision on the
    validation images (``None`` without labels), ``fp_holdout`` on the held-out ones; ``seconds`` is
    (quantization time, start of the whole call as ``perf_counter``).
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
        accuracy, trust = Accuracy(), _Trust()
        if inputs.val is not None and fp is not None:
            int8 = inputs.score(det.compiled, det, conf=adv.eval_conf, progress="INT8 model" if progress else False)
            accuracy, trust = _accuracy(fp, int8, info, options, len(inputs.val))
        holdout = None
        if inputs.holdout is not None and fp_holdout is not None:
            int8_held = inputs.score(det.compiled, det, conf=adv.eval_conf, held_out=True,
                                     progress="INT8 model, held-out images" if progress else False)
            holdout = _holdout(fp_holdout, int8_held, inputs, info, options, trust.operating)
        del det
    report = QuantizeReport(
        model=info.source, family=info.family, device=options.device, deployment_precision=precision,
        compile_config=dict(info.compile_config), quantization=info.quantization, accuracy=accuracy,
        quantized_ops=count_fake_quantize(quantized), int8_layers_at_runtime=len(final_int8),
        size_fp32_mb=_bin_size_mb(fp_model), size_int8_mb=int8_mb, quantization_seconds=seconds[0],
        total_seconds=0.0, peak_rss_mb=0.0,
        first_int8_metric=validator.first_int8_metric() if validator is not None else None, reverted=reverted,
        throughput=_throughput(fp_model, quantized, options) if adv.bench_seconds > 0 else None,
        per_class=trust.per_class, operating=trust.operating, holdout=holdout,
    )
    if planner is not None:
        report.latency = _latency(fp_model, quantized, planner, precision, adv.latency_runs)
        report.ranking_rounds = planner.rounds if report.latency is not None else None
    report.speed = _speed(report)
    if validator is not None:
        calls = validator.calls
        report.validation_calls = {
            "full": sum(1 for c in calls if c.full),
            "ranking": sum(1 for c in calls if not c.full),
            "seconds": round(sum(c.seconds for c in calls), 1),
        }
    report.total_seconds = time.perf_counter() - seconds[1]
    report.peak_rss_mb = memory.peak_mb
    return Measured(report, final_int8)


@dataclass
class _Trust:
    per_class: list[findings.ClassAP] | None = None
    operating: findings.OperatingPoints | None = None


def _accuracy(fp: MapResult, int8: MapResult, info: ModelInfo, options: QuantizeOptions,
              images: int) -> tuple[Accuracy, _Trust]:
    """FP against INT8 on the validation images: mAP, the drop's interval, per class, at the operating point."""
    adv = options.advanced
    relative = options.drop_type is DropType.RELATIVE
    if adv.bootstrap_rounds:
        logger.info("bootstrap interval of the drop: %d resamples of %d images", adv.bootstrap_rounds, images)
    interval = findings.drop_interval(fp, int8, rounds=adv.bootstrap_rounds, seed=adv.holdout_seed,
                                      relative=relative, budget=options.max_drop)
    accuracy = Accuracy(fp.map50_95, int8.map50_95, fp.map50, int8.map50, images, interval)
    return accuracy, _Trust(findings.per_class(fp, int8), findings.operating_points(fp, int8, info.conf_threshold))


def _holdout(fp: MapResult, int8: MapResult, inputs: QuantizeInputs, info: ModelInfo, options: QuantizeOptions,
             validated: findings.OperatingPoints | None) -> findings.HoldoutResult:
    """The held-out images' verdict; the operating point there uses the threshold chosen on the validation images."""
    adv = options.advanced
    relative = options.drop_type is DropType.RELATIVE
    recal = validated.recalibrated.conf if validated is not None and validated.recalibrated is not None else None
    assert inputs.holdout is not None
    result = findings.HoldoutResult(
        source=inputs.holdout_source, images=len(inputs.holdout), fp=(fp.map50_95, fp.map50),
        int8=(int8.map50_95, int8.map50), budget=options.max_drop, relative=relative,
        interval=findings.drop_interval(fp, int8, rounds=adv.bootstrap_rounds, seed=adv.holdout_seed,
                                        relative=relative, budget=options.max_drop),
        operating=findings.operating_points(fp, int8, info.conf_threshold, recalibrated=recal, find=False),
    )
    level = logging.WARNING if result.held is False else logging.INFO
    logger.log(level, "held-out %d images: FP %.4f, INT8 %.4f (drop %+.4f)%s", result.images, fp.map50_95,
               int8.map50_95, result.drop, "" if result.held is None else
               f"; the budget {'held' if result.held else 'did NOT hold'} there")
    return result


def _speed(report: QuantizeReport) -> findings.SpeedVerdict | None:
    """INT8 (deployment) against FP at the deployment precision. Where the device's default precision is f32
    the benchmark ran each model twice the same way: both runs count (on a busy 2-core machine two identical runs
    differed by up to 1.7x)."""
    sp, lat = report.throughput, report.latency
    int8_fps = fp_fps = None
    if sp is not None:
        fp_run = sp.fp_f32 if report.deployment_precision == "f32" else sp.fp_default
        int8_fps, fp_fps = sp.int8_deploy.fps, fp_run.fps
        if sp.int8_deploy.precision == sp.int8_f32.precision:
            int8_fps = (sp.int8_deploy.fps + sp.int8_f32.fps) / 2
        if sp.fp_default.precision == sp.fp_f32.precision:
            fp_fps = (sp.fp_default.fps + sp.fp_f32.fps) / 2
    return findings.speed_verdict(
        int8_fps=int8_fps, fp_fps=fp_fps,
        fp_ms=lat.fp_ms if lat else None, final_ms=lat.final_ms if lat else None,
        precision=report.deployment_precision,
        reverted_layers=sum(len(s.layers) for s in report.reverted if s.kept),
        rank_by=report.quantization.get("rank_by"), interval=report.accuracy.interval, images=report.accuracy.images,
    )


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
