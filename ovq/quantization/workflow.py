"""``ovq.quantize``: post-training INT8 with NNCF, optionally under an accuracy budget, as a sequence of steps.

1. options: one :class:`QuantizeOptions`, validated once (the CLI, YAML and Python all come through here);
2. the float model and its inputs: calibration tensors, validation images read once, the held-out images set
   aside (:mod:`.inputs`, :mod:`.holdout`);
3. the FP baseline: mAP at the deployment precision (bf16 on CPUs with AMX or AVX512-BF16, unless f32 is asked);
4. the overflow fix for the CPU's INT8 kernels (:mod:`.overflow`);
5. the collapse guard: a plain INT8 model that lost most of FP's accuracy is retried with its head float
   (:mod:`.collapse`);
6. NNCF: ``nncf.quantize``, or ``nncf.quantize_with_accuracy_control`` validated at the deployment precision
   with every revert priced in latency (:mod:`.accuracy_control`, :mod:`.nncf_hooks`);
7. the held-out images, scored once now that everything is decided;
8. provenance into the IR, then measuring the result (:mod:`.measure`, :mod:`.findings`), the recalibrated
   threshold if asked, and writing it (:mod:`.report`, :mod:`.plot`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import openvino as ov

from ovq.core.errors import ConfigError, DatasetError, ModelError, OvqError
from ovq.core.fileio import atomic_output_dir, check_output_dir, write_json_atomic, write_text_atomic
from ovq.core.metadata import ModelInfo, write_info
from ovq.data.layout import output_in_dataset
from ovq.evaluation.accuracy import dataset_classes
from ovq.evaluation.metrics import MapResult
from ovq.model.conversion import output_estimate
from ovq.model.detector import Detector, load
from ovq.model.paths import model_digest, refuse_replacing_source, refuse_urls
from ovq.quantization.accuracy_control import RevertPlanner, RevertStep, Validator
from ovq.quantization.collapse import CollapseCheck, guard_collapse
from ovq.quantization.inputs import QuantizeInputs, read_inputs
from ovq.quantization.layers import count_fake_quantize, ignored_scope, quantizable_layers
from ovq.quantization.measure import PeakMemory, measure_result
from ovq.quantization.nncf_hooks import accuracy_control_hooks, nncf_progress
from ovq.quantization.options import (
    FAST_BIAS_CORRECTION_FAMILIES,
    BiasCorrection,
    DropType,
    OverflowFix,
    Precision,
    Preset,
    QuantizeOptions,
    RankBy,
    data_used,
    options_asked,
)
from ovq.quantization.overflow import (
    OverflowChoice,
    choose_overflow_fix,
    compress_weights,
    nncf_parameters,
    overflow_fix_candidates,
)
from ovq.quantization.plot import plot_sensitivity
from ovq.quantization.report import QuantizeReport, render_markdown
from ovq.runtime.compilation import check_device, first_line, write_model
from ovq.runtime.cpu import cpu_model, int8_kernels

logger = logging.getLogger(__name__)


@dataclass
class QuantizeResult:
    """What :func:`quantize` made: ``report`` is the content of ``report.json``, ``details`` the typed report."""

    model_xml: Path | None
    model: ov.Model
    fp_map: float | None
    int8_map: float | None
    reverted: list[RevertStep]
    report: dict[str, Any]
    details: QuantizeReport

    @property
    def drop(self) -> float | None:
        if self.fp_map is None or self.int8_map is None:
            return None
        return self.fp_map - self.int8_map

    @property
    def budget_met(self) -> bool | None:
        """Whether accuracy control ended within the budget on the validation images (``None``: no budget)."""
        return self.details.budget_met

    @property
    def holdout_held(self) -> bool | None:
        """Whether the budget held on the held-out images (``None``: no held-out images, or no budget)."""
        return None if self.details.holdout is None else self.details.holdout.held


@dataclass
class _Quantized:
    """What NNCF made, and what was decided on the way."""

    model: ov.Model
    overflow: OverflowChoice
    validator: Validator | None = None
    planner: RevertPlanner | None = None
    collapse: CollapseCheck | None = None


@dataclass
class _Plan:
    """What NNCF is called with, worked out once from the options and the model."""

    calibration: Any  # nncf.Dataset
    subset_size: int
    preset: Any  # nncf.QuantizationPreset
    fast_bias_correction: bool
    ignored: Any  # nncf.IgnoredScope | None
    deploy_config: dict[str, str]


def quantize(
    model: str | Path | ov.Model,
    data: str | Path,
    out_dir: str | Path | None = None,
    options: QuantizeOptions | None = None,
    *,
    progress: bool = True,
    **fields: Any,
) -> QuantizeResult:
    """Quantize ``model`` to INT8; with ``out_dir`` write the IR, ``report.json``/``.md`` and ``sensitivity.png``.

    Options come as a :class:`QuantizeOptions` or as its fields by keyword (``max_drop=0.005,
    calib_split="train2017", advanced=AdvancedQuantizeOptions(...)``), not both. ``precision`` is the inference
    precision the model will run at: accuracy is validated at it and it is stored in the IR, so ``run``,
    ``eval`` and ``bench`` compile the model the same way.
    """
    refuse_urls([model], "quantize reads the float model's files and writes INT8 ones; give a model folder, .xml, "
                         ".onnx or .pt (quantize the served model's files, then serve the result)")
    opts = _options(options, fields)
    check_device(opts.device)  # before the model loads and the warning below names it: one line, not two
    if out_dir is not None:  # an output that cannot be written fails now, not after minutes of NNCF
        if isinstance(model, (str, Path)):
            refuse_replacing_source(model, out_dir, held="the float model being quantized", by="the INT8 model")
        if isinstance(data, (str, Path)) and (problem := output_in_dataset(Path(out_dir), Path(data))):
            raise ConfigError(f"{out_dir}: {problem}")
        check_output_dir(out_dir, need_bytes=_output_estimate(model))
    started = time.perf_counter()
    # before the data is read: a file changed while quantizing makes this model stale next time
    used = data_used(data, opts, skip=out_dir) if isinstance(data, (str, Path)) and Path(data).exists() else None
    with PeakMemory() as memory:
        fp_model, info = _float_model(model)
        deploy = {} if opts.precision is Precision.DEFAULT else {"INFERENCE_PRECISION_HINT": opts.precision.value}
        if opts.max_drop is not None and opts.device.upper() != "CPU":
            logger.warning("NNCF's accuracy control validates on CPU; the budget is checked there, not on %s",
                           opts.device)
        detector = Detector(fp_model, device=opts.device, config=deploy, cache=False)
        precision = detector.inference_precision
        inputs = read_inputs(data, model, detector, opts)
        if opts.recalibrate_threshold and inputs.val is None:
            raise DatasetError(f"{data}: recalibrate_threshold needs labelled validation images ('{opts.val_split}')")
        fp = _fp_baseline(detector, inputs, opts, precision, progress)
        plan = _plan(fp_model, info, inputs, opts, deploy)
        q_start = time.perf_counter()
        try:
            done = _run_nncf(fp_model, info, detector, inputs, fp, opts, plan, precision, progress)
        except OvqError:
            raise
        except Exception as exc:  # NNCF's own failure: one line for the CLI, the chain kept for -v
            raise OvqError(f"{model}: NNCF failed: {first_line(exc)}") from exc
        fp_holdout = _fp_holdout(detector, inputs, opts, progress)
        q_info = _provenance(model, info, data, opts, inputs, plan, done, precision)
        q_info.quantization["data_used"] = used
        write_info(done.model, q_info)
        measured = measure_result(
            fp_model=fp_model, quantized=done.model, info=q_info, options=opts, inputs=inputs, fp=fp,
            fp_holdout=fp_holdout, validator=done.validator, planner=done.planner, precision=precision,
            seconds=(time.perf_counter() - q_start, started), memory=memory, progress=progress,
        )
        measured.report.collapse = done.collapse
        _settle_provenance(q_info, measured.report, opts)
        write_info(done.model, q_info)
    quantized = done.model
    report = measured.report
    report.quantization = q_info.quantization
    report.peak_rss_mb = memory.peak_mb
    model_xml = _write(out_dir, quantized, report) if out_dir is not None else None
    return QuantizeResult(model_xml=model_xml, model=quantized, fp_map=report.accuracy.fp,
                          int8_map=report.accuracy.int8, reverted=report.reverted, report=report.to_dict(),
                          details=report)


def _options(options: QuantizeOptions | None, fields: Mapping[str, Any]) -> QuantizeOptions:
    if options is not None and fields:
        raise ConfigError(f"pass options as a QuantizeOptions or by keyword, not both (got {', '.join(fields)})")
    if options is None:
        try:
            options = QuantizeOptions(**fields)
        except TypeError:
            from ovq.core.errors import unknown_key_message

            known = QuantizeOptions.__dataclass_fields__
            bad = next(k for k in fields if k not in known)
            raise ConfigError(unknown_key_message(bad, known)) from None
    return options.validate()


def _float_model(model: str | Path | ov.Model) -> tuple[ov.Model, ModelInfo]:
    fp_model, info = load(model)
    if info.quantization:
        raise ModelError(f"{model}: already quantized by ovq; quantize the float model")
    fake_quantize = count_fake_quantize(fp_model)  # another tool's INT8 (Ultralytics' int8=True export, NNCF's own)
    if fake_quantize:
        raise ModelError(f"{model}: already quantized ({fake_quantize} FakeQuantize operations in its graph); "
                         "quantize the float model it was made from")
    return fp_model, info


def _fp_baseline(detector: Detector, inputs: QuantizeInputs, opts: QuantizeOptions, precision: str,
                 progress: bool) -> MapResult | None:
    """The FP model's mAP (and per-image scores for NNCF) at the deployment precision, or ``None`` without labels."""
    if inputs.val is None:
        return None
    logger.info("validating the FP model at %s on %d images", precision, len(inputs.val))
    fp = inputs.score(detector.compiled, detector, conf=opts.advanced.eval_conf,
                      progress="FP model" if progress else False, per_image=True)
    logger.info("FP mAP50-95 %.4f at %s", fp.map50_95, precision)
    return fp


