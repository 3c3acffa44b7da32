"""COCO box mAP computed by pycocotools (not an approximation), plus a per-image score.

The ground truth is built in memory from :class:`ovq.data.datasets.Sample` s: image ids are 1-based sample
positions, category ids are the contiguous class indices, ``area`` is the box area (``w * h``, used for
COCO's small/medium/large ranges), and a sample's crowd regions (a COCO JSON's ``iscrowd``) are crowd annotations,
so a detection inside one is ignored as COCO ignores it. Predictions are capped at the
:data:`MAX_DETS` best per image, the COCO standard (the evaluator itself only caps per class).

**Per-image score** (``coco_map(..., per_image=True)``), one value per sample, higher is better: for an
image with labelled boxes, its mAP50-95 computed the COCO way restricted to that image -- for each class
present in the image's ground truth, the 101-point interpolated AP at each IoU threshold 0.50:0.95 of
that image's detections of the class, averaged over thresholds and classes (classes absent from the
image's ground truth are ignored, as COCO ignores categories without ground truth). It is read from the
per-image matching COCOeval already did for the dataset mAP, so it costs milliseconds. An image without
labelled boxes scores ``1 - (highest prediction score)`` (1.0 when nothing was predicted), so a confident
false positive lowers it. NNCF's accuracy control uses these values only to rank images.

**Matches** (:class:`MatchTable`, ``MapResult.matches``): COCOeval's per-image matching, kept so the same
evaluation answers more questions without running the model again: the mAP of any multiset of the images
(:func:`bootstrap_drop` resamples images to say how much a drop measured on them can move), and precision /
recall at any confidence threshold at IoU 0.5 (:meth:`MatchTable.at_threshold`, an operating point). With
every image weighted once, :meth:`MatchTable.map50_95` is COCOeval's ``accumulate`` (the tests hold it to
pycocotools).
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
    """COCO mAP50-95 and mAP50 (area "all", 100 detections), AP50-95 per class present in the ground truth,
    labelled boxes per class (``instances``), and the matches behind them (``None`` when nothing was matched)."""

    map50_95: float
    map50: float
    per_class: dict[str, float] = field(default_factory=dict)
    per_image: list[float] = field(default_factory=list)
    instances: dict[str, int] = field(default_factory=dict)
    matches: MatchTable | None = field(default=None, repr=False, compare=False)


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
    matches: bool = True,
) -> MapResult:
    """COCO mAP of ``predictions`` (one :class:`Detections` per sample, same order) against the samples.

    ``names`` label the ``per_class`` entries (default: the class index as a string). Classes must lie in
    ``0..num_classes-1``. With no labelled box at all the mAP is undefined; 0.0 is returned.

    ``matches=False`` skips the :class:`MatchTable` (precision at a threshold needs the false positives of classes
    with no labelled box) and so evaluates only what the returned numbers read: the classes with labelled boxes
    (COCOeval leaves the others out of every mean anyway), area range "all" and 100 detections (not the small /
    medium / large ranges and the 1 and 10 detection caps). The mAPs, per-class and per-image scores are the same;
    ``evaluateImg`` runs a quarter as often and ``accumulate`` over a twelfth of its cases (FastestDet's accuracy
    control on coco128, Zen 3: 1.48 -> 0.63 s a call, 108 calls).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(samples) != len(predictions):
        raise ValueError(f"coco_map: {len(samples)} samples but {len(predictions)} predictions")
    if names is not None and len(names) != num_classes:
        raise ValueError(f"coco_map: {len(names)} names for {num_classes} classes")
    label = (lambda k: str(names[k])) if names is not None else str
    images, gt_anns, dt_anns, crowd_anns = [], [], [], []
    capped: list[Detections] = []
    for index, (sample, dets) in enumerate(zip(samples, predictions)):
        image_id = index + 1
        images.append({"id": image_id, "width": int(sample.width), "height": int(sample.height)})
        _check_classes(sample.class_id, num_classes, f"ground truth of {sample.image}")
        _check_classes(sample.crowd_class_id, num_classes, f"crowd regions of {sample.image}")
        for box, cls in zip(sample.xyxy.tolist(), sample.class_id.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            gt_anns.append(
                {"id": len(gt_anns) + 1, "image_id": image_id, "category_id": int(cls),
                 "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0}
            )
        for box, cls in zip(sample.crowd_xyxy.tolist(), sample.crowd_class_id.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            crowd_anns.append(
                {"image_id": image_id, "category_id": int(cls), "bbox": [box[0], box[1], w, h], "area": w * h,
                 "iscrowd": 1}
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
    counts = np.bincount([a["category_id"] for a in gt_anns], minlength=num_classes)
    instances = {label(k): int(counts[k]) for k in present}
    if not dt_anns:
        scores = [0.0 if len(s.class_id) else b for s, b in zip(samples, background)]
        return MapResult(0.0, 0.0, {label(k): 0.0 for k in present}, scores if per_image else [], instances,
                         MatchTable.empty(samples, num_classes))
    quiet = io.StringIO()  # pycocotools prints progress to stdout
    with contextlib.redirect_stdout(quiet):
        gt = COCO()
        crowd_anns = [{**a, "id": len(gt_anns) + i} for i, a in enumerate(crowd_anns, start=1)]
        gt.dataset = {"images": images, "annotations": gt_anns + crowd_anns, "categories": categories}
        gt.createIndex()
        dt = COCO()
        dt.dataset = {"images": images, "annotations": dt_anns, "categories": categories}
        dt.createIndex()
        ev = COCOeval(gt, dt, iouType="bbox")
        if not matches:
            ev.params.catIds = present
            ev.params.areaRng, ev.params.areaRngLbl = ev.params.areaRng[:1], ev.params.areaRngLbl[:1]  # "all"
            ev.params.maxDets = [MAX_DETS]
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
    table = MatchTable.from_cocoeval(ev, len(samples)) if matches else None
    return MapResult(map50_95, map50, per_class, scores, instances, table)


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


# --- matches: the mAP of resampled images, and precision / recall at a confidence threshold -------------------


@dataclass
class ClassMatches:
    """One class's detections over all images, in COCOeval's order (score descending, stable in image order)."""

    scores: np.ndarray  # (D,)
    image: np.ndarray  # (D,) the sample index of each detection
    tp: np.ndarray  # (T, D) bool: matched a labelled box at IoU threshold t (0.50, 0.55, ... 0.95)
    fp: np.ndarray  # (T, D) bool: matched none (detections matched to ignored boxes are neither)
    labelled: np.ndarray  # (N,) labelled boxes of this class in each image


@dataclass
class OperatingPoint:
    """Precision and recall at IoU 0.5 of the detections at or above ``conf`` (what a user of the model sees)."""

    conf: float
    precision: float
    recall: float
    detections_per_image: float
    true_positives: int
    false_positives: int
    labelled_boxes: int

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total > 0 else 0.0


@dataclass
class MatchTable:
    """COCOeval's matching of one set of predictions to the labelled boxes of ``images`` images, per class."""

    images: int
    rec_thrs: np.ndarray
    classes: dict[int, ClassMatches]

    @classmethod
    def from_cocoeval(cls, ev, n_images: int) -> MatchTable:
        params = ev.params
        n_areas, max_det = len(params.areaRng), params.maxDets[-1]
        n_iou = len(params.iouThrs)
        table: dict[int, ClassMatches] = {}
        for k, cat in enumerate(params.catIds):
            base = k * n_areas * n_images  # evalImgs order: category, area range, image; area "all" first
            labelled = np.zeros(n_images, np.int64)
            scores, image, matched, ignored = [], [], [], []
            for i in range(n_images):
                entry = ev.evalImgs[base + i]
                if entry is None:
                    continue
                labelled[i] = int((np.asarray(entry["gtIgnore"]) == 0).sum())
                s = np.asarray(entry["dtScores"][:max_det], np.float64)
                scores.append(s)
                image.append(np.full(len(s), i, np.int64))
                matched.append(np.asarray(entry["dtMatches"]).reshape(n_iou, -1)[:, :max_det] != 0)
                ignored.append(np.asarray(entry["dtIgnore"], bool).reshape(n_iou, -1)[:, :max_det])
            if not scores:
                continue
            all_scores = np.concatenate(scores)
            order = np.argsort(-all_scores, kind="mergesort")  # as COCOeval.accumulate sorts
            dtm = np.concatenate(matched, axis=1)[:, order]
            dti = np.concatenate(ignored, axis=1)[:, order]
            table[int(cat)] = ClassMatches(all_scores[order], np.concatenate(image)[order], dtm & ~dti, ~dtm & ~dti,
                                           labelled)
        return cls(n_images, np.asarray(params.recThrs, np.float64), table)

    @classmethod
    def empty(cls, samples: Sequence[Sample], num_classes: int) -> MatchTable:
        """No detection at all: every labelled box is missed."""
        table: dict[int, ClassMatches] = {}
        for k in range(num_classes):
            labelled = np.array([int((s.class_id == k).sum()) for s in samples], np.int64)
            if labelled.any():
                table[k] = ClassMatches(np.zeros(0), np.zeros(0, np.int64), np.zeros((10, 0), bool),
                                        np.zeros((10, 0), bool), labelled)
        return cls(len(samples), np.linspace(0.0, 1.0, 101), table)

    def class_ap(self, weights: np.ndarray | None = None) -> dict[int, float]:
        """AP50-95 of each class with labelled boxes among the images, image ``i`` counted ``weights[i]`` times."""
        w = np.ones((1, self.images)) if weights is None else np.asarray(weights, np.float64).reshape(1, -1)
        aps = {cat: float(_weighted_ap(c, w, self.rec_thrs)[0]) for cat, c in self.classes.items()}
        return {cat: ap for cat, ap in aps.items() if not np.isnan(ap)}

    def map50_95(self, weights: np.ndarray | None = None) -> float:
        aps = self.class_ap(weights)
        return float(np.mean(list(aps.values()))) if aps else 0.0

    def resampled_map(self, weights: np.ndarray) -> np.ndarray:
        """mAP50-95 for each row of ``weights`` (rounds, images): how often each image counts in that round."""
        weights = np.asarray(weights, np.float64)
        sums, counts = np.zeros(len(weights)), np.zeros(len(weights))
        for c in self.classes.values():
            step = max(1, int(4e6 // max(1, c.scores.size)))  # rounds per batch: bounded memory
            for first in range(0, len(weights), step):
                ap = _weighted_ap(c, weights[first:first + step], self.rec_thrs)
                ok = ~np.isnan(ap)
                sums[first:first + step][ok] += ap[ok]
                counts[first:first + step][ok] += 1
        return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)

    def _merged(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Every detection's score and whether it matched at IoU 0.5 (ignored ones left out), and the labelled boxes."""
        scores = [c.scores[c.tp[0] | c.fp[0]] for c in self.classes.values()]
        hits = [c.tp[0][c.tp[0] | c.fp[0]] for c in self.classes.values()]
        boxes = int(sum(int(c.labelled.sum()) for c in self.classes.values()))
        if not scores:
            return np.zeros(0), np.zeros(0, bool), boxes
        return np.concatenate(scores), np.concatenate(hits), boxes

    def at_threshold(self, conf: float) -> OperatingPoint:
        """Precision, recall (IoU 0.5) and detections per image of the detections scoring at least ``conf``.

        Equal to decoding at ``conf``: detections above it are matched first whatever lies below, and NMS keeps
        a box only for a higher-scoring one. (Each image's 100 best count, the COCO cap.)
        """
        scores, hits, boxes = self._merged()
        kept = scores >= conf
        tp, fp = int((hits & kept).sum()), int((~hits & kept).sum())
        return OperatingPoint(
            conf=float(conf), precision=tp / (tp + fp) if tp + fp else 0.0, recall=tp / boxes if boxes else 0.0,
            detections_per_image=(tp + fp) / self.images if self.images else 0.0, true_positives=tp,
            false_positives=fp, labelled_boxes=boxes,
        )

    def threshold_for_recall(self, recall: float) -> float | None:
        """The highest confidence threshold whose recall (IoU 0.5) reaches ``recall``; ``None`` if none does."""
        scores, hits, boxes = self._merged()
        if not boxes or not len(scores):
            return None
        order = np.argsort(-scores, kind="stable")
        reached = np.cumsum(hits[order]) / boxes >= recall - 1e-12
        if not reached.any():
            return None
        return float(scores[order][int(np.argmax(reached))])

    def matched_confidence(self) -> float | None:
        """The median confidence of the detections that found a labelled box (IoU 0.5): how sure the model is
        of what it gets right. ``None`` when nothing matched."""
        scores, hits, _ = self._merged()
        return float(np.median(scores[hits])) if hits.any() else None


def _weighted_ap(c: ClassMatches, weights: np.ndarray, rec_thrs: np.ndarray) -> np.ndarray:
    """COCOeval.accumulate's AP50-95 of one class for each row of ``weights`` (rounds, images): each image's
    detections and boxes counted as often as its weight says. NaN where no labelled box was drawn (the class
    does not count then, as in COCO).

    Computed at the true positives only. COCO samples the precision envelope (the best precision at or after a
    detection) at recall thresholds r_j, each at the first detection whose recall reaches r_j; recall grows only
    at a true positive, so only true positives are sampled (r = 0 included: before the first one precision is
    0), and the envelope there is a maximum over true positives alone, since a later false positive's precision
    is below that of the true positive before it. The false positives before each true positive are counted
    from a running count of all detections. The same sums as a pass over every detection, exactly (weights are
    whole numbers); :func:`bootstrap_drop`'s 1000 rounds went 27.8 -> 0.7 s (FastestDet on coco128 val: 12,637
    detections, 461 true positives at IoU 0.5) and 21.9 -> 1.1 s (YOLOX-Nano), on Zen 3.
    """
    boxes = weights @ c.labelled
    out = np.full(len(weights), np.nan)
    has = boxes > 0
    out[has] = 0.0
    hit = np.flatnonzero(c.tp.any(axis=0))
    if not has.any() or hit.size == 0:
        return out
    cut = hit[-1] + 1  # what follows the last true positive changes no recall and no envelope
    wd = weights[:, c.image[:cut]]  # (B, D): how often each detection counts in each round
    seen = np.cumsum(wd, axis=1)  # detections so far, whatever they matched
    recall_of = np.where(has, boxes, 1.0)[:, None]
    total = np.zeros(len(weights))
    for t in range(c.tp.shape[0]):
        at = np.flatnonzero(c.tp[t, :cut])
        if at.size == 0:
            continue
        tp = np.cumsum(wd[:, at], axis=1)
        fp = seen[:, at] - tp
        ignored = np.flatnonzero(~c.tp[t, :cut] & ~c.fp[t, :cut])  # matched an ignored box: neither
        if ignored.size:
            counted = np.concatenate([np.zeros((len(weights), 1)), np.cumsum(wd[:, ignored], axis=1)], axis=1)
            fp -= counted[:, np.searchsorted(ignored, at)]
        precision = tp / (fp + tp + np.spacing(1))
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        # reached[i]: the thresholds at or below true positive i's recall; it is the first to reach those
        # between the previous one's count and its own
        reached = np.searchsorted(rec_thrs, (tp / recall_of).ravel(), side="right").reshape(tp.shape)
        total += (envelope * np.diff(reached, axis=1, prepend=0)).sum(axis=1)
    out[has] = total[has] / (c.tp.shape[0] * len(rec_thrs))
    return out


@dataclass
class DropInterval:
    """How far a drop measured on a few images can move: the bootstrap over images (resampled with replacement,
    FP and INT8 on the same draw). ``low``/``high`` bound the central ``level`` of the resampled drops;
    ``over_budget`` is the share of resamples whose drop exceeds the budget (``None`` without one)."""

    drop: float
    low: float
    high: float
    level: float
    rounds: int
    images: int
    over_budget: float | None = None


def bootstrap_drop(
    fp: MatchTable, int8: MatchTable, *, rounds: int = 1000, seed: int = 0, level: float = 0.95,
    relative: bool = False, budget: float | None = None,
) -> DropInterval:
    """The bootstrap interval of the mAP50-95 drop ``fp - int8`` (``relative``: divided by FP's) over images.

    Both tables must score the same images in the same order. Each round draws as many images as there are,
    with replacement, and recomputes both mAPs the COCO way on the draw.
    """
    if fp.images != int8.images:
        raise ValueError(f"bootstrap_drop: FP was scored on {fp.images} images, INT8 on {int8.images}")
    if rounds < 1:
        raise ValueError(f"bootstrap_drop: rounds must be >= 1, got {rounds}")

    def drop_of(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if not relative:
            return a - b
        return np.divide(a - b, a, out=np.zeros_like(a), where=a != 0)

    rng = np.random.default_rng(seed)
    n = fp.images
    weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(rounds)]).astype(np.float64)
    drops = drop_of(fp.resampled_map(weights), int8.resampled_map(weights))
    tail = (1.0 - level) / 2
    low, high = np.quantile(drops, [tail, 1.0 - tail])
    over = None if budget is None else float(np.mean(drops > budget + 1e-12))
    point = drop_of(np.array([fp.map50_95()]), np.array([int8.map50_95()]))[0]
    return DropInterval(float(point), float(low), float(high), level, rounds, n, over)
