"""What every decoder family provides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ovq.core.detections import Detections
from ovq.core.geometry import ResizeInfo, nms, scale_boxes


@dataclass(frozen=True)
class SourcePreprocessing:
    """How the *source* model expects its input; ovq builds this into the IR's graph.

    ``color`` is the channel order the network wants ("RGB" or "BGR"); the input is divided by
    ``scale`` after ``mean`` is subtracted (per channel in the network's colour order).
    """

    color: str = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: tuple[float, float, float] = (255.0, 255.0, 255.0)
    resize: str = "letterbox"
    letterbox_center: bool = True
    pad_value: int = 114


@dataclass(frozen=True)
class DecodeParams:
    input_size: tuple[int, int]
    conf_threshold: float
    iou_threshold: float
    max_det: int = 300
    max_nms: int = 30000
    agnostic: bool = False  # NMS across classes: one box per object whatever its class


class Decoder(Protocol):
    """A model family: how it wants its input, whether outputs look like it, how to decode them."""

    family: str
    preprocessing: SourcePreprocessing
    default_iou: float

    def matches(self, output_shapes: list[tuple[int, ...]], input_size: tuple[int, int]) -> bool: ...

    def num_classes(self, output_shapes: list[tuple[int, ...]]) -> int | None: ...

    def decode(self, outputs: list[np.ndarray], resize: ResizeInfo, params: DecodeParams) -> Detections: ...


def finish(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    class_id: np.ndarray,
    resize: ResizeInfo,
    params: DecodeParams,
    *,
    run_nms: bool = True,
) -> Detections:
    """Threshold, keep the top ``max_nms`` candidates, NMS (class-aware unless ``params.agnostic``), map boxes
    to the original image."""
    keep = scores >= params.conf_threshold
    boxes_xyxy, scores, class_id = boxes_xyxy[keep], scores[keep], class_id[keep]
    if len(scores) > params.max_nms:
        top = np.argpartition(-scores, params.max_nms)[: params.max_nms]
        boxes_xyxy, scores, class_id = boxes_xyxy[top], scores[top], class_id[top]
    if run_nms:
        classes = None if params.agnostic else class_id
        idx = nms(boxes_xyxy, scores, classes, iou_threshold=params.iou_threshold, max_det=params.max_det)
    else:
        idx = np.argsort(-scores, kind="stable")[: params.max_det]
    return Detections(
        xyxy=scale_boxes(boxes_xyxy[idx], resize),
        confidence=scores[idx],
        class_id=class_id[idx],
    )
