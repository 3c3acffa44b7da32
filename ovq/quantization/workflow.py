"""Post-training INT8 quantization with NNCF, optionally under an accuracy budget.

Without ``max_drop``: ``nncf.quantize`` on the calibration split, with per-family defaults (the decode
tail after the last convolutions stays float; the bias correction that measured best for the family) and
user ignore patterns on top.
With ``max_drop``: ``nncf.quantize_with_accuracy_control`` validated with ovq's COCO mAP *at the
precision the model will run at* (on AMX CPUs the float layers run in bf16 by default), with
FP results cached and a per-image metric so NNCF ranks on a subset without one call per image.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from ovq.runtime.cpu import int8_kernels
from ovq.core.errors import DatasetError, ModelError, OvqError
from ovq.data.images import read_image
from ovq.core.metadata import ModelInfo, write_info
from ovq.model.detector import Detector, compile_config, load
from ovq.runtime.compilation import execution_precision, first_line

logger = logging.getLogger(__name__)

_QUANTIZABLE_TYPES = ("Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData")
_INT8 = ("i8", "u8")


class Preset(str, Enum):
    """NNCF presets: symmetric everywhere (fastest on CPU), or asymmetric activations."""

    PERFORMANCE = "performance"
    MIXED = "mixed"


class DropType(str, Enum):
    ABSOLUTE = "absolute"
    RELATIVE = "relative"


class RankBy(str, Enum):
    """Order in which accuracy control reverts groups of layers to float.

    ``accuracy``: NNCF's order, the group whose revert restores the most mAP first.
    ``accuracy-per-latency``: the most mAP restored per millisecond of latency the revert adds (each
    candidate timed against the model it would replace), so the budget is met with the reverts that cost
    least speed.
    """

    ACCURACY = "accuracy"
    ACCURACY_PER_LATENCY = "accuracy-per-latency"


# Families whose plain INT8 holds accuracy better with NNCF's fast bias correction than with its full one.
# Measured on coco128 (calibration train2017, validation val2017, bf16), three calibration subset sizes
# (128 / 96 / 64 images), plain INT8 mAP50-95:
#   YOLOX-Nano (FP 0.3364): full 0.3335 / 0.3254 / 0.3310, fast 0.3362 / 0.3346 / 0.3378
#   FastestDet (FP 0.2056): full 0.2035 / - / 0.2082,      fast 0.1992 / - / 0.2005
# Everything else gets the full correction, which is also what NNCF does by default.
FAST_BIAS_CORRECTION_FAMILIES = frozenset({"yolox"})

# NNCF's overflow fix: 7-bit weights, so INT8 kernels of CPUs without VNNI/AMX cannot saturate (see
# ovq.runtime.devices.int8_kernels). ``auto``: NNCF's default (the first layer only) where the device sums INT8
# products exactly; on a CPU without VNNI, the first layer only and every layer are both tried and the one
# with the better mAP at the deployment precision is kept (every layer without labels). Measured on an AVX2
# EPYC (Zen 3), coco128 val2017 at f32, plain INT8 (FP / first layer / every layer / none):
#   YOLOX-Nano  0.3378 / 0.1174 / 0.3270 / 0.1012   (the fix on every layer is needed)
#   FastestDet  0.2067 / 0.2010 / 0.1842 / 0.1745   (the first layer is enough, and costs less)
OVERFLOW_FIXES = ("auto", "first-layer", "enable", "disable")
_NNCF_OVERFLOW_FIX = {"first-layer": "first_layer_only", "enable": "enable", "disable": "disable"}


@dataclass
class AdvancedQuantizeOptions:
    """Rarely changed knobs."""

    ranking_subset_size: int = 64
    max_num_iterations: int | None = None
    num_ranking_workers: int = 1
    # NNCF's bias correction: "fast", "full", or None for the family's default (FAST_BIAS_CORRECTION_FAMILIES)
    bias_correction: str | None = None
    # NNCF's overflow fix: "first-layer", "enable", "disable", or None / "auto" (see OVERFLOW_FIXES)
    overflow_fix: str | None = None
    keep_decode_tail_float: bool = True
    bench_seconds: float = 5.0
    eval_conf: float = 0.001
    # accuracy control times every candidate revert: median of this many batch-1 inferences (0: off)
    latency_runs: int = 25


@dataclass
class RevertStep:
    """One accuracy-control step: the layers NNCF put back to float and the metric after it."""

    rank: int
    layers: list[str]
    metric: float
    kept: bool = True
    cost_ms: float | None = None  # batch-1 latency the revert added, measured when it was chosen
    ranking_gain: float | None = None  # mAP it restored on the ranking subset when it was chosen
    ranking_round: int = 0  # which of NNCF's rankings it was chosen from (1 = the first)
    operations: list[str] = field(default_factory=list)  # NNCF's names of the operations it reverted


@dataclass
class QuantizeResult:
    model_xml: Path | None
    model: ov.Model
    fp_map: float | None
    int8_map: float | None
    reverted: list[RevertStep]
    report: dict[str, Any]

    @property
    def drop(self) -> float | None:
        if self.fp_map is None or self.int8_map is None:
            return None
        return self.fp_map - self.int8_map


# --- deployment-precision validation --------------------------------------------------------------


@contextlib.contextmanager
def _nncf_validates_at(precision: str) -> Iterator[None]:
    """Make NNCF's accuracy control compile the models it validates at the deployment precision.

    NNCF 3.4 compiles every model it validates with INFERENCE_PRECISION_HINT=f32 and has no option for
    it. On AMX CPUs the float layers of a deployed INT8 model run in bf16, so a budget met at f32 can be
    broken in use. We switch NNCF's flag for the duration of the call; the validation function checks
    the precision it is handed, so a future NNCF that ignores this fails loudly instead of silently.
    """
    from nncf.quantization.algorithms.accuracy_control import openvino_backend

    cls = openvino_backend.OVPreparedModel
    original = cls.__init__
    want_f32 = precision == "f32"

    def init(self, model, use_fp32_precision: bool = True):  # noqa: ANN001
        original(self, model, use_fp32_precision=want_f32)

    cls.__init__ = init
    try:
        yield
    finally:
        cls.__init__ = original


def _layer_name(name: str) -> str:
    # OpenVINO's ONNX front end names a convolution "X/WithoutBiases" and its bias Add "X"
    return name.removesuffix("/WithoutBiases")


def quantizable_layers(model: ov.Model) -> set[str]:
    """Names of the layers NNCF can quantize (convolutions and matmuls)."""
    return {_layer_name(op.get_friendly_name()) for op in model.get_ops() if op.get_type_name() in _QUANTIZABLE_TYPES}


def int8_layers(compiled: ov.CompiledModel, known: set[str] | None = None) -> set[str]:
    """Names of the original layers that the device runs in INT8.

    The device fuses ops (bias, batch-norm scale) into its convolutions; ``known`` (the model's
    quantizable layer names, see :func:`quantizable_layers`) keeps the names a user recognises.
    """
    names: set[str] = set()
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        if "runtimePrecision" not in rt or rt["runtimePrecision"].astype(str).lower() not in _INT8:
            continue
        if rt["layerType"].astype(str) not in ("Convolution", "FullyConnected", "Deconvolution", "MatMul"):
            continue
        layer = set()
        for name in rt["originalLayersNames"].astype(str).split(","):
            name = _layer_name(name)
            if name and (known is None or name in known):
                layer.add(name)
        # a fused layer none of whose names is known still counts, under its own name
        names.update(layer or {_layer_name(op.get_friendly_name())})
    return names


@dataclass
class _Call:
    items: int
    metric: float
    int8: frozenset[str]
    seconds: float
    samples: list[Any] | None = None  # kept for ranking calls (the ranking subset)
    ranking_round: int = 0
    latency_ms: float | None = None  # measured batch-1 latency of the model validated (ranking calls)
    reference_ms: float | None = None  # ... and of the model it would replace, timed alternately with it


@dataclass
class _Validator:
    """The validation function NNCF calls: mAP over the given samples plus per-image values."""

    detector: Detector
    known_layers: set[str]
    expected_precision: str
    conf: float
    total: int
    fp_result: tuple[float, list[float]] | None = None
    inputs: dict[Path, tuple[np.ndarray, Any]] = field(default_factory=dict)
    max_drop: float | None = None
    relative: bool = False
    calls: list[_Call] = field(default_factory=list)
    ranking_round: int = 0  # how many rankings NNCF has done so far (set by _RevertPlanner)
    latency_runs: int = 0  # > 0: time every model validated on the ranking subset (median of this many runs)
    reference: ov.CompiledModel | None = None  # the model the ranked candidates would replace (set by the planner)

    def __call__(self, compiled: ov.CompiledModel, items: Any) -> tuple[float, list[float]]:
        from ovq.evaluation.accuracy import coco_map, predict_samples

        samples = list(items)
        used = execution_precision(compiled)
        if used != self.expected_precision:
            raise OvqError(
                f"NNCF compiled the model for validation at {used}, not the deployment precision "
                f"{self.expected_precision}; this NNCF version is not supported by ovq"
            )
        int8 = frozenset(int8_layers(compiled, self.known_layers))
        full = len(samples) == self.total
        if full and not int8 and self.fp_result is not None:  # NNCF validating the float model again
            metric, per_image = self.fp_result
            self.calls.append(_Call(len(samples), metric, int8, 0.0, None, self.ranking_round))
            return metric, per_image
        start = time.perf_counter()
        phase = "validating" if full else "ranking"
        preds = predict_samples(
            compiled, self.detector, samples, conf=self.conf, progress=phase if full else False, preprocessed=self.inputs
        )
        result = coco_map(samples, preds, num_classes=len(self.detector.labels), per_image=True)
        seconds = time.perf_counter() - start
        latency = reference = None
        if not full and self.latency_runs > 0 and self.reference is not None and samples:
            from ovq.runtime.timing import paired_latency_ms

            latency, reference = paired_latency_ms(
                compiled, self.reference, self.inputs[samples[0].image][0], self.latency_runs
            )
        self.calls.append(
            _Call(len(samples), result.map50_95, int8, seconds, None if full else samples, self.ranking_round,
                  latency, reference)
        )
        if full:
            logger.info("%s %d images: mAP50-95 %.4f (%d INT8 layers)", phase, len(samples), result.map50_95, len(int8))
        return result.map50_95, list(result.per_image)

    def first_int8_metric(self) -> float | None:
        full = [c for c in self.calls if c.items == self.total and c.int8]
        return full[0].metric if full else None

    def revert_steps(self, final_int8: set[str]) -> list[RevertStep]:
        """The revert steps NNCF took, from the full validations after the first INT8 one.

        Whether a step was kept follows NNCF's greedy rule: a step that makes the drop worse is undone,
        unless the step before it was itself undone (then it is kept and the search goes on). A step's
        layers are those it took out of INT8 relative to the model it started from. The reconstruction is
        checked against ``final_int8``, the layers that run in INT8 in the model NNCF returned.
        """
        full = [c for c in self.calls if c.items == self.total and c.int8]
        steps: list[RevertStep] = []
        if not full or self.fp_result is None:
            return steps
        fp = self.fp_result[0]

        def drop(metric: float) -> float:
            d = fp - metric
            return d / abs(fp) if self.relative and fp else d

        accepted = full[0].int8
        previous, stepped_back = drop(full[0].metric), True
        for rank, call in enumerate(full[1:], start=1):
            current = drop(call.metric)
            met = self.max_drop is not None and current <= self.max_drop
            kept = met or current <= previous or stepped_back
            steps.append(RevertStep(rank=rank, layers=sorted(accepted - call.int8), metric=call.metric, kept=kept,
                                    ranking_round=call.ranking_round))
            if kept:
                accepted = call.int8
            stepped_back = not kept
            previous = current
        if set(accepted) != set(final_int8):
            logger.warning(
                "the reconstructed revert steps do not match the returned model (%d vs %d INT8 layers); "
                "the step list in the report may be inexact", len(accepted), len(final_int8),
            )
        return steps


# --- choosing reverts by accuracy per latency -------------------------------------------------------


@dataclass
class _GroupScore:
    layers: frozenset[str]
    gain: float
    cost_ms: float
    operations: tuple[str, ...] = ()


@dataclass
class _RevertPlanner:
    """Sees each of NNCF's rankings: prices every candidate revert in latency and, for
    :attr:`RankBy.ACCURACY_PER_LATENCY`, reorders the candidates by mAP restored per millisecond.

    A candidate's gain is its ranking-subset mAP minus the current model's on the same images; its cost
    is its measured batch-1 latency minus the current model's (:mod:`ovq.runtime.timing`), both timed on the
    models NNCF compiled, so the reorders a revert adds at the borders of INT8 regions are counted.
    """

    validator: _Validator
    rank_by: RankBy
    config: dict[str, str]
    int8_latency_ms: float | None = None  # the fully quantized model, timed at the first ranking
    timing_input: np.ndarray | None = None  # the input every latency is measured on
    rounds: list[list[_GroupScore]] = field(default_factory=list)

    @property
    def free_ms(self) -> float:
        """Below this cost a revert counts as free: within the timing noise (2% of the INT8 latency)."""
        return max(0.01, 0.02 * (self.int8_latency_ms or 0.0))

    def _priority(self, s: _GroupScore) -> tuple[int, float, float]:
        if s.gain <= 0:
            return (0, s.gain, 0.0)
        if s.cost_ms <= self.free_ms:  # restores accuracy at no measurable cost: take it first
            return (2, s.gain, 0.0)
        return (1, s.gain / s.cost_ms, s.gain)

    def rank(self, original: Any, ranker: Any, groups: list[Any], quantized_model: ov.Model, *args: Any) -> list[Any]:
        # the current model, compiled as NNCF compiles the candidates (CPU, the deployment precision);
        # each candidate is timed against it in alternation
        compiled = ov.compile_model(quantized_model, device_name="CPU", config=self.config)
        timed = self.validator.latency_runs > 0
        self.validator.reference = compiled if timed else None
        start = len(self.validator.calls)
        try:
            ranked = original(ranker, groups, quantized_model, *args)
        finally:
            self.validator.reference = None
        calls = self.validator.calls[start:]
        if len(calls) != len(groups) or any(c.samples is None or (timed and c.latency_ms is None) for c in calls):
            raise OvqError(
                f"NNCF ranked {len(groups)} groups with {len(calls)} timed subset validations; "
                "this NNCF version is not supported by ovq's revert pricing"
            )
        if not groups:
            return ranked
        current = frozenset(int8_layers(compiled, self.validator.known_layers))
        baseline, _ = self.validator(compiled, calls[0].samples)
        if timed and self.int8_latency_ms is None:
            self.int8_latency_ms = float(np.median([c.reference_ms for c in calls]))
        scores = [
            _GroupScore(frozenset(current - c.int8), c.metric - baseline,
                        (c.latency_ms - c.reference_ms) if timed else 0.0,
                        tuple(sorted(getattr(op, "node_name", str(op)) for op in getattr(g, "operations", ()))))
            for c, g in zip(calls, groups)
        ]
        if self.rank_by is RankBy.ACCURACY:
            position = {id(g): i for i, g in enumerate(groups)}
            order = [position[id(g)] for g in ranked]
        else:
            order = sorted(range(len(groups)), key=lambda i: self._priority(scores[i]))  # NNCF pops from the end
            best = scores[order[-1]]
            logger.info(
                "next revert by accuracy per latency: %d layers, %+.4f mAP on the ranking subset for %+.3f ms",
                len(best.layers), best.gain, best.cost_ms,
            )
        self.rounds.append([scores[i] for i in order])
        self.validator.ranking_round = len(self.rounds)
        return ranked if self.rank_by is RankBy.ACCURACY else [groups[i] for i in order]

    def annotate(self, steps: list[RevertStep]) -> None:
        """Give each step the latency it was measured to add and the subset gain it was chosen for.

        Between two rankings NNCF pops candidates off the end of the ranked list, so the p-th step after
        ranking r took the p-th candidate from the end of that ranking.
        """
        taken: dict[int, int] = {}
        for step in steps:
            r = step.ranking_round
            p = taken.get(r, 0)
            taken[r] = p + 1
            if 1 <= r <= len(self.rounds) and p < len(self.rounds[r - 1]):
                chosen = self.rounds[r - 1][-(p + 1)]
                step.ranking_gain = chosen.gain
                step.cost_ms = chosen.cost_ms
                step.operations = list(chosen.operations)


@contextlib.contextmanager
def _nncf_progress(shown: bool) -> Iterator[None]:
    """NNCF draws its own progress bars (rich, on ``sys.stdout``); with progress off they go nowhere."""
    if shown:
        yield
        return
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        yield


@contextlib.contextmanager
def _nncf_ranking_through(planner: _RevertPlanner) -> Iterator[None]:
    """Route NNCF's ranking of revert candidates through ``planner`` for the duration of the call."""
    from nncf.quantization.algorithms.accuracy_control.ranker import Ranker

    original = Ranker.rank_groups_of_quantizers

    def rank(self, groups_to_rank, quantized_model, *args):  # noqa: ANN001
        return planner.rank(original, self, groups_to_rank, quantized_model, *args)

    Ranker.rank_groups_of_quantizers = rank
    try:
        yield
    finally:
        Ranker.rank_groups_of_quantizers = original


