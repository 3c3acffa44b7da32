"""Train the conveyor demo detector on ``ovq.data.synth`` scenes, export YOLOv8-layout ONNX, report COCO mAP.

Run ``python pipelines/demo_model/train.py --help``. :func:`main` returns the metrics it writes, so tiny
settings (``main(epochs=1, n_train=16, n_val=8, ...)``) make a test that runs in seconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import random
import sys
import time
from copy import deepcopy
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from model import Detector, count_params

from ovq.data import synth

logger = logging.getLogger("pipelines.demo_model.train")

IMGSZ = 320
PAD_VALUE = 114


# ---------------------------------------------------------------------------------------------- data
def load_split(data_dir: Path, split: str) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], list[Path]]:
    """Images (RGB uint8, stacked), xyxy pixel boxes and class ids of one split of a YOLO dataset."""
    paths = sorted((data_dir / "images" / split).glob("*.jpg"))
    images, boxes, classes = [], [], []
    for path in paths:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise OSError(f"cannot read {path}")
        h, w = img.shape[:2]
        images.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        text = (data_dir / "labels" / split / f"{path.stem}.txt").read_text(encoding="utf-8")
        rows = np.array(text.split(), dtype=np.float64).reshape(-1, 5)
        cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
        boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1).astype(np.float32))
        classes.append(rows[:, 0].astype(np.int64))
    return np.stack(images), boxes, classes, paths


def make_batch(
    images: torch.Tensor, boxes: list[np.ndarray], classes: list[np.ndarray], idx: list[int], gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float NCHW batch with random horizontal / vertical flips, and padded targets."""
    x = images[idx].permute(0, 3, 1, 2).float().div_(255.0)
    size = x.shape[-1]
    m = max(1, max(len(boxes[i]) for i in idx))
    gt = torch.zeros(len(idx), m, 4)
    cls = torch.zeros(len(idx), m, dtype=torch.long)
    mask = torch.zeros(len(idx), m, dtype=torch.bool)
    flips = torch.rand(len(idx), 2, generator=gen) < 0.5
    for j, i in enumerate(idx):
        b = torch.from_numpy(boxes[i]).clone()
        if flips[j, 0]:
            x[j] = x[j].flip(-1)
            b[:, [0, 2]] = size - b[:, [2, 0]]
        if flips[j, 1]:
            x[j] = x[j].flip(-2)
            b[:, [1, 3]] = size - b[:, [3, 1]]
        n = len(b)
        gt[j, :n] = b
        cls[j, :n] = torch.from_numpy(classes[i])
        mask[j, :n] = True
    return x.contiguous(memory_format=torch.channels_last), gt, cls, mask


# ---------------------------------------------------------------------------------------------- loss
def ciou(b1: torch.Tensor, b2: torch.Tensor, eps: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    """Complete IoU and plain IoU of matching xyxy boxes (broadcasting)."""
    w1, h1 = b1[..., 2] - b1[..., 0], b1[..., 3] - b1[..., 1]
    w2, h2 = b2[..., 2] - b2[..., 0], b2[..., 3] - b2[..., 1]
    iw = (torch.minimum(b1[..., 2], b2[..., 2]) - torch.maximum(b1[..., 0], b2[..., 0])).clamp(min=0)
    ih = (torch.minimum(b1[..., 3], b2[..., 3]) - torch.maximum(b1[..., 1], b2[..., 1])).clamp(min=0)
    inter = iw * ih
    iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
    cw = torch.maximum(b1[..., 2], b2[..., 2]) - torch.minimum(b1[..., 0], b2[..., 0])
    ch = torch.maximum(b1[..., 3], b2[..., 3]) - torch.minimum(b1[..., 1], b2[..., 1])
    c2 = cw**2 + ch**2 + eps
    rho2 = ((b2[..., 0] + b2[..., 2] - b1[..., 0] - b1[..., 2]) ** 2
            + (b2[..., 1] + b2[..., 3] - b1[..., 1] - b1[..., 3]) ** 2) / 4
    v = (4 / math.pi**2) * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha), iou


def pairwise_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """IoU of ``a (B, M, 4)`` against ``b (B, N, 4)`` -> ``(B, M, N)``."""
    a, b = a[:, :, None], b[:, None]
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a + area_b - inter + eps)


