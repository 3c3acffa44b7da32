"""The collapse guard: a plain INT8 model that lost most of the FP model's accuracy is said to have, plainly, and is
quantized again with its detection head kept float.

Users of other tools report INT8 models whose mAP fell to near zero on their own data (ultralytics#23987, YOLO26)
and whose confidences were squeezed so that few objects clear the threshold (ultralytics#24668). A budget
(``max_drop``) would claw such a model back one revert at a time, for many minutes, if at all; without a budget
the model would simply be written. The guard compares the plain INT8 model with the FP model on the validation
images: collapsed when INT8 keeps less than ``collapse_below`` (default half) of FP's mAP50-95, or of its recall
at the model's confidence threshold (confidences collapsed). Then the model is quantized again with the head
float -- what Ultralytics' OpenVINO INT8 export and NNCF's YOLO26 example do by default -- and both are reported;
the better one goes on.

The head kept float (:func:`head_layers`): the output convolutions of every family (the last convolutions or
matmuls on each path to an output, whose outputs are the raw boxes and scores), and for Ultralytics graphs the
whole last ``model.N`` module (its Detect head: box and class branches, DFL), plus the family's own patterns
(:data:`HEAD_PATTERNS`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import openvino as ov

from ovq.core.metadata import ModelInfo
from ovq.evaluation.metrics import MapResult
from ovq.quantization.layers import QUANTIZABLE_TYPES, output_layers

# Ops each family's own tools keep float, as regexes of node names (NNCF's yolo26 example: ".*one2one.*", the
# end-to-end head; Ultralytics' exporter: the Detect module and its DFL).
HEAD_PATTERNS: dict[str, tuple[str, ...]] = {
    "yolo": (r".*dfl.*",),
    "yolo_e2e": (r".*one2one.*", r".*dfl.*"),
}
# Ultralytics module scopes as its exports name them: "/model.22/..." (ONNX) or "__module.model.22..." (OpenVINO)
_ULTRALYTICS_SCOPE = re.compile(r"^(?:/|__module\.)model\.(\d+)[./]")

logger = logging.getLogger(__name__)


@dataclass
class Scored:
    """One model's accuracy on the validation images, as the guard judged it."""

    map50_95: float
    recall: float | None  # at the model's confidence threshold, IoU 0.5
    detections_per_image: float | None


@dataclass
class CollapseCheck:
    """What the guard saw: ``reason`` is ``None`` when the plain INT8 model held; with a reason, ``retry`` is the
    model quantized with ``kept_float`` left float (``retry_reason``: why it collapsed too, if it did), and
    ``used_retry`` says which of the two went on."""

    fp: Scored
    first: Scored
    reason: str | None = None
    retry: Scored | None = None
    retry_reason: str | None = None
    kept_float: list[str] | None = None
    used_retry: bool = False


def scored(result: MapResult, conf: float) -> Scored:
    if result.matches is None:
        return Scored(result.map50_95, None, None)
    point = result.matches.at_threshold(conf)
    return Scored(result.map50_95, point.recall, point.detections_per_image)


def collapse_reason(fp: Scored, int8: Scored, *, conf: float, below: float) -> str | None:
    """Why ``int8`` counts as collapsed next to ``fp`` (in words), or ``None`` when it held."""
    if fp.map50_95 > 0 and int8.map50_95 < below * fp.map50_95:
        return (f"INT8 mAP50-95 {int8.map50_95:.4f} is {int8.map50_95 / fp.map50_95:.0%} of the FP model's "
                f"{fp.map50_95:.4f}: the quantized model lost most of its accuracy")
    if fp.recall and int8.recall is not None and int8.recall < below * fp.recall:
        return (f"at the model's confidence threshold {conf:g} INT8 finds {int8.recall:.0%} of the labelled objects "
                f"where FP finds {fp.recall:.0%} ({int8.detections_per_image:.1f} vs {fp.detections_per_image:.1f} "
                "detections per image): its confidences collapsed")
    return None


def head_layers(model: ov.Model, family: str) -> list[str]:
    """Names of the ops to keep float when retrying a collapsed model (see the module docstring)."""
    names = set(output_layers(model))
    ops = [op for op in model.get_ops() if op.get_type_name() in QUANTIZABLE_TYPES]
    scopes = [int(m.group(1)) for op in ops if (m := _ULTRALYTICS_SCOPE.match(op.get_friendly_name()))]
    if scopes:  # an Ultralytics graph: its Detect head is the last module
        last = max(scopes)
        names |= {op.get_friendly_name() for op in ops
                  if (m := _ULTRALYTICS_SCOPE.match(op.get_friendly_name())) and int(m.group(1)) == last}
    patterns = [re.compile(p) for p in HEAD_PATTERNS.get(family, ())]
    names |= {op.get_friendly_name() for op in ops if any(p.fullmatch(op.get_friendly_name()) for p in patterns)}
    return sorted(names)


def guard_collapse(
    fp_model: ov.Model, info: ModelInfo, fp: MapResult, model: ov.Model, score: Callable[[ov.Model], MapResult],
    retry: Callable[[list[str]], ov.Model], *, below: float,
) -> tuple[CollapseCheck, ov.Model]:
    """Judge the plain INT8 ``model`` against ``fp``; if it collapsed, ``retry(head_layers)`` quantizes again with
    the head float. Returns the verdict and the model to go on with (the retry when it scored better)."""
    conf = info.conf_threshold
    first = score(model)
    check = CollapseCheck(scored(fp, conf), scored(first, conf))
    check.reason = collapse_reason(check.fp, check.first, conf=conf, below=below)
    if check.reason is None:
        logger.info("collapse guard: plain INT8 keeps %.0f%% of FP's mAP50-95",
                    100 * first.map50_95 / fp.map50_95 if fp.map50_95 else 100)
        return check, model
    head = head_layers(fp_model, info.family)
    logger.warning("%s: %s; quantizing again with the detection head float (%d ops)", info.source or "model",
                   check.reason, len(head))
    if not head:
        return check, model
    retried = retry(head)
    result = score(retried)
    check.kept_float, check.retry = head, scored(result, conf)
    check.retry_reason = collapse_reason(check.fp, check.retry, conf=conf, below=below)
    check.used_retry = result.map50_95 > first.map50_95
    if check.retry_reason is None:
        logger.warning("with the detection head float INT8 holds: mAP50-95 %.4f (FP %.4f, collapsed INT8 %.4f)",
                       result.map50_95, fp.map50_95, first.map50_95)
    else:
        logger.warning("with the detection head float INT8 collapsed too (%s); going on with the %s model. Check "
                       "that the calibration images look like the images the model will see; then try more of them, "
                       "preset mixed, or the overflow fix on every layer", check.retry_reason,
                       "head-float" if check.used_retry else "first")
    return check, retried if check.used_retry else model