def _fp_holdout(detector: Detector, inputs: QuantizeInputs, opts: QuantizeOptions, progress: bool) -> MapResult | None:
    """The FP model on the held-out images: nothing before this step looked at them."""
    if inputs.holdout is None:
        return None
    logger.info("scoring FP and INT8 once on the %d held-out images", len(inputs.holdout))
    return inputs.score(detector.compiled, detector, conf=opts.advanced.eval_conf, held_out=True,
                        progress="FP model, held-out images" if progress else False)


def fast_bias_correction(model: ov.Model, family: str, setting: BiasCorrection) -> bool:
    """Whether NNCF runs its fast bias correction: as asked, or for ``auto`` what measured best for the family,
    and fast for any model with ``If`` operations, which NNCF 3.4's full correction refuses ("not supported for
    OpenVINO models with If operation"; torchvision's exports have them, in their transform and post-processing)."""
    if setting is not BiasCorrection.AUTO:
        return setting is BiasCorrection.FAST
    if any(op.get_type_name() == "If" for op in model.get_ops()):
        logger.info("bias correction: fast (the model has If operations, which NNCF's full correction does not take)")
        return True
    fast = family in FAST_BIAS_CORRECTION_FAMILIES
    logger.info("bias correction: %s (the %s family's default)", "fast" if fast else "full", family)
    return fast


