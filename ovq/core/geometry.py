"""Pure geometry: resizing with letterbox, mapping boxes back, non-maximum suppression."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ResizeInfo:
    """How an original image was mapped onto the model input; its exact inverse maps boxes back.

    A point (x, y) of the original lands at (x * scale_x + pad_x, y * scale_y + pad_y) of the input.
    """

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    orig_w: int
    orig_h: int

    @functools.cached_property
    def inverse(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read-only float32 (pad, scale, frame size), each as x, y, x, y: what :func:`scale_boxes` applies."""
        arrays = (np.array((self.pad_x, self.pad_y) * 2, dtype=np.float32),
                  np.array((self.scale_x, self.scale_y) * 2, dtype=np.float32),
                  np.array((self.orig_w, self.orig_h) * 2, dtype=np.float32))
        for array in arrays:
            array.flags.writeable = False
        return arrays


# Every frame of a stream has the same size, so the ResizeInfo of its resize is the same each time: cached, its
# ``inverse`` arrays are built once, not three times a frame. Per-frame Python is what a pipeline pays for most
# on a shared VM: one NumPy call costs ~20 us there when the core just ran inference, against ~1 us back to back
# (2-core EPYC Zen 5; benchmarks/bench_pipeline.py python_cost_us, its sixth run in benchmarks/results/bench_pipeline.md).
@functools.lru_cache(maxsize=64)
def _letterbox_info(src: tuple[int, int], size: tuple[int, int], center: bool) -> ResizeInfo:
    h, w = src
    th, tw = size
    r = min(th / h, tw / w)
    nw, nh = min(max(round(w * r), 1), tw), min(max(round(h * r), 1), th)
    left, top = ((tw - nw) // 2, (th - nh) // 2) if center else (0, 0)
    return ResizeInfo(nw / w, nh / h, float(left), float(top), w, h)


@functools.lru_cache(maxsize=64)
def _stretch_info(src: tuple[int, int], size: tuple[int, int]) -> ResizeInfo:
    (h, w), (th, tw) = src, size
    return ResizeInfo(tw / w, th / h, 0.0, 0.0, w, h)


def letterbox_info(src: tuple[int, int], size: tuple[int, int], *, center: bool = True) -> ResizeInfo:
    """Where :func:`letterbox` puts an image of ``src`` = (height, width) inside ``size`` = (height, width)."""
    return _letterbox_info(tuple(src), tuple(size), bool(center))


def stretch_info(src: tuple[int, int], size: tuple[int, int]) -> ResizeInfo:
    """Where :func:`stretch` maps an image of ``src`` = (height, width)."""
    return _stretch_info(tuple(src), tuple(size))


def resized_extent(info: ResizeInfo) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the resized image inside the model input."""
    return int(info.pad_y), int(info.pad_x), round(info.orig_h * info.scale_y), round(info.orig_w * info.scale_x)


def then(first: ResizeInfo, second: ResizeInfo) -> ResizeInfo:
    """The mapping ``first`` followed by ``second`` (``second`` maps ``first``'s output size onward)."""
    return ResizeInfo(
        first.scale_x * second.scale_x, first.scale_y * second.scale_y,
        first.pad_x * second.scale_x + second.pad_x, first.pad_y * second.scale_y + second.pad_y,
        first.orig_w, first.orig_h,
    )


def letterbox(
    image: np.ndarray,
    size: tuple[int, int],
    *,
    pad_value: int = 114,
    center: bool = True,
    interpolation: int = cv2.INTER_LINEAR,
) -> tuple[np.ndarray, ResizeInfo]:
    """Resize keeping the aspect ratio and pad to ``size`` = (height, width).

    ``center=True`` splits the padding evenly (Ultralytics); ``False`` puts the image top-left (YOLOX).
    """
    h, w = image.shape[:2]
    info = letterbox_info((h, w), size, center=center)
    top, left, nh, nw = resized_extent(info)
    resized = image if (nw, nh) == (w, h) else cv2.resize(image, (nw, nh), interpolation=interpolation)
    if image.ndim == 2 or image.shape[2] <= 4:  # OpenCV pads in the same pass it copies: one call, not three
        th, tw = size
        return cv2.copyMakeBorder(resized, top, th - top - nh, left, tw - left - nw, cv2.BORDER_CONSTANT,
                                  value=(pad_value,) * 4), info
    out = np.full(tuple(size) + image.shape[2:], pad_value, dtype=image.dtype)
    out[top : top + nh, left : left + nw] = resized
    return out, info


def stretch(
    image: np.ndarray, size: tuple[int, int], *, interpolation: int = cv2.INTER_LINEAR
) -> tuple[np.ndarray, ResizeInfo]:
    """Plain resize to ``size`` = (height, width), ignoring the aspect ratio."""
    h, w = image.shape[:2]
    th, tw = size
    resized = image if (w, h) == (tw, th) else cv2.resize(image, (tw, th), interpolation=interpolation)
    return resized, stretch_info((h, w), size)


def scale_boxes(xyxy: np.ndarray, info: ResizeInfo, *, clip: bool = True) -> np.ndarray:
    """Map boxes from model-input pixels back to original-image pixels (inverse of the resize)."""
    pad, scale, size = info.inverse
    boxes = np.array(xyxy, dtype=np.float32).reshape(-1, 4)  # a copy; the arithmetic in place, in float32
    boxes -= pad
    boxes /= scale
    if clip:
        np.clip(boxes, 0, size, out=boxes)
    return boxes


def forward_boxes(xyxy: np.ndarray, info: ResizeInfo) -> np.ndarray:
    """Map boxes from original-image pixels to model-input pixels (the resize itself)."""
    boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]] * info.scale_x + info.pad_x
    boxes[:, [1, 3]] = boxes[:, [1, 3]] * info.scale_y + info.pad_y
    return boxes


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float32)
    half = boxes[..., 2:4] / 2
    return np.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes, shape (N, M)."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


