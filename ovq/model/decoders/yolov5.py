"""Anchor-based YOLO with objectness (YOLOv5, YOLOv7 exports): ``[1, N, 5 + nc]`` then NMS.

Each row is box centre x, y, width, height already decoded in input pixels (the anchors live in the graph),
objectness, then class scores, all sigmoided; score = objectness * class score. N = A anchors x the cells of
every scale. YOLOX's raw ``[1, N, 5 + nc]`` looks the same from outside; the graph tells them apart: this
family claims a model only when the graph holds a ``[1, A, 5 + nc, H, W]`` view per scale and those views
add up to N (see :mod:`ovq.model.decoders.signatures`).
"""

from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from ovq.core.detections import Detections
from ovq.core.geometry import ResizeInfo, cxcywh_to_xyxy
from ovq.model.decoders.base import DecodeParams, ModelFacts, SourcePreprocessing, check_confidences, finish
from ovq.model.decoders.graph_nms import GraphCandidates, over_threshold, span
from ovq.model.decoders.signatures import anchor_grids


class Yolov5Decoder:
    family = "yolov5"
    expects = "one output [1, N, 5 + nc]: cx, cy, w, h in pixels, objectness, class scores (anchor grids in the graph)"
    preprocessing = SourcePreprocessing(color="RGB", scale=(255.0, 255.0, 255.0), resize="letterbox")
    default_iou = 0.45  # YOLOv5's and YOLOv7's detect.py default

    def matches(self, facts: ModelFacts) -> bool | None:
        shape = facts.single_output
        if shape is None or len(shape) != 3 or shape[0] != 1 or shape[2] < 6:
            return False
        if facts.graph is None:
            return None  # only the graph tells (a served model)
        grids = anchor_grids(facts.graph, shape[2])
        return bool(grids) and sum(a * h * w for a, h, w in grids) == shape[1]

    def num_classes(self, facts: ModelFacts) -> int | None:
        return facts.output_shapes[0][2] - 5

    def decode(self, outputs: list[np.ndarray], resize: ResizeInfo, params: DecodeParams) -> Detections:
        pred = np.asarray(outputs[0])[0]  # (N, 5 + nc)
        # score = objectness * class score <= objectness: only the rows whose objectness reaches the threshold are
        # scored (as YOLOX's decode; YOLOv5's own NMS does the same with its conf_thres)
        obj = check_confidences(pred[:, 4])
        p = pred[obj >= params.conf_threshold]
        cls = p[:, 5:] * p[:, 4:5]
        class_id = cls.argmax(axis=1)
        scores = np.take_along_axis(cls, class_id[:, None], axis=1)[:, 0]
        return finish(cxcywh_to_xyxy(p[:, :4]), scores, class_id, resize, params)

    def graph_decode(self, output: ov.Output, params: DecodeParams) -> GraphCandidates:
        """:meth:`decode` in OpenVINO operations, for :func:`~ovq.model.decoders.graph_nms.nms_variant`; like it,
        only the rows whose objectness reaches the threshold go on."""
        c = int(output.get_shape()[2])
        pred = ops.squeeze(output, ops.constant(np.array([0], np.int64)))  # (N, 5 + nc)
        rows = over_threshold(ops.squeeze(span(pred, 4, 5, 1), ops.constant(np.array([1], np.int64))), params)
        pred = ops.gather(pred, rows, ops.constant(np.int64(0)))  # (candidates, 5 + nc)
        # not clipped: an objectness over 1 (raw logits: not this family) gives scores over 1, FinalBoxes' ModelError
        scored = ops.multiply(span(pred, 5, c, 1), span(pred, 4, 5, 1))
        best = ops.topk(scored, ops.constant(np.int64(1)), 1, "max", "none", "i32")  # (candidates, 1) each
        centre, half = span(pred, 0, 2, 1), ops.multiply(span(pred, 2, 4, 1), ops.constant(np.float32(0.5)))
        squeeze = ops.constant(np.array([1], np.int64))
        return GraphCandidates(
            boxes=ops.concat([ops.subtract(centre, half), ops.add(centre, half)], 1).output(0),
            scores=ops.squeeze(best.output(0), squeeze).output(0),
            class_id=ops.squeeze(best.output(1), squeeze).output(0),
            num_classes=c - 5,
        )