def _plan(fp_model: ov.Model, info: ModelInfo, inputs: QuantizeInputs, opts: QuantizeOptions,
          deploy: dict[str, str]) -> _Plan:
    import nncf

    adv = opts.advanced
    fast = fast_bias_correction(fp_model, info.family, adv.bias_correction)
    return _Plan(
        calibration=nncf.Dataset(inputs.calib_tensors),
        subset_size=len(inputs.calib_tensors),
        preset=nncf.QuantizationPreset.MIXED if opts.preset is Preset.MIXED else nncf.QuantizationPreset.PERFORMANCE,
        fast_bias_correction=fast,
        ignored=ignored_scope(fp_model, opts.ignore, keep_tail=adv.keep_decode_tail_float),
        deploy_config=deploy,
    )


def _run_nncf(fp_model: ov.Model, info: ModelInfo, detector: Detector, inputs: QuantizeInputs,
              fp: MapResult | None, opts: QuantizeOptions, plan: _Plan, precision: str, progress: bool) -> _Quantized:
    """The INT8 model, with the overflow fix chosen, the collapse guard's verdict, and (with a budget) the
    validator and planner NNCF went through."""
    import nncf

    # with a budget, accuracy control starts from the plain model it would otherwise quantize again: keep each
    # plain model's weights uncompressed too, as NNCF's accuracy control needs them (see nncf_hooks)
    uncompressed: list[tuple[ov.Model, ov.Model, Any]] = []  # (plain INT8 model, same uncompressed, ignored scope)

    def plain(fix: OverflowFix, ignored: Any = None) -> ov.Model:
        logger.info("quantizing (%s preset, %d calibration images, overflow fix %s)", opts.preset.value,
                    plan.subset_size, fix.value)
        scope = plan.ignored if ignored is None else ignored
        params = nncf_parameters(fix, compress_weights=opts.max_drop is None)
        with nncf_progress(progress):
            quantized = nncf.quantize(fp_model, plan.calibration, preset=plan.preset, subset_size=plan.subset_size,
                                      fast_bias_correction=plan.fast_bias_correction, ignored_scope=scope,
                                      advanced_parameters=params)
        if opts.max_drop is None:
            return quantized
        compressed = quantized.clone()
        compress_weights(compressed)
        uncompressed.append((compressed, quantized, scope))
        return compressed

    scored: list[tuple[ov.Model, MapResult]] = []

    def score(model: ov.Model) -> MapResult:
        known = next((r for m, r in scored if m is model), None)
        if known is not None:
            return known
        compiled = ov.compile_model(model, device_name=opts.device, config=plan.deploy_config)
        scored.append((model, inputs.score(compiled, detector, conf=opts.advanced.eval_conf)))
        return scored[-1][1]

    labelled = inputs.val is not None and fp is not None
    candidates = overflow_fix_candidates(opts.advanced.overflow_fix, opts.device)
    choice = choose_overflow_fix(candidates, plain, (lambda m: score(m).map50_95) if labelled else None)
    model, collapse = choice.model, None
    if labelled and opts.advanced.collapse_guard:
        assert fp is not None
        scopes: list[Any] = []

        def retry(head: list[str]) -> ov.Model:
            scopes.append(ignored_scope(fp_model, opts.ignore, keep_tail=opts.advanced.keep_decode_tail_float,
                                        also=head))
            return plain(choice.fix, scopes[-1])

        model = model if model is not None else plain(choice.fix)
        collapse, model = guard_collapse(fp_model, info, fp, model, score, retry, below=opts.advanced.collapse_below)
        if collapse.used_retry:
            plan.ignored = scopes[-1]  # accuracy control starts from the model that held
    if opts.max_drop is None:
        return _Quantized(model if model is not None else plain(choice.fix), choice, collapse=collapse)
    assert fp is not None and inputs.val is not None
    start = next(((raw, scope) for m, raw, scope in uncompressed if m is model), None)
    uncompressed.clear()
    quantized, validator, planner = _accuracy_control(fp_model, detector, inputs, fp, opts, plan, precision,
                                                      choice.fix, progress, start)
    return _Quantized(quantized, choice, validator, planner, collapse)