# --- the graph NNCF sees ----------------------------------------------------------------------------


def decode_tail(model: ov.Model) -> list[str]:
    """Names of the ops between the last convolutions / matmuls and the outputs (the decoding tail).

    Box decoding (DFL softmax, grid offsets, stride multiplies, sigmoid scores) is arithmetic on exact
    coordinates: quantizing it costs accuracy and buys nothing measurable.
    """
    names: list[str] = []
    seen: set[int] = set()
    stack = [r.input_value(0).get_node() for r in model.get_results()]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        kind = node.get_type_name()
        if kind in _QUANTIZABLE_TYPES or kind in ("Parameter", "Constant"):
            continue
        names.append(node.get_friendly_name())
        stack.extend(inp.get_source_output().get_node() for inp in node.inputs())
    return names


def _ignored_scope(model: ov.Model, info: ModelInfo, ignore: Sequence[str], keep_tail: bool):
    import nncf

    names = decode_tail(model) if keep_tail else []
    patterns = list(ignore)
    if patterns:
        import re

        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise OvqError(f"--ignore '{p}': not a valid regular expression ({exc})") from None
        all_names = [op.get_friendly_name() for op in model.get_ops()]
        if not any(re.fullmatch(p, n) for p in patterns for n in all_names):
            raise OvqError(f"--ignore {' '.join(patterns)}: matches no layer of the model")
    if not names and not patterns:
        return None
    return nncf.IgnoredScope(names=names, patterns=patterns, validate=False)


