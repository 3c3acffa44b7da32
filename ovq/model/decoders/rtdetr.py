"""RT-DETR as Ultralytics exports it: ``[1, K, 6]`` = cx, cy, w, h normalised to 0..1, score, class; no NMS.

The decoder head picks its top K (query, class) pairs in the graph; boxes are fractions of the input, which
Ultralytics fills by stretching the image (no letterbox), so they scale straight to the original image.
Told apart from YOLO26's end-to-end ``[1, K, 6]`` (pixels, x1 y1 x2 y2) by the exporter's metadata
(``head: RTDETRDecoder``) or by the graph: the box part of the output comes out of a Sigmoid.
"""

from __future__ import annotations

import numpy as np

from ovq.core.detections import Detections
from ovq.core.geometry import ResizeInfo, cxcywh_to_xyxy
from ovq.model.decoders.base import DecodeParams, ModelFacts, SourcePreprocessing, finish
from ovq.model.decoders.signatures import boxes_normalised


class RtdetrDecoder:
    family = "rtdetr"
    expects = "one output [1, K, 6]: cx, cy, w, h normalised (out of a Sigmoid), score, class"
    preprocessing = SourcePreprocessing(color="RGB", scale=(255.0, 255.0, 255.0), resize="stretch")
    default_iou = 0.7  # unused: the head needs no NMS
    no_nms = "its decoder head picks its top boxes in the graph"

    def matches(self, facts: ModelFacts) -> bool:
        shape = facts.single_output
        if shape is None or len(shape) != 3 or shape[0] != 1 or shape[2] != 6:
            return False
        return boxes_normalised(facts.graph, facts.metadata) is True

    def num_classes(self, facts: ModelFacts) -> int | None:
        return None

    def decode(self, outputs: list[np.ndarray], resize: ResizeInfo, params: DecodeParams) -> Detections:
        pred = np.asarray(outputs[0])[0].astype(np.float32)  # (K, 6)
        h, w = params.input_size
        boxes = cxcywh_to_xyxy(pred[:, :4] * np.array([w, h, w, h], np.float32))
        return finish(boxes, pred[:, 4], pred[:, 5].astype(np.int64), resize, params, run_nms=False)
