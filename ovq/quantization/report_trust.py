"""The report's sections on how far to trust the accuracy: the drop's noise, the held-out score, the operating
point, per-class AP, the collapse guard, the speed verdict; as ``report.json`` data and ``report.md`` lines.

Rendering only: the numbers are measured by :mod:`ovq.quantization.measure` and typed in
:mod:`ovq.quantization.findings` and :mod:`ovq.quantization.collapse`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ovq.evaluation.metrics import DropInterval, OperatingPoint
from ovq.quantization.collapse import CollapseCheck, Scored
from ovq.quantization.findings import ClassAP, HoldoutResult, OperatingPoints, SpeedVerdict

METRIC = "COCO mAP50-95 (pycocotools)"
WORST_CLASSES = 10  # rows of report.md's per-class table
FEW_INSTANCES = 10  # below this many labelled boxes a class's AP moves by a box or two


@dataclass
class Trust:
    """What the trust sections render, gathered from the report."""

    precision: str
    max_drop: float | None
    drop_type: str
    per_class: list[ClassAP] | None = None
    operating: OperatingPoints | None = None
    holdout: HoldoutResult | None = None
    collapse: CollapseCheck | None = None
    speed: SpeedVerdict | None = None


def rounded(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(float(v), nd)


def fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


# --- report.json ------------------------------------------------------------------------------------------


def trust_dict(t: Trust) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if t.per_class is not None:
        out["per_class"] = [{"name": c.name, "fp": rounded(c.fp), "int8": rounded(c.int8), "instances": c.instances}
                            for c in t.per_class]
    out["operating_point"] = _operating_dict(t.operating)
    h = t.holdout
    if h is not None:
        out["holdout"] = {
            "source": h.source, "images": h.images,
            "fp": {"map50_95": rounded(h.fp[0]), "map50": rounded(h.fp[1])},
            "int8": {"map50_95": rounded(h.int8[0]), "map50": rounded(h.int8[1])},
            "drop": rounded(h.drop), "drop_type": "relative" if h.relative else "absolute", "budget": h.budget,
            "held": h.held, "drop_interval": interval_dict(h.interval), "operating_point": _operating_dict(h.operating),
        }
    c = t.collapse
    if c is not None:
        out["collapse"] = {"detected": c.reason is not None, "reason": c.reason, "fp": _scored_dict(c.fp),
                           "int8": _scored_dict(c.first), "retry": _scored_dict(c.retry),
                           "retry_collapsed": c.retry_reason, "kept_float": c.kept_float, "used_retry": c.used_retry}
    v = t.speed
    if v is not None:
        out["speed"] = {"faster_than_fp": v.faster, "ratio": round(v.ratio, 3), "basis": v.basis, "advice": v.advice}
    return out


def interval_dict(i: DropInterval | None) -> dict[str, Any] | None:
    if i is None:
        return None
    return {"low": rounded(i.low), "high": rounded(i.high), "level": i.level, "rounds": i.rounds, "images": i.images,
            "over_budget": rounded(i.over_budget, 3)}


def _point_dict(p: OperatingPoint | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"conf": p.conf, "precision": rounded(p.precision), "recall": rounded(p.recall), "f1": rounded(p.f1),
            "detections_per_image": rounded(p.detections_per_image, 2), "true_positives": p.true_positives,
            "false_positives": p.false_positives, "labelled_boxes": p.labelled_boxes}


def _operating_dict(o: OperatingPoints | None) -> dict[str, Any] | None:
    if o is None:
        return None
    return {"iou": 0.5, "fp": _point_dict(o.fp), "int8": _point_dict(o.int8),
            "recalibrated": _point_dict(o.recalibrated), "shifted": o.shifted, "applied": o.applied,
            "median_matched_confidence": {"fp": rounded(o.fp_matched_conf), "int8": rounded(o.int8_matched_conf)}}


def _scored_dict(s: Scored | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"map50_95": rounded(s.map50_95), "recall": rounded(s.recall),
            "detections_per_image": rounded(s.detections_per_image, 2)}


# --- report.md --------------------------------------------------------------------------------------------


def noise_lines(interval: DropInterval | None, max_drop: float | None) -> list[str]:
    """One paragraph on how much the drop measured on these images can move."""
    if interval is None:
        return []
    text = (f"Noise: resampling these {interval.images} images ({interval.rounds} bootstrap rounds, FP and INT8 on "
            f"the same draw), the drop's {interval.level:.0%} interval is **{interval.low:+.4f} .. "
            f"{interval.high:+.4f}**")
    if max_drop is not None and interval.over_budget is not None:
        text += f"; it exceeds the budget {max_drop:g} in {interval.over_budget:.0%} of the resamples"
        if interval.high - interval.low > max_drop:
            text += (". The interval is wider than the budget: on this many images the budget is decided by which "
                     "images were drawn as much as by the model (a larger validation set narrows it)")
    return [text + ".", ""]


def trust_markdown(t: Trust) -> list[str]:
    return _collapse_md(t) + _holdout_md(t) + _operating_md(t) + _per_class_md(t)


def _holdout_md(t: Trust) -> list[str]:
    h = t.holdout
    if h is None:
        return []
    lines = [
        "## Held-out images (never seen by quantization)",
        "",
        f"{h.source[0].upper()}{h.source[1:]}: scored once after quantization, FP and INT8 at {t.precision}.",
        "",
        "| model | mAP50-95 | mAP50 |",
        "|---|---|---|",
        f"| FP | {fmt(h.fp[0])} | {fmt(h.fp[1])} |",
        f"| INT8 | {fmt(h.int8[0])} | {fmt(h.int8[1])} |",
        f"| drop{' (relative)' if h.relative else ''} | {fmt(h.drop)} | |",
        "",
    ]
    if h.held is not None:
        verdict = "held" if h.held else "did NOT hold"
        lines += [(f"**The budget ({h.budget:g} {t.drop_type}) {verdict} on the held-out images** "
                  f"(drop {h.drop:+.4f})."), ""]
    return lines + noise_lines(h.interval, h.budget)


def _point_row(label: str, p: OperatingPoint | None) -> list[str]:
    if p is None:
        return []
    return [f"| {label} | {p.conf:g} | {p.precision:.3f} | {p.recall:.3f} | {p.f1:.3f} | {p.detections_per_image:.2f} |"]


def _operating_md(t: Trust) -> list[str]:
    o = t.operating
    if o is None:
        return []
    lines = [
        f"## Operating point (the model's confidence threshold {o.conf:g}, IoU 0.5)",
        "",
        "| model | conf | precision | recall | F1 | detections / image |",
        "|---|---|---|---|---|---|",
        *_point_row("FP", o.fp), *_point_row("INT8", o.int8),
    ]
    offered = o.shifted or o.applied  # a recalibrated threshold is worth a row only then
    if offered:
        lines += _point_row("INT8, recalibrated", o.recalibrated)
    h = t.holdout.operating if t.holdout is not None else None
    if h is not None:
        lines += [*_point_row("held out: FP", h.fp), *_point_row("held out: INT8", h.int8)]
        if offered:
            lines += _point_row("held out: INT8, recalibrated", h.recalibrated)
    lines.append("")
    if o.fp_matched_conf is not None and o.int8_matched_conf is not None:
        lines += [(f"Median confidence of the detections that found an object: FP {o.fp_matched_conf:.3f}, INT8 "
                  f"{o.int8_matched_conf:.3f}."), ""]
    lines += _recalibration_lines(o)
    return lines


def _recalibration_lines(o: OperatingPoints) -> list[str]:
    r = o.recalibrated
    if o.applied and r is not None:
        return [(f"**The INT8 model's threshold is {r.conf:g}** (stored in the IR; the FP model's was {o.conf:g}): there "
                f"INT8 finds {r.recall:.1%} of the objects, FP {o.fp.recall:.1%} at {o.conf:g}."), ""]
    if not o.shifted:
        return [(f"INT8 finds as many objects as FP at {o.conf:g} (recall {o.int8.recall:.1%} vs {o.fp.recall:.1%}): "
                "no recalibration needed."), ""]
    text = (f"**INT8 shifted its confidences**: at {o.conf:g} it finds {o.int8.recall:.1%} of the objects where FP "
            f"finds {o.fp.recall:.1%}.")
    if r is not None:
        text += (f" At {r.conf:g} it finds {r.recall:.1%} (precision {r.precision:.3f}): `--recalibrate-threshold` "
                 "stores that threshold in the IR.")
    return [text, ""]


def _per_class_md(t: Trust) -> list[str]:
    rows = t.per_class
    if not rows:
        return []
    worst = sorted(rows, key=lambda c: -c.drop)[:WORST_CLASSES]
    lines = [
        (f"## Per class: the {len(worst)} largest drops (AP50-95 on the validation images, {len(rows)} classes with "
        "labelled boxes)"),
        "",
        "| class | instances | FP | INT8 | drop |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {c.name} | {c.instances}{'*' if c.instances < FEW_INSTANCES else ''} | {c.fp:.4f} | {c.int8:.4f} | "
              f"{c.drop:+.4f} |" for c in worst]
    if any(c.instances < FEW_INSTANCES for c in worst):
        lines += ["", (f"\\* fewer than {FEW_INSTANCES} labelled boxes: a box found or missed moves the class's AP a "
                  "lot; report.json lists every class.")]
    return lines + [""]


def _collapse_md(t: Trust) -> list[str]:
    c = t.collapse
    if c is None or c.reason is None:
        return []
    lines = ["## INT8 collapsed", "", f"**{c.reason}.**", ""]
    if c.retry is not None:
        outcome = ("it held, and that model went on" if c.retry_reason is None and c.used_retry else
                   "it collapsed too" + (f" ({c.retry_reason})" if c.retry_reason else "") +
                   (", but less: that model went on" if c.used_retry else ": the first model went on"))
        lines += [
            (f"Quantized again with the detection head float ({len(c.kept_float or [])} ops, as Ultralytics' OpenVINO "
            f"export and NNCF's YOLO26 example keep it): {outcome}."),
            "",
            "| model | mAP50-95 | recall at the threshold | detections / image |",
            "|---|---|---|---|",
        ]
        for label, s in (("FP", c.fp), ("INT8", c.first), ("INT8, head float", c.retry)):
            rec = "n/a" if s.recall is None else f"{s.recall:.3f}"
            per = "n/a" if s.detections_per_image is None else f"{s.detections_per_image:.2f}"
            lines.append(f"| {label} | {s.map50_95:.4f} | {rec} | {per} |")
        lines += ["", "Kept float: " + ", ".join(f"`{n}`" for n in (c.kept_float or [])[:12])
                  + (" ..." if len(c.kept_float or []) > 12 else ""), ""]
        if c.retry_reason is not None:
            lines += [("Keeping the head float did not save it: every activation range may be wrong. Check that the "
                      "calibration images look like the images the model will see (same camera, lighting, size); "
                      "then try more of them, `--preset mixed`, or `--overflow-fix enable`."), ""]
    return lines


def speed_lines(v: SpeedVerdict | None) -> list[str]:
    if v is None or v.faster:
        return []
    lines = ["", f"**The final INT8 model is no faster than FP** ({v.ratio:.2f}x, {v.basis}). To try:"]
    return lines + [f"- {a}" for a in v.advice]