# --- data -------------------------------------------------------------------------------------------


def _calibration_tensors(detector: Detector, paths: Sequence[Path]) -> list[np.ndarray]:
    return [detector.preprocess(read_image(p))[0] for p in paths]


def _check_disjoint(data: Any, calib, val) -> None:
    calib_files = {Path(s.image).resolve() for s in calib.samples}
    shared = [s.image for s in val.samples if Path(s.image).resolve() in calib_files]
    if shared:
        raise DatasetError(
            f"{data}: calibration split '{calib.split}' and validation split '{val.split}' share "
            f"{len(shared)} images (e.g. {Path(shared[0]).name}); validate on images not used to calibrate"
        )


# --- the overflow fix --------------------------------------------------------------------------------


def overflow_fix_candidates(choice: str | None, device: str, flags: Sequence[str] | None = None) -> list[str]:
    """The overflow-fix settings to try for ``device``: the one asked for, or by the CPU's INT8 kernels."""
    from ovq.runtime.cpu import int8_kernels
    from ovq.runtime.devices import parse_device

    if choice not in (None, "auto"):
        return [str(choice)]
    spec = parse_device(device)
    on_cpu = spec.names_family("CPU") or (spec.is_virtual and not spec.targets)
    if on_cpu and int8_kernels(flags) == "no-vnni":
        return ["first-layer", "enable"]
    return ["first-layer"]


