"""RT-DETR as Ultralytics exports it: ``[1, K, 6]`` = cx, cy, w, h normalised to 0..1, score, class; no NMS.

The decoder head picks its top K (query, class) pairs in the graph; boxes are fractions of the input, which
Ultralytics fills by stretching the image (no letterbox), so they scale straight to the original image.
Told apart from YOLO26's end-to-end ``[1, K, 6]`` (pixels, x1 y1 x2 y2) by the exporter's metadata
(``head: RTDETRDecoder``) or by the graph: the box part of the output comes out of a Sigmoid.
"""

from __future__ import annotations

import numpy as np

from ovq.core.detections import Detections
from ovq.core.errors import ModelError
from ovq.core.geometry import ResizeInfo, cxcywh_to_xyxy
from ovq.model.decoders.base import CONFIDENCE_SLACK, DecodeParams, ModelFacts, SourcePreprocessing, finish
from ovq.model.decoders.signatures import boxes_normalised
from ovq.model.detection_list import is_padded_list


class RtdetrDecoder:
    family = "rtdetr"
    expects = "one output [1, K, 6]: cx, cy, w, h normalised (out of a Sigmoid), score, class"
    preprocessing = SourcePreprocessing(color="RGB", scale=(255.0, 255.0, 255.0), resize="stretch")
    default_iou = 0.7  # unused: the head needs no NMS
    no_nms = "its decoder head picks its top boxes in the graph"

    def matches(self, facts: ModelFacts) -> bool | None:
        shape = facts.single_output
        if shape is None or len(shape) != 3 or shape[0] != 1 or shape[2] != 6:
            return False
        normalised = boxes_normalised(facts.graph, facts.metadata)
        if normalised is None and facts.graph is None and is_padded_list(None, facts.output_names) is not True:
            return None  # served, and neither the metadata nor the names say: its IR named the family
        return normalised is True

    def num_classes(self, facts: ModelFacts) -> int | None:
        return None

    def decode(self, outputs: list[np.ndarray], resize: ResizeInfo, params: DecodeParams) -> Detections:
        pred = np.asarray(outputs[0])[0].astype(np.float32)  # (K, 6)
        boxes = pred[:, :4]
        # out of a Sigmoid: a served model is known by its metadata alone, and pixel boxes there are another family's
        if boxes.size and not (boxes.min() >= -CONFIDENCE_SLACK and boxes.max() <= 1 + CONFIDENCE_SLACK):
            raise ModelError(f"box values {boxes.min():.3g}..{boxes.max():.3g} are not in [0, 1], as RT-DETR's "
                             "normalised boxes are: the outputs do not fit this family")
        h, w = params.input_size
        boxes = cxcywh_to_xyxy(pred[:, :4] * np.array([w, h, w, h], np.float32))
        return finish(boxes, pred[:, 4], pred[:, 5].astype(np.int64), resize, params, run_nms=False)
