"""Ultralytics YOLOv8 / YOLO11 / YOLO26 one-to-many head: ``[1, 4 + nc, N]`` then NMS.

Rows 0..3 are box centre x, y, width, height in input pixels; the rest are class scores (sigmoided).
"""

from __future__ import annotations

import numpy as np

from ovq.core.detections import Detections
from ovq.core.geometry import ResizeInfo, cxcywh_to_xyxy
from ovq.model.decoders.base import DecodeParams, SourcePreprocessing, finish


class YoloDecoder:
    family = "yolo"
    preprocessing = SourcePreprocessing(color="RGB", scale=(255.0, 255.0, 255.0), resize="letterbox")
    default_iou = 0.7

    def matches(self, output_shapes: list[tuple[int, ...]], input_size: tuple[int, int]) -> bool:
        shape = output_shapes[0]
        return len(shape) == 3 and shape[0] == 1 and 5 <= shape[1] < shape[2]

    def num_classes(self, output_shapes: list[tuple[int, ...]]) -> int | None:
        return output_shapes[0][1] - 4

    def decode(self, outputs: list[np.ndarray], resize: ResizeInfo, params: DecodeParams) -> Detections:
        pred = np.asarray(outputs[0])[0]  # (4 + nc, N)
        cls_scores = pred[4:]
        class_id = cls_scores.argmax(axis=0)
        scores = cls_scores[class_id, np.arange(cls_scores.shape[1])]
        keep = scores >= params.conf_threshold
        boxes = cxcywh_to_xyxy(pred[:4, keep].T)
        return finish(boxes, scores[keep], class_id[keep], resize, params)
