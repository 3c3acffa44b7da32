"""COCO box mAP computed by pycocotools (not an approximation), plus a per-image score.

The ground truth is built in memory from :class:`ovq.data.datasets.Sample` s: image ids are 1-based sample
positions, category ids are the contiguous class indices, ``area`` is the box area (``w * h``, used for
COCO's small/medium/large ranges) and nothing is crowd. Predictions are capped at the
:data:`MAX_DETS` best per image, the COCO standard (the evaluator itself only caps per class).

**Per-image score** (``coco_map(..., per_image=True)``), one value per sample, higher is better: for an
image with labelled boxes, its mAP50-95 computed the COCO way restricted to that image -- for each class
present in the image's ground truth, the 101-point interpolated AP at each IoU threshold 0.50:0.95 of
that image's detections of the class, averaged over thresholds and classes (classes absent from the
image's ground truth are ignored, as COCO ignores categories without ground truth). It is read from the
per-image matching COCOeval already did for the dataset mAP, so it costs milliseconds. An image without
labelled boxes scores ``1 - (highest prediction score)`` (1.0 when nothing was predicted), so a confident
false positive lowers it. NNCF's accuracy control uses these values only to rank images.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ovq.core.detections import Detections
from ovq.core.errors import DatasetError

if TYPE_CHECKING:
    from ovq.data.datasets import Sample

logger = logging.getLogger(__name__)

MAX_DETS = 100  # COCO standard: predictions per image that are scored


@dataclass
class MapResult:
    """COCO mAP50-95 and mAP50 (area "all", 100 detections), AP50-95 per class present in the ground truth."""

    map50_95: float
    map50: float
    per_class: dict[str, float] = field(default_factory=dict)
    per_image: list[float] = field(default_factory=list)


def top_k(dets: Detections, k: int = MAX_DETS) -> Detections:
    """The ``k`` highest-scoring detections (stable order for ties)."""
    if len(dets) <= k:
        return dets
    order = np.argsort(-dets.confidence, kind="stable")[:k]
    return dets[order]


def coco_map(
    samples: Sequence[Sample],
    predictions: Sequence[Detections],
    *,
    num_classes: int,
    per_image: bool = False,
    names: Sequence[str] | None = None,
) -> MapResult:
    """COCO mAP of ``predictions`` (one :class:`Detections` per sample, same order) against the samples.

    ``names`` label the ``per_class`` entries (default: the class index as a string). Classes must lie in
    ``0..num_classes-1``. With no labelled box at all the mAP is undefined; 0.0 is returned.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(samples) != len(predictions):
        raise ValueError(f"coco_map: {len(samples)} samples but {len(predictions)} predictions")
    if names is not None and len(names) != num_classes:
        raise ValueError(f"coco_map: {len(names)} names for {num_classes} classes")
    label = (lambda k: str(names[k])) if names is not None else str
    images, gt_anns, dt_anns = [], [], []
    capped: list[Detections] = []
    for index, (sample, dets) in enumerate(zip(samples, predictions)):
        image_id = index + 1
        images.append({"id": image_id, "width": int(sample.width), "height": int(sample.height)})
        _check_classes(sample.class_id, num_classes, f"ground truth of {sample.image}")
        for box, cls in zip(sample.xyxy.tolist(), sample.class_id.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            gt_anns.append(
                {"id": len(gt_anns) + 1, "image_id": image_id, "category_id": int(cls),
                 "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0}
            )
        dets = top_k(dets)
        capped.append(dets)
        _check_classes(dets.class_id, num_classes, f"predictions for {sample.image}")
        for box, cls, score in zip(dets.xyxy.tolist(), dets.class_id.tolist(), dets.confidence.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            dt_anns.append(
                {"id": len(dt_anns) + 1, "image_id": image_id, "category_id": int(cls),
                 "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0, "score": float(score)}
            )
    background = [_background_score(d) for d in capped]
    if not gt_anns:
        logger.warning("coco_map: no labelled boxes in %d images; mAP is undefined, reporting 0", len(samples))
        return MapResult(0.0, 0.0, {}, background if per_image else [])
    categories = [{"id": k, "name": label(k)} for k in range(num_classes)]
    present = sorted({a["category_id"] for a in gt_anns})
    if not dt_anns:
        scores = [0.0 if len(s.class_id) else b for s, b in zip(samples, background)]
        return MapResult(0.0, 0.0, {label(k): 0.0 for k in present}, scores if per_image else [])
    quiet = io.StringIO()  # pycocotools prints progress to stdout
    with contextlib.redirect_stdout(quiet):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": gt_anns, "categories": categories}
        gt.createIndex()
        dt = COCO()
        dt.dataset = {"images": images, "annotations": dt_anns, "categories": categories}
        dt.createIndex()
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, -1]  # (IoU thresholds, recall points, classes), area all, 100 dets
    valid = precision > -1
    map50_95 = float(precision[valid].mean()) if valid.any() else 0.0
    map50 = float(precision[0][valid[0]].mean()) if valid[0].any() else 0.0
    per_class = {}
    for k, cat in enumerate(ev.params.catIds):
        column = precision[:, :, k]
        if (column > -1).any():
            per_class[label(cat)] = float(column[column > -1].mean())
    scores = _per_image_scores(ev, len(samples), background) if per_image else []
    return MapResult(map50_95, map50, per_class, scores)


def _check_classes(class_id: np.ndarray, num_classes: int, what: str) -> None:
    if len(class_id) and (class_id.min() < 0 or class_id.max() >= num_classes):
        bad = int(class_id[(class_id < 0) | (class_id >= num_classes)][0])
        raise DatasetError(f"{what}: class {bad} is out of range 0..{num_classes - 1}")


def _background_score(dets: Detections) -> float:
    return 1.0 - float(dets.confidence.max()) if len(dets) else 1.0


def _per_image_scores(ev, n_images: int, background: list[float]) -> list[float]:
    """Per-image mAP50-95 from COCOeval's per-image matches (area "all"), see the module docstring."""
    params = ev.params
    n_areas = len(params.areaRng)
    rec_thrs = np.asarray(params.recThrs)
    sums = np.zeros(n_images)
    counts = np.zeros(n_images, dtype=np.int64)
    for k in range(len(params.catIds)):
        base = k * n_areas * n_images  # evalImgs order: category, area range, image; area "all" first
        for i in range(n_images):
            entry = ev.evalImgs[base + i]
            if entry is None:
                continue
            gt_ignore = np.asarray(entry["gtIgnore"], dtype=bool)
            n_gt = int((~gt_ignore).sum())
            if n_gt == 0:
                continue
            sums[i] += _image_class_ap(entry, n_gt, rec_thrs)
            counts[i] += 1
    return [float(sums[i] / counts[i]) if counts[i] else background[i] for i in range(n_images)]


def _image_class_ap(entry: dict, n_gt: int, rec_thrs: np.ndarray) -> float:
    """AP50-95 of one class in one image, the way COCOeval.accumulate computes it over a dataset."""
    matches = np.asarray(entry["dtMatches"])  # (T, D) matched gt id or 0, already sorted by score
    if matches.size == 0:
        return 0.0
    ignore = np.asarray(entry["dtIgnore"], dtype=bool)
    tp = np.cumsum((matches != 0) & ~ignore, axis=1, dtype=np.float64)
    fp = np.cumsum((matches == 0) & ~ignore, axis=1, dtype=np.float64)
    recall = tp / n_gt
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # non-increasing from the right
    aps = np.zeros(len(matches))
    n_det = matches.shape[1]
    for t in range(len(matches)):
        idx = np.searchsorted(recall[t], rec_thrs, side="left")
        ok = idx < n_det
        aps[t] = envelope[t][idx[ok]].sum() / len(rec_thrs)
    return float(aps.mean())
