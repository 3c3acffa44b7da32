"""Anchor-based YOLO with objectness (YOLOv5, YOLOv7 exports): ``[1, N, 5 + nc]`` then NMS.

Each row is box centre x, y, width, height already decoded in input pixels (the anchors live in the graph),
objectness, then class scores, all sigmoided; score = objectness * class score. N = A anchors x the cells of
every scale. YOLOX's raw ``[1, N, 5 + nc]`` looks the same from outside; the graph tells them apart: this
family claims a model only when the graph holds a ``[1, A, 5 + nc, H, W]`` view per scale and those views
add up to N (see :mod:`ovq.model.decoders.signatures`).
"""

from __future__ import annotations

import numpy as np

from ovq.core.detections import Detections
from ovq.core.geometry import ResizeInfo, cxcywh_to_xyxy
from ovq.model.decoders.base import DecodeParams, ModelFacts, SourcePreprocessing, check_confidences, finish
from ovq.model.decoders.signatures import anchor_grids


class Yolov5Decoder:
    family = "yolov5"
    expects = "one output [1, N, 5 + nc]: cx, cy, w, h in pixels, objectness, class scores (anchor grids in the graph)"
    preprocessing = SourcePreprocessing(color="RGB", scale=(255.0, 255.0, 255.0), resize="letterbox")
    default_iou = 0.45  # YOLOv5's and YOLOv7's detect.py default

    def matches(self, facts: ModelFacts) -> bool:
        shape = facts.single_output
        if shape is None or len(shape) != 3 or shape[0] != 1 or shape[2] < 6 or facts.graph is None:
            return False
        grids = anchor_grids(facts.graph, shape[2])
        return bool(grids) and sum(a * h * w for a, h, w in grids) == shape[1]

    def num_classes(self, facts: ModelFacts) -> int | None:
        return facts.output_shapes[0][2] - 5

    def decode(self, outputs: list[np.ndarray], resize: ResizeInfo, params: DecodeParams) -> Detections:
        pred = np.asarray(outputs[0])[0]  # (N, 5 + nc)
        cls = pred[:, 5:] * pred[:, 4:5]
        class_id = cls.argmax(axis=1)
        scores = check_confidences(np.take_along_axis(cls, class_id[:, None], axis=1)[:, 0])
        keep = scores >= params.conf_threshold
        boxes = cxcywh_to_xyxy(pred[keep, :4])
        return finish(boxes, scores[keep], class_id[keep], resize, params)