def _accuracy_control(fp_model: ov.Model, detector: Detector, inputs: QuantizeInputs, fp: MapResult,
                      opts: QuantizeOptions, plan: _Plan, precision: str, fix: OverflowFix, progress: bool,
                      start: tuple[ov.Model, Any] | None):
    """NNCF's accuracy control; ``start`` is the plain INT8 model (weights uncompressed) and the ignored scope it
    was made with, which NNCF starts from instead of quantizing the same model again."""
    import nncf

    def start_from(model: ov.Model, ignored: Any) -> ov.Model | None:
        if start is None or model is not fp_model or ignored is not start[1]:
            return None
        logger.info("accuracy control starts from the plain INT8 model above (not quantized a second time)")
        return start[0].clone()

    adv = opts.advanced
    val = inputs.val
    assert val is not None and opts.max_drop is not None
    validator = Validator(
        detector, quantizable_layers(fp_model), precision, adv.eval_conf, len(val), (fp.map50_95, list(fp.per_image)),
        inputs.val_inputs, max_drop=opts.max_drop, relative=opts.drop_type is DropType.RELATIVE,
        latency_runs=adv.latency_runs, classes=dataset_classes(val),
    )
    planner = RevertPlanner(validator, RankBy(opts.rank_by), plan.deploy_config)
    if adv.latency_runs > 0:
        planner.timing_input = inputs.val_inputs[val.samples[0].image][0]
    params = nncf.AdvancedAccuracyRestorerParameters(
        ranking_subset_size=min(adv.ranking_subset_size, len(val)),
        num_ranking_workers=adv.num_ranking_workers,
        **({"max_num_iterations": adv.max_num_iterations} if adv.max_num_iterations else {}),
    )
    logger.info("quantizing with accuracy control: max drop %.4f (%s) at %s, ranking on %d images",
                opts.max_drop, opts.drop_type.value, precision, params.ranking_subset_size)
    drop_type = nncf.DropType.ABSOLUTE if opts.drop_type is DropType.ABSOLUTE else nncf.DropType.RELATIVE
    with accuracy_control_hooks(validate_f32=opts.precision is Precision.F32, rank=planner.rank,
                                start_from=start_from), \
            nncf_progress(progress):
        quantized = nncf.quantize_with_accuracy_control(
            fp_model, plan.calibration, nncf.Dataset(val.samples), validator, max_drop=opts.max_drop,
            drop_type=drop_type, preset=plan.preset, subset_size=plan.subset_size,
            fast_bias_correction=plan.fast_bias_correction, ignored_scope=plan.ignored,
            advanced_accuracy_restorer_parameters=params, advanced_quantization_parameters=nncf_parameters(fix),
        )
    return quantized, validator, planner