@torch.no_grad()
def assign(
    scores: torch.Tensor, pred: torch.Tensor, anchors: torch.Tensor, gt: torch.Tensor, gt_cls: torch.Tensor,
    gt_mask: torch.Tensor, *, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Task-aligned assignment: each box takes the ``topk`` anchors inside it with the best
    ``score**alpha * iou**beta``; an anchor claimed twice goes to the box it overlaps most.

    Returns target boxes ``(B, N, 4)``, soft class targets ``(B, N, C)`` and the foreground mask ``(B, N)``.
    """
    b, n, c = scores.shape
    m = gt.shape[1]
    xy = anchors[:, :2]
    dist = torch.cat([xy[None, None] - gt[:, :, None, :2], gt[:, :, None, 2:] - xy[None, None]], -1)
    inside = (dist.amin(-1) > 0.01) & gt_mask[..., None]  # (B, M, N)
    iou = pairwise_iou(gt, pred).clamp(min=0)
    s = scores.transpose(1, 2).gather(1, gt_cls[..., None].expand(b, m, n))
    metric = s.pow(alpha) * iou.pow(beta) * inside
    k = min(topk, n)
    top = torch.where(inside, metric, torch.full_like(metric, -1.0)).topk(k, dim=-1).indices
    cand = torch.zeros_like(inside).scatter_(-1, top, True) & inside
    multi = cand.sum(1) > 1
    if multi.any():
        best = torch.where(cand, iou, torch.full_like(iou, -1.0)).argmax(1)  # (B, N)
        one = F.one_hot(best, m).transpose(1, 2).bool()
        cand = torch.where(multi[:, None], one, cand)
    fg = cand.any(1)
    gt_idx = cand.float().argmax(1)  # (B, N)
    t_boxes = gt.gather(1, gt_idx[..., None].expand(b, n, 4))
    t_cls = gt_cls.gather(1, gt_idx)
    metric = metric * cand
    norm = (metric * (iou * cand).amax(-1, keepdim=True) / (metric.amax(-1, keepdim=True) + eps)).amax(1)
    t_scores = F.one_hot(t_cls, c).float() * (norm * fg)[..., None]
    return t_boxes, t_scores, fg


def detection_loss(
    ltrb: torch.Tensor, logits: torch.Tensor, anchors: torch.Tensor, gt: torch.Tensor, gt_cls: torch.Tensor,
    gt_mask: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:
    xy = anchors[None, :, :2]
    pred = torch.cat([xy - ltrb[..., :2], xy + ltrb[..., 2:]], -1)
    t_boxes, t_scores, fg = assign(logits.detach().sigmoid(), pred.detach(), anchors, gt, gt_cls, gt_mask)
    norm = t_scores.sum().clamp(min=1.0)
    loss_cls = F.binary_cross_entropy_with_logits(logits, t_scores, reduction="sum") / norm
    if fg.any():
        weight = t_scores.sum(-1)[fg]
        c, _ = ciou(pred[fg], t_boxes[fg])
        loss_box = ((1.0 - c) * weight).sum() / norm
        stride = anchors[:, 2][None].expand_as(fg)[fg][:, None]
        t_ltrb = torch.cat([xy.expand_as(pred[..., :2])[fg] - t_boxes[fg][:, :2],
                            t_boxes[fg][:, 2:] - xy.expand_as(pred[..., :2])[fg]], -1)
        loss_l1 = (F.smooth_l1_loss(ltrb[fg] / stride, t_ltrb / stride, reduction="none").sum(-1) * weight).sum() / norm
    else:
        loss_box = loss_l1 = ltrb.sum() * 0.0
    total = 7.5 * loss_box + 0.5 * loss_cls + 1.0 * loss_l1
    return total, {"box": loss_box.item(), "cls": loss_cls.item(), "l1": loss_l1.item()}


class EMA:
    """Exponential moving average of the weights (and the BN statistics)."""

    def __init__(self, model: nn.Module, *, decay: float = 0.995, tau: float = 100.0) -> None:
        self.model = deepcopy(model).eval()
        self.decay, self.tau, self.updates = decay, tau, 0
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        src = model.state_dict()
        for k, v in self.model.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(src[k].detach(), alpha=1 - d)
            else:
                v.copy_(src[k])


# ---------------------------------------------------------------------------------------------- eval
def letterbox(image: np.ndarray, size: int = IMGSZ) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Keep-ratio resize into a centred ``size x size`` canvas padded with 114."""
    h, w = image.shape[:2]
    scale = min(size / h, size / w)
    nw, nh = round(w * scale), round(h * scale)
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w, h) else image
    canvas = np.full((size, size, 3), PAD_VALUE, np.uint8)
    left, top = (size - nw) // 2, (size - nh) // 2
    canvas[top:top + nh, left:left + nw] = resized
    return canvas, scale, (float(left), float(top))


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS over xyxy boxes; returns kept indices by descending score."""
    order = scores.argsort()[::-1]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        ih = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = iw * ih
        order = rest[inter / (areas[i] + areas[rest] - inter + 1e-9) <= iou]
    return np.array(keep, np.int64)


def decode(output: np.ndarray, *, conf: float, iou: float, max_det: int = 300) -> tuple[np.ndarray, ...]:
    """YOLOv8 layout ``(1, 4 + C, N)`` -> xyxy, score, class (in input pixels), class-aware NMS."""
    pred = output[0].T
    cls_scores = pred[:, 4:]
    class_id = cls_scores.argmax(1)
    score = cls_scores[np.arange(len(pred)), class_id]
    keep = score >= conf
    cxcywh, score, class_id = pred[keep, :4], score[keep], class_id[keep]
    xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)
    offset = class_id[:, None].astype(np.float32) * 4096.0  # boxes of different classes never overlap
    kept = nms(xyxy + offset, score, iou)[:max_det]
    return xyxy[kept], score[kept], class_id[kept]


def evaluate_onnx(onnx_path: Path, data_dir: Path, *, split: str = "val", conf: float = 0.001,
                  iou: float = 0.5) -> dict[str, float]:
    """COCO mAP of the exported model on one split, inferred with OpenVINO (f32)."""
    import openvino as ov
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    compiled = ov.Core().compile_model(str(onnx_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    images, boxes, classes, _ = load_split(data_dir, split)
    gt = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in enumerate(synth.CLASSES)]}
    dets = []
    infer_ms = []
    for i, (rgb, b, c) in enumerate(zip(images, boxes, classes, strict=True)):
        h, w = rgb.shape[:2]
        gt["images"].append({"id": i, "width": w, "height": h})
        for (x1, y1, x2, y2), k in zip(b.tolist(), c.tolist(), strict=True):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": k,
                                      "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                      "iscrowd": 0})
        canvas, scale, (px, py) = letterbox(rgb)
        blob = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        start = time.perf_counter()
        out = request.infer({0: blob})[0]
        infer_ms.append((time.perf_counter() - start) * 1e3)
        xyxy, score, class_id = decode(np.asarray(out), conf=conf, iou=iou)
        xyxy = (xyxy - [px, py, px, py]) / scale
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        for (x1, y1, x2, y2), s, k in zip(xyxy.tolist(), score.tolist(), class_id.tolist(), strict=True):
            dets.append({"image_id": i, "category_id": k, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if not dets:
            return {"mAP50-95": 0.0, "mAP50": 0.0, "images": len(images), "infer_ms_median": 0.0}
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    per_class = {}
    for k, name in enumerate(synth.CLASSES):
        p = ev.eval["precision"][:, :, k, 0, -1]
        per_class[name] = float(p[p > -1].mean()) if (p > -1).any() else float("nan")
    warm = infer_ms[min(5, len(infer_ms) - 1):]
    return {"mAP50-95": float(ev.stats[0]), "mAP50": float(ev.stats[1]), "images": len(images),
            "per_class_mAP50-95": per_class, "infer_ms_median": float(np.median(warm))}


# ---------------------------------------------------------------------------------------------- main
def export_onnx(model: Detector, path: Path, imgsz: int = IMGSZ) -> None:
    model = deepcopy(model).cpu().to(memory_format=torch.contiguous_format).export_head()
    dummy = torch.zeros(1, 3, imgsz, imgsz)
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(model, (dummy,), str(path), input_names=["images"], output_names=["output0"],
                          opset_version=17, dynamo=False, do_constant_folding=True)


def _dataset(out: Path, *, n_train: int, n_val: int, n_calib: int, seed: int) -> Path:
    data_dir = out / "data"
    stamp = {"n_train": n_train, "n_val": n_val, "n_calib": n_calib, "seed": seed, "imgsz": IMGSZ}
    stamp_path = out / "data_stamp.json"
    if (data_dir / "data.yaml").exists() and stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        logger.info("reusing dataset %s", data_dir)
        return data_dir
    start = time.monotonic()
    synth.write_yolo_dataset(data_dir, n_train=n_train, n_val=n_val, n_calib=n_calib, seed=seed,
                             width=IMGSZ, height=IMGSZ)
    stamp_path.write_text(json.dumps(stamp))
    logger.info("generated %d images in %.0f s", n_train + n_val + n_calib, time.monotonic() - start)
    return data_dir


def main(
    *,
    out: str | Path = HERE / "out",
    epochs: int = 10,
    n_train: int = 6000,
    n_val: int = 500,
    n_calib: int = 300,
    batch: int = 32,
    lr: float = 3e-3,
    weight_decay: float = 0.05,
    seed: int = 0,
    threads: int = 2,
    widths: tuple[int, ...] = (16, 24, 48, 80, 112),
    neck: int = 48,
    time_budget: float | None = None,
    init: str | Path | None = None,
) -> dict:
    """Generate data, train, export ``out/demo.onnx``, evaluate it, write and return ``out/metrics.json``.

    Training is deterministic for a seed: fixed data, order, flips and step count. ``time_budget`` (seconds
    of training) trades that for a deadline on a busy machine: the cosine schedule then follows
    ``max(step / total_steps, elapsed / time_budget)`` and training stops when either reaches 1, so the
    number of steps (recorded as ``steps`` in the metrics) depends on the machine's speed. ``init`` starts
    from saved weights (a ``last_ema.pt``) instead of random ones, to continue a run.
    """
    wall = time.monotonic()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

    data_dir = _dataset(out, n_train=n_train, n_val=n_val, n_calib=n_calib, seed=seed)
    images_np, boxes, classes, _ = load_split(data_dir, "train")
    images = torch.from_numpy(images_np)
    logger.info("loaded %d training images", len(images))

    model = Detector(len(synth.CLASSES), widths=widths, neck=neck)
    if init is not None:
        model.load_state_dict(torch.load(init, map_location="cpu"))
    model = model.to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.99))
    ema = EMA(model)
    steps_per_epoch = max(1, len(images) // batch)
    total = epochs * steps_per_epoch
    warmup = min(200, total // 10)
    gen = torch.Generator().manual_seed(seed)
    step = 0
    train_start = time.monotonic()
    progress = 0.0
    for epoch in range(epochs):
        if progress >= 1.0:
            break
        model.train()
        order = torch.randperm(len(images), generator=gen).tolist()
        sums: dict[str, float] = {}
        for it in range(steps_per_epoch):
            progress = step / max(1, total)
            if time_budget is not None:
                progress = max(progress, (time.monotonic() - train_start) / time_budget)
            if progress >= 1.0:
                break
            idx = order[it * batch:(it + 1) * batch]
            x, gt, gt_cls, gt_mask = make_batch(images, boxes, classes, idx, gen)
            scale = (step + 1) / warmup if step < warmup else 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))
            for group in opt.param_groups:
                group["lr"] = lr * scale
            ltrb, logits, anchors = model(x)
            loss, parts = detection_loss(ltrb, logits, anchors, gt, gt_cls, gt_mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            ema.update(model)
            step += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            if it % 50 == 0:
                logger.info("epoch %d it %d/%d loss %.3f %s %.1f img/s", epoch, it, steps_per_epoch, loss.item(),
                            {k: round(v, 3) for k, v in parts.items()},
                            step * batch / max(1e-6, time.monotonic() - train_start))
        done = max(1, it + 1)
        logger.info("epoch %d: %d steps, %s (%.0f s)", epoch, done, {k: round(v / done, 4) for k, v in sums.items()},
                    time.monotonic() - train_start)
        torch.save(ema.model.state_dict(), out / "last_ema.pt")
    train_s = time.monotonic() - train_start

    onnx_path = out / "demo.onnx"
    export_onnx(ema.model, onnx_path)
    metrics = evaluate_onnx(onnx_path, data_dir, split="val")
    metrics.update({
        "train_seconds": round(train_s, 1),
        "wall_seconds": round(time.monotonic() - wall, 1),
        "params": count_params(ema.model),
        "onnx_bytes": onnx_path.stat().st_size,
        "steps": step, "init": str(init) if init is not None else None, "batch": batch, "time_budget": time_budget, "epochs": epochs, "n_train": n_train, "n_val": n_val, "seed": seed, "imgsz": IMGSZ,
        "classes": list(synth.CLASSES),
    })
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    logger.info("metrics: %s", json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n-train", type=int, default=6000)
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--n-calib", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--init", type=Path, default=None, help="start from these weights (a last_ema.pt)")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds of training; ends the cosine schedule early on a busy machine (not bit-reproducible)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    result = main(out=args.out, epochs=args.epochs, n_train=args.n_train, n_val=args.n_val, n_calib=args.n_calib,
                  batch=args.batch, lr=args.lr, seed=args.seed, threads=args.threads, time_budget=args.time_budget, init=args.init)
    print(json.dumps({k: result[k] for k in ("mAP50-95", "mAP50", "images", "train_seconds", "params")}))