def _nncf_advanced(fix: str):
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    return AdvancedQuantizationParameters(overflow_fix=OverflowFix(_NNCF_OVERFLOW_FIX[fix]))


# --- the entry point -------------------------------------------------------------------------------


def quantize(
    model: str | Path,
    data: str | Path,
    out_dir: str | Path | None = None,
    *,
    max_drop: float | None = None,
    drop_type: DropType | str = DropType.ABSOLUTE,
    calib_split: str = "train",
    val_split: str = "val",
    subset_size: int = 300,
    preset: Preset | str = Preset.PERFORMANCE,
    ignore: Sequence[str] = (),
    device: str = "CPU",
    precision: str = "default",
    rank_by: RankBy | str = RankBy.ACCURACY,
    advanced: AdvancedQuantizeOptions | None = None,
    progress: bool = True,
) -> QuantizeResult:
    """Quantize ``model`` to INT8 and (with ``out_dir``) write the IR, ``report.json``/``.md`` and a plot.

    ``precision`` is the inference precision the model will run at (``default``: the device's own,
    bf16 on AMX CPUs; ``f32``): accuracy is validated at it and it is stored in the IR so ``run``,
    ``eval`` and ``bench`` compile the model the same way. ``rank_by`` (with ``max_drop``) picks the order
    of reverts: see :class:`RankBy`; either way every revert is priced in latency in the report.
    """
    import nncf

    from ovq.data.datasets import load_dataset

    adv = advanced or AdvancedQuantizeOptions()
    preset = Preset(preset)
    drop_type = DropType(drop_type)
    try:
        rank_by = RankBy(rank_by)
    except ValueError:
        raise OvqError(f"--rank-by '{rank_by}': expected one of {', '.join(r.value for r in RankBy)}") from None
    if rank_by is not RankBy.ACCURACY and max_drop is None:
        raise OvqError(f"--rank-by {rank_by.value} orders accuracy-control reverts: it needs --max-drop")
    if precision not in ("default", "f32", "bf16"):
        raise OvqError(f"--precision '{precision}': expected default, f32 or bf16")
    if adv.bias_correction not in (None, "fast", "full"):
        raise OvqError(f"--bias-correction '{adv.bias_correction}': expected fast or full")
    if adv.overflow_fix not in (None, *OVERFLOW_FIXES):
        raise OvqError(f"--overflow-fix '{adv.overflow_fix}': expected one of {', '.join(OVERFLOW_FIXES)}")
    started = time.perf_counter()
    fp_model, info = load(model)
    if info.quantization:
        raise ModelError(f"{model}: already quantized by ovq; quantize the float model")

    calib = load_dataset(data, split=calib_split, names=info.labels)
    val = None
    try:
        val = load_dataset(data, split=val_split, names=info.labels)
    except DatasetError:
        if max_drop is not None:
            raise
    if val is not None and not val.labelled:
        if max_drop is not None:
            raise DatasetError(
                f"{data}: split '{val_split}' has no labels; --max-drop needs a labelled dataset "
                "(a metric needs labels): use a YOLO dataset or COCO JSON"
            )
        val = None
    if val is not None:
        from ovq.evaluation.accuracy import check_dataset

        try:
            check_dataset(val, info.labels, model)
        except DatasetError as exc:
            if max_drop is not None:
                raise
            logger.warning("accuracy not measured: %s", exc)
            val = None
    if val is not None:
        _check_disjoint(data, calib, val)

    deploy_cfg = {} if precision == "default" else {"INFERENCE_PRECISION_HINT": precision}
    fp_info = ModelInfo(**{**info.__dict__, "compile_config": deploy_cfg})
    if max_drop is not None and device.upper() != "CPU":
        logger.warning("NNCF's accuracy control validates on CPU; the budget is checked there, not on %s", device)
    detector = Detector(fp_model, device=device, config=deploy_cfg, cache=False)
    used_precision = detector.inference_precision

    n_calib = min(subset_size, len(calib))
    if len(calib) < subset_size:
        logger.warning(
            "calibrating on %d images from %s split '%s', fewer than --subset-size %d",
            len(calib), data, calib.split, subset_size,
        )
    paths = [s.image for s in calib.samples[:n_calib]]
    logger.info("calibration: reading %d images", len(paths))
    calib_data = nncf.Dataset(_calibration_tensors(detector, paths))
    if adv.bias_correction is None:
        fast_bc = info.family in FAST_BIAS_CORRECTION_FAMILIES
        logger.info("bias correction: %s (the %s family's default)", "fast" if fast_bc else "full", info.family)
    else:
        fast_bc = adv.bias_correction == "fast"
    ignored = _ignored_scope(fp_model, info, ignore, adv.keep_decode_tail_float)
    nncf_preset = nncf.QuantizationPreset.MIXED if preset is Preset.MIXED else nncf.QuantizationPreset.PERFORMANCE

    fp_map = fp_map50 = None
    fp_per_image: list[float] | None = None
    validator = planner = None
    from ovq.evaluation.accuracy import coco_map, predict_samples

    if val is not None:
        logger.info("validating the FP model at %s on %d images", used_precision, len(val))
        val_inputs = {s.image: detector.preprocess(read_image(s.image)) for s in val.samples}
        preds = predict_samples(
            detector.compiled, detector, val.samples, conf=adv.eval_conf,
            progress="FP model" if progress else False, preprocessed=val_inputs,
        )
        fp_res = coco_map(val.samples, preds, num_classes=len(info.labels), per_image=True)
        fp_map, fp_map50, fp_per_image = fp_res.map50_95, fp_res.map50, list(fp_res.per_image)
        logger.info("FP mAP50-95 %.4f at %s", fp_map, used_precision)

    q_start = time.perf_counter()
    candidates = overflow_fix_candidates(adv.overflow_fix, device)
    fix, fix_trials, quantized = candidates[0], {}, None
    try:
        if len(candidates) > 1 and val is None:
            fix = "enable"
            logger.warning(
                "this CPU has no VNNI: its INT8 kernels can saturate, so the overflow fix goes on every layer "
                "(with labelled validation images ovq would measure whether the first layer is enough)"
            )
        elif len(candidates) > 1:
            logger.info("this CPU has no VNNI (INT8 sums can saturate): trying the overflow fix on %s",
                        " and ".join(candidates))
            tried = {}
            for c in candidates:
                with _nncf_progress(progress):
                    tried[c] = nncf.quantize(
                        fp_model, calib_data, preset=nncf_preset, subset_size=n_calib, fast_bias_correction=fast_bc,
                        ignored_scope=ignored, advanced_parameters=_nncf_advanced(c),
                    )
                compiled = ov.compile_model(tried[c], device_name=device, config=deploy_cfg)
                preds = predict_samples(compiled, detector, val.samples, conf=adv.eval_conf, progress=False,
                                        preprocessed=val_inputs)
                fix_trials[c] = coco_map(val.samples, preds, num_classes=len(info.labels)).map50_95
                logger.info("overflow fix on %s: INT8 mAP50-95 %.4f at %s", c, fix_trials[c], used_precision)
            fix = max(candidates, key=lambda c: fix_trials[c])  # ties keep the first (NNCF's default)
            if max_drop is None:
                quantized = tried[fix]
            del tried
        if max_drop is None and quantized is None:
            logger.info("quantizing (%s preset, %d calibration images)", preset.value, n_calib)
            with _nncf_progress(progress):
                quantized = nncf.quantize(
                    fp_model, calib_data, preset=nncf_preset, subset_size=n_calib,
                    fast_bias_correction=fast_bc, ignored_scope=ignored, advanced_parameters=_nncf_advanced(fix),
                )
        elif max_drop is not None:
            assert val is not None and fp_map is not None and fp_per_image is not None
            validator = _Validator(
                detector, quantizable_layers(fp_model), used_precision, adv.eval_conf, len(val),
                (fp_map, fp_per_image), val_inputs, max_drop=max_drop, relative=drop_type is DropType.RELATIVE,
                latency_runs=adv.latency_runs,
            )
            params = nncf.AdvancedAccuracyRestorerParameters(
                ranking_subset_size=min(adv.ranking_subset_size, len(val)),
                num_ranking_workers=adv.num_ranking_workers,
                **({"max_num_iterations": adv.max_num_iterations} if adv.max_num_iterations else {}),
            )
            logger.info(
                "quantizing with accuracy control: max drop %.4f (%s) at %s, ranking on %d images",
                max_drop, drop_type.value, used_precision, params.ranking_subset_size,
            )
            planner = _RevertPlanner(validator, rank_by, deploy_cfg)
            if adv.latency_runs > 0:
                planner.timing_input = val_inputs[val.samples[0].image][0]
            elif rank_by is RankBy.ACCURACY_PER_LATENCY:
                raise OvqError("--rank-by accuracy-per-latency needs revert timing (latency_runs > 0)")
            with _nncf_validates_at(precision), _nncf_ranking_through(planner), _nncf_progress(progress):
                quantized = nncf.quantize_with_accuracy_control(
                    fp_model, calib_data, nncf.Dataset(val.samples), validator,
                    max_drop=max_drop,
                    drop_type=nncf.DropType.ABSOLUTE if drop_type is DropType.ABSOLUTE else nncf.DropType.RELATIVE,
                    preset=nncf_preset, subset_size=n_calib, fast_bias_correction=fast_bc,
                    ignored_scope=ignored, advanced_accuracy_restorer_parameters=params,
                    advanced_quantization_parameters=_nncf_advanced(fix),
                )
    except OvqError:
        raise
    except Exception as exc:
        raise OvqError(f"{model}: NNCF failed: {first_line(exc)}") from None
    quant_seconds = time.perf_counter() - q_start

    provenance = {
        "tool": "ovq",
        "nncf": nncf.__version__,
        "openvino": ov.get_version(),
        "mode": "accuracy_control" if max_drop is not None else "plain",
        "max_drop": max_drop,
        "drop_type": drop_type.value,
        "preset": preset.value,
        "bias_correction": "fast" if fast_bc else "full",
        "overflow_fix": fix,
        "overflow_fix_trials": {k: round(v, 4) for k, v in fix_trials.items()},
        "int8_kernels": int8_kernels(),
        "data": str(data),
        "calib_split": calib.split,
        "calib_images": n_calib,
        "val_split": val.split if val else None,
        "val_images": len(val) if val else 0,
        "validated_precision": used_precision,
        "rank_by": rank_by.value if max_drop is not None else None,
        "ignored": list(ignore),
    }
    q_info = ModelInfo(**{**info.__dict__, "compile_config": deploy_cfg, "quantization": provenance})
    write_info(quantized, q_info)

    from ovq.quantization.report import build_report

    return build_report(
        fp_model=fp_model, fp_info=fp_info, quantized=quantized, q_info=q_info, out_dir=out_dir,
        val=val, fp_map=fp_map, fp_map50=fp_map50, validator=validator, planner=planner, device=device,
        used_precision=used_precision, started=started, quant_seconds=quant_seconds, adv=adv, progress=progress,
        peak_rss_mb=_peak_rss_mb,
    )


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