def _provenance(model: str | Path | ov.Model, info: ModelInfo, data: Any, opts: QuantizeOptions,
                inputs: QuantizeInputs, plan: _Plan, done: _Quantized, precision: str) -> ModelInfo:
    """The model's info with its compile settings and where its INT8 came from, for the IR's rt_info."""
    import nncf

    budget = opts.max_drop is not None
    overflow, collapse = done.overflow, done.collapse
    provenance = {
        "tool": "ovq",
        "nncf": nncf.__version__,
        "openvino": ov.get_version(),
        "mode": "accuracy_control" if budget else "plain",
        "max_drop": opts.max_drop,
        "drop_type": opts.drop_type.value,
        "preset": opts.preset.value,
        "bias_correction": "fast" if plan.fast_bias_correction else "full",
        "overflow_fix": overflow.fix.value,
        "overflow_fix_trials": {k: round(v, 4) for k, v in overflow.trials.items()},
        "cpu": cpu_model(),
        "int8_kernels": int8_kernels(),
        # which float model it came from, whatever its path and files' times (a pipeline's reuse check)
        "source_sha256": model_digest(model) if isinstance(model, (str, Path)) else None,
        "data": str(data),
        "calib_split": inputs.calib.split,
        "calib_images": plan.subset_size,
        "val_split": inputs.val.split if inputs.val else None,
        "val_images": len(inputs.val) if inputs.val else 0,
        "validated_precision": precision,
        "rank_by": opts.rank_by.value if budget else None,
        "ignored": list(opts.ignore),
        "holdout": inputs.holdout_source or None,
        "holdout_images": len(inputs.holdout) if inputs.holdout else 0,
        "head_kept_float": list(collapse.kept_float or []) if collapse and collapse.used_retry else [],
        "options": options_asked(opts),  # every option that decides the model, as asked (a pipeline's reuse check)
    }
    return replace(info, compile_config=dict(plan.deploy_config), quantization=provenance)


def _settle_provenance(q_info: ModelInfo, report: QuantizeReport, opts: QuantizeOptions) -> None:
    """What only measuring told: the layers left float, and (if asked) the recalibrated confidence threshold."""
    q_info.quantization["reverted_layers"] = sorted({n for s in report.reverted if s.kept for n in s.layers})
    if not opts.recalibrate_threshold:
        return
    op = report.operating
    if op is None or op.recalibrated is None:
        logger.warning("recalibrate_threshold: INT8 reaches the FP model's recall at no threshold; the threshold "
                       "stays %g", q_info.conf_threshold)
        return
    if not op.shifted:  # moving it would fit noise: on FastestDet/coco128 0.25 -> 0.2487 for a recall off by 0.002
        logger.info("recalibrate_threshold: INT8 did not shift its confidences (recall %.3f, FP %.3f at %g); the "
                    "threshold stays %g", op.int8.recall, op.fp.recall, op.conf, q_info.conf_threshold)
        return
    q_info.quantization["conf_threshold_fp"] = q_info.conf_threshold
    q_info.quantization["conf_threshold_recalibrated"] = {
        "restores_recall": round(op.fp.recall, 4), "iou": 0.5, "images": report.accuracy.images}
    q_info.conf_threshold = op.recalibrated.conf
    op.applied = True
    logger.info("confidence threshold %g -> %g: INT8 finds %.1f%% of the objects there, FP %.1f%% at %g",
                op.conf, op.recalibrated.conf, 100 * op.recalibrated.recall, 100 * op.fp.recall, op.conf)


def _output_estimate(model: Any) -> int:
    """Bytes the result will take, about: INT8 weights are a quarter of FP32's (reverted layers stay float), plus
    the report and its plot (100-300 kB)."""
    return output_estimate(model) // 4 + 1_000_000 if isinstance(model, (str, Path)) else 2_000_000


def _write(out_dir: str | Path, quantized: ov.Model, report: QuantizeReport) -> Path:
    """The IR, report.json, report.md and sensitivity.png, all or nothing."""
    with atomic_output_dir(out_dir) as target:
        write_model(quantized, target / "model.xml")
        write_json_atomic(target / "report.json", report.to_dict())
        write_text_atomic(target / "report.md", render_markdown(report))
        plot_sensitivity(report, target / "sensitivity.png")
    return Path(out_dir) / "model.xml"
