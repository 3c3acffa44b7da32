"""Ultralytics YOLOv8 / YOLO11 / YOLO26 one-to-many head: ``[1, 4 + nc, N]`` then NMS.

Rows 0..3 are box centre x, y, width, height in input pixels; the rest are class scores (sigmoided).
YOLO26 gives this head when Ultralytics exports it with its default ``nms=None`` (e.g. ``format=onnx``).
"""

from __future__ import annotations

import numpy as np

from ovq.core.detections import Detections
from ovq.core.geometry import ResizeInfo, cxcywh_to_xyxy
from ovq.model.decoders.base import DecodeParams, ModelFacts, SourcePreprocessing, check_confidences, finish


class YoloDecoder:
    family = "yolo"
    expects = "one output [1, 4 + nc, N], N > 4 + nc: cx, cy, w, h in pixels, then class scores"
    preprocessing = SourcePreprocessing(color="RGB", scale=(255.0, 255.0, 255.0), resize="letterbox")
    default_iou = 0.7

    def matches(self, facts: ModelFacts) -> bool:
        shape = facts.single_output
        if shape is None or len(shape) != 3 or shape[0] != 1 or not 5 <= shape[1] < shape[2]:
            return False
        # an Ultralytics export says which head it has: not this one when end-to-end or RT-DETR
        return facts.metadata.get("end2end") != "True" and facts.metadata.get("head") != "RTDETRDecoder"

    def num_classes(self, facts: ModelFacts) -> int | None:
        return facts.output_shapes[0][1] - 4

    def decode(self, outputs: list[np.ndarray], resize: ResizeInfo, params: DecodeParams) -> Detections:
        pred = np.asarray(outputs[0])[0]  # (4 + nc, N)
        cls_scores = pred[4:]
        class_id = cls_scores.argmax(axis=0)
        scores = check_confidences(cls_scores[class_id, np.arange(cls_scores.shape[1])])
        keep = scores >= params.conf_threshold
        boxes = cxcywh_to_xyxy(pred[:4, keep].T)
        return finish(boxes, scores[keep], class_id[keep], resize, params)