MATRIX_NMS_MAX = 1024  # candidates up to which NMS computes all IoUs at once (8 MB of float64 at most)


def nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    class_id: np.ndarray | None = None,
    *,
    iou_threshold: float = 0.5,
    max_det: int = 300,
) -> np.ndarray:
    """Greedy NMS, class-aware when ``class_id`` is given; returns kept indices by falling score.

    Up to :data:`MATRIX_NMS_MAX` candidates (every frame of a usual stream) the IoUs of all pairs are computed in
    one go and the greedy pass only ORs rows; beyond, each kept box suppresses the rest of its class per step.
    Class awareness uses the usual offset trick (boxes of different classes never overlap). Measured on
    FastestDet's outputs (7 boxes a frame), the matrix form took the decode from 3.0 to 1.2 ms a frame.
    """
    xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(xyxy) == 0:
        return np.zeros((0,), dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    boxes = xyxy[order].astype(np.float64)
    if class_id is not None:
        span = float(np.abs(boxes).max()) + 1.0
        boxes += np.asarray(class_id, dtype=np.float64).reshape(-1, 1)[order] * span * 2.0
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    if len(boxes) <= MATRIX_NMS_MAX:
        keep = _greedy_matrix(x1, y1, x2, y2, areas, iou_threshold, max_det)
    else:
        keep = _greedy_steps(x1, y1, x2, y2, areas, iou_threshold, max_det)
    return order[np.asarray(keep, dtype=np.int64)]


def _overlap(x1, y1, x2, y2, areas, i, rest) -> np.ndarray:
    w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0.0)
    h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0.0)
    inter = w * h
    union = areas[i] + areas[rest] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _greedy_matrix(x1, y1, x2, y2, areas, iou_threshold: float, max_det: int) -> list[int]:
    col = slice(None), None
    over = _overlap(x1, y1, x2, y2, areas, col, slice(None)) > iou_threshold  # (N, N), row i: what i suppresses
    suppressed = np.zeros(len(x1), dtype=bool)
    keep: list[int] = []
    for i in range(len(x1)):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) >= max_det:
            break
        suppressed |= over[i]
    return keep


def _greedy_steps(x1, y1, x2, y2, areas, iou_threshold: float, max_det: int) -> list[int]:
    order = np.arange(len(x1))
    keep: list[int] = []
    while order.size and len(keep) < max_det:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        order = rest[_overlap(x1, y1, x2, y2, areas, i, rest) <= iou_threshold]
    return keep
