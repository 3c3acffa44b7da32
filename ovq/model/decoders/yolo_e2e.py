"""End-to-end heads (YOLO26 one-to-one, YOLOv10): ``[1, K, 6]`` = x1, y1, x2, y2 in pixels, score, class; no NMS.

YOLO26 gives this head when exported with ``nms=False`` (what ``ovq convert x.pt`` asks Ultralytics for).
RT-DETR's export has the same shape with normalised centre boxes; the graph (boxes out of a Sigmoid) or the
exporter's metadata tells them apart.
"""

from __future__ import annotations

import numpy as np

from ovq.core.detections import Detections
from ovq.core.errors import ModelError
from ovq.core.geometry import ResizeInfo
from ovq.model.decoders.base import DecodeParams, ModelFacts, SourcePreprocessing, finish
from ovq.model.decoders.signatures import boxes_normalised
from ovq.model.detection_list import is_padded_list


class YoloEndToEndDecoder:
    family = "yolo_e2e"
    expects = "one output [1, K, 6]: x1, y1, x2, y2 in pixels, score, class (boxes not out of a Sigmoid)"
    preprocessing = SourcePreprocessing(color="RGB", scale=(255.0, 255.0, 255.0), resize="letterbox")
    default_iou = 0.7  # unused
    no_nms = "its one-to-one head gives one box per object, or its export ran NMS in the graph"

    def matches(self, facts: ModelFacts) -> bool | None:
        shape = facts.single_output
        if shape is None or len(shape) != 3 or shape[0] != 1 or shape[2] != 6 or shape[1] > 1000:
            return False
        # a torchvision list ovq padded to this shape is the torchvision family's
        normalised, padded = boxes_normalised(facts.graph, facts.metadata), is_padded_list(facts.graph, facts.output_names)
        if normalised or padded:
            return False
        return None if normalised is None and facts.graph is None else True  # served, and nothing says: its IR's word

    def num_classes(self, facts: ModelFacts) -> int | None:
        return None

    def decode(self, outputs: list[np.ndarray], resize: ResizeInfo, params: DecodeParams) -> Detections:
        pred = np.asarray(outputs[0])[0]  # (K, 6)
        kept = pred[pred[:, 4] >= params.conf_threshold, :4]
        # boxes of a whole image all within a pixel of its corner are normalised ones (RT-DETR's), not pixels: a
        # served model is known by its metadata alone
        if len(kept) and min(params.input_size) > 1 and np.abs(kept).max() <= 1.0:
            raise ModelError(f"all {len(kept)} boxes over the threshold lie within 1 pixel of the corner (values "
                             "0..1): normalised boxes, not pixels; the outputs do not fit this family")
        return finish(
            pred[:, :4].astype(np.float32),
            pred[:, 4].astype(np.float32),
            pred[:, 5].astype(np.int64),
            resize,
            params,
            run_nms=False,
        )
