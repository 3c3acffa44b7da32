"""SSD ``DetectionOutput`` (Intel Open Model Zoo): ``[1, 1, N, 7]`` = image_id, label, conf, x1, y1, x2, y2.

Coordinates are normalised to 0..1 of the network input; rows after the first image_id < 0 are padding.
"""

from __future__ import annotations

import numpy as np

from ovq.core.detections import Detections
from ovq.core.geometry import ResizeInfo
from ovq.model.decoders.base import DecodeParams, ModelFacts, SourcePreprocessing, finish


class SsdDecoder:
    family = "ssd"
    expects = "one output [1, 1, N, 7]: image_id, label, conf, x1, y1, x2, y2 normalised (DetectionOutput)"
    preprocessing = SourcePreprocessing(color="BGR", scale=(1.0, 1.0, 1.0), resize="stretch")
    default_iou = 0.5

    def matches(self, facts: ModelFacts) -> bool:
        shape = facts.single_output
        return shape is not None and len(shape) == 4 and shape[:2] == (1, 1) and shape[3] == 7

    def num_classes(self, facts: ModelFacts) -> int | None:
        return None

    def decode(self, outputs: list[np.ndarray], resize: ResizeInfo, params: DecodeParams) -> Detections:
        rows = np.asarray(outputs[0]).reshape(-1, 7)
        ends = np.nonzero(rows[:, 0] < 0)[0]
        if len(ends):
            rows = rows[: ends[0]]
        h, w = params.input_size
        boxes = rows[:, 3:7].astype(np.float32) * np.array([w, h, w, h], np.float32)
        # DetectionOutput has already run NMS inside the graph.
        return finish(boxes, rows[:, 2].astype(np.float32), rows[:, 1].astype(np.int64), resize, params, run_nms=False)
