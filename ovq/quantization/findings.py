"""How far to trust the quantized model's accuracy, as typed results: per-class AP, the operating point, the drop's
bootstrap interval, the score on held-out images, and whether INT8 bought any speed.

Computed here from the evaluations :mod:`ovq.quantization.measure` ran (no model runs here); rendered by
:mod:`ovq.quantization.report`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ovq.evaluation.metrics import DropInterval, MapResult, OperatingPoint, bootstrap_drop

# INT8's recall at the model's confidence threshold this far from FP's (absolute) counts as a confidence shift worth
# a recalibrated threshold. On coco128 val2017 (~900 boxes) one box is 0.001 of recall.
RECALL_SHIFT = 0.01
# The final model counts as no faster than FP below this ratio: interleaved throughput runs on these 2-core
# machines differ by up to ~3% between identical configurations.
NO_FASTER_BELOW = 1.03


@dataclass
class ClassAP:
    """One class's AP50-95, FP and INT8, and how many labelled boxes it has among the images."""

    name: str
    fp: float
    int8: float
    instances: int

    @property
    def drop(self) -> float:
        return self.fp - self.int8


@dataclass
class OperatingPoints:
    """Precision / recall (IoU 0.5) of FP and INT8 at the model's confidence threshold ``conf``; ``recalibrated``
    is INT8 at the threshold where it finds as many objects as FP does at ``conf`` (``applied``: stored in the IR)."""

    conf: float
    fp: OperatingPoint
    int8: OperatingPoint
    recalibrated: OperatingPoint | None = None
    applied: bool = False
    fp_matched_conf: float | None = None  # median confidence of the detections that found an object
    int8_matched_conf: float | None = None

    @property
    def shifted(self) -> bool:
        return abs(self.int8.recall - self.fp.recall) > RECALL_SHIFT


def drop_of(fp: float, int8: float, relative: bool = False) -> float:
    """The mAP INT8 lost: absolute, or relative to FP's."""
    d = fp - int8
    return d / abs(fp) if relative and fp else d


def within(drop: float, budget: float | None) -> bool | None:
    """Whether ``drop`` is within ``budget`` (``None``: no budget); a drop equal to it, to float rounding, is."""
    return None if budget is None else drop <= budget + 1e-9


@dataclass
class HoldoutResult:
    """FP and INT8 scored once on images quantization never saw, and whether the budget held there."""

    source: str
    images: int
    fp: tuple[float, float]  # mAP50-95, mAP50
    int8: tuple[float, float]
    budget: float | None = None
    relative: bool = False
    interval: DropInterval | None = None
    operating: OperatingPoints | None = None

    @property
    def drop(self) -> float:
        return drop_of(self.fp[0], self.int8[0], self.relative)

    @property
    def held(self) -> bool | None:
        return within(self.drop, self.budget)


@dataclass
class SpeedVerdict:
    """The final INT8 model against FP at the deployment precision: ``ratio`` > 1 is faster."""

    ratio: float
    basis: str
    advice: list[str] = field(default_factory=list)

    @property
    def faster(self) -> bool:
        return self.ratio >= NO_FASTER_BELOW


def per_class(fp: MapResult, int8: MapResult) -> list[ClassAP]:
    """Every class with labelled boxes, in the model's class order."""
    return [ClassAP(name, ap, int8.per_class.get(name, 0.0), fp.instances.get(name, 0))
            for name, ap in fp.per_class.items()]


def operating_points(fp: MapResult, int8: MapResult, conf: float, *, recalibrated: float | None = None,
                     find: bool = True) -> OperatingPoints | None:
    """FP and INT8 at ``conf``; INT8 also at ``recalibrated``, or (``find``) at the threshold restoring FP's recall."""
    if fp.matches is None or int8.matches is None:
        return None
    points = OperatingPoints(conf, fp.matches.at_threshold(conf), int8.matches.at_threshold(conf),
                             fp_matched_conf=fp.matches.matched_confidence(),
                             int8_matched_conf=int8.matches.matched_confidence())
    if recalibrated is None and find:
        found = int8.matches.threshold_for_recall(points.fp.recall)
        recalibrated = None if found is None else math.floor(found * 1e4) / 1e4  # at or below the score reached
    if recalibrated is not None:
        points.recalibrated = int8.matches.at_threshold(recalibrated)
    return points


def drop_interval(fp: MapResult, int8: MapResult, *, rounds: int, seed: int, relative: bool,
                  budget: float | None) -> DropInterval | None:
    if rounds <= 0 or fp.matches is None or int8.matches is None:
        return None
    return bootstrap_drop(fp.matches, int8.matches, rounds=rounds, seed=seed, relative=relative, budget=budget)


def speed_verdict(*, int8_fps: float | None, fp_fps: float | None, fp_ms: float | None, final_ms: float | None,
                  precision: str, reverted_layers: int, rank_by: str | None, interval: DropInterval | None,
                  images: int) -> SpeedVerdict | None:
    """Whether the final model is faster than FP at ``precision`` and, when it is not, what to try."""
    if int8_fps and fp_fps:
        ratio, basis = int8_fps / fp_fps, f"throughput at {precision}, interleaved"
    elif fp_ms and final_ms:
        ratio, basis = fp_ms / final_ms, f"batch-1 latency at {precision}"
    else:
        return None
    verdict = SpeedVerdict(ratio, basis)
    if verdict.faster:
        return verdict
    if reverted_layers and rank_by == "accuracy":
        verdict.advice.append("--rank-by accuracy-per-latency: revert the layers that restore most mAP per "
                              "millisecond, not the most mAP (on an AMX Xeon it met FastestDet's 0.002 budget "
                              "with 1 layer instead of 12, at 1.10x FP instead of 0.95x)")
    if reverted_layers:
        noise = f" (the drop's 95% interval here spans {interval.high - interval.low:.4f})" if interval else ""
        verdict.advice.append(f"a larger validation set than {images} images, so reverts are not spent chasing "
                              f"noise{noise}; or a budget the speed allows (a larger --max-drop)")
    else:
        verdict.advice.append(f"no layer was reverted: this CPU runs the FP model at {precision} about as fast as "
                              "INT8; INT8 still cuts the weights 4x, and may pay on the target CPU (ovq bench there)")
    return verdict
