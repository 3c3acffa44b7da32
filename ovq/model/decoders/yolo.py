"""Ultralytics YOLOv8 / YOLO11 / YOLO26 one-to-many head: ``[1, 4 + nc, N]`` then NMS.

Rows 0..3 are box centre x, y, width, height in input pixels; the rest are class scores (sigmoided).
YOLO26 gives this head when Ultralytics exports it with its default ``nms=None`` (e.g. ``format=onnx``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from ovq.core.detections import Detections
from ovq.core.geometry import ResizeInfo, cxcywh_to_xyxy
from ovq.model.decoders.base import DecodeParams, ModelFacts, SourcePreprocessing, check_confidences, finish
from ovq.model.decoders.graph_nms import GraphCandidates, span
from ovq.model.decoders.signatures import joined_on

STRIDES = (8, 16, 32)


def level_cells(input_size: tuple[int, int], metadata: Mapping[str, str]) -> list[int]:
    """The cells of each level of the head for an input of ``input_size``, one candidate a cell: strides 8, 16, 32
    (and 64 when the exporter says the largest stride is, as for a P6 model)."""
    h, w = input_size
    return [-(-h // s) * -(-w // s) for s in (*STRIDES, 64) if s in STRIDES or metadata.get("stride") == "64"]


def _candidates_last(facts: ModelFacts) -> bool | None:
    """Whether the output is [1, 4 + nc, N] rather than the same values as [1, N, 4 + nc]. The candidate count
    the input size implies says which axis is N; small inputs with many classes make both axes as long (YOLOv8n,
    80 classes, at 64x64: [1, 84, 84]), and then the graph says (the 4 box rows and the class rows joined on axis 1,
    or the levels' cells on axis 2); without the graph (a served model) ``None``: its IR was told apart when it was
    converted."""
    _, rows, n = facts.single_output or (0, 0, 0)
    cells = level_cells(facts.input_size, facts.metadata)
    if rows == sum(cells) == n:
        if facts.graph is None:
            return None
        joined = joined_on(facts.graph)
        return joined is not None and (joined == (1, [4, rows - 4]) or joined == (2, cells))
    if sum(cells) in (rows, n):
        return n == sum(cells)
    return rows < n  # strides other than 8/16/32: the longer axis is the candidates'


class YoloDecoder:
    family = "yolo"
    expects = ("one output [1, 4 + nc, N], N the cells over strides 8/16/32 (else N > 4 + nc): cx, cy, w, h in pixels, "
               "then class scores")
    preprocessing = SourcePreprocessing(color="RGB", scale=(255.0, 255.0, 255.0), resize="letterbox")
    default_iou = 0.7

    def matches(self, facts: ModelFacts) -> bool | None:
        shape = facts.single_output
        if shape is None or len(shape) != 3 or shape[0] != 1 or shape[1] < 5:
            return False
        # an Ultralytics export says which head it has: not this one when end-to-end or RT-DETR
        if facts.metadata.get("end2end") == "True" or facts.metadata.get("head") == "RTDETRDecoder":
            return False
        return _candidates_last(facts)

    def num_classes(self, facts: ModelFacts) -> int | None:
        return facts.output_shapes[0][1] - 4

    def ambiguity(self, facts: ModelFacts) -> str | None:
        """Why :meth:`matches` could not tell the layout, or ``None``: the output is as long on both axes as the
        candidates the input size implies and its graph does not show which axis holds them."""
        shape = facts.single_output
        if shape is None or len(shape) != 3 or shape[0] != 1 or facts.graph is None or self.matches(facts):
            return None
        _, rows, n = shape
        if not rows == sum(level_cells(facts.input_size, facts.metadata)) == n:
            return None
        h, w = facts.input_size
        return (f"the output [1, {rows}, {n}] is ambiguous for the yolo family: a {h}x{w} input gives {n} "
                "candidates over strides 8/16/32, as many as both axes hold, and the graph does not show which axis "
                f"holds them (Ultralytics' head joins its 4 box and {rows - 4} class rows on axis 1); convert or "
                "export the model at another input size, where the axes differ (ovq convert MODEL.pt --imgsz 640, "
                "or --imgsz for an ONNX of dynamic size; Ultralytics' export(imgsz=640))")

    def decode(self, outputs: list[np.ndarray], resize: ResizeInfo, params: DecodeParams) -> Detections:
        pred = np.asarray(outputs[0])[0]  # (4 + nc, N)
        # the best score of every candidate, then the class of those over the threshold only: argmax down the
        # class axis of all 80 x 8400 cost 0.63 ms a frame, max 0.05 (YOLOv8n at 640; EPYC Zen 5, one thread)
        scores = check_confidences(pred[4:].max(axis=0))
        keep = np.flatnonzero(scores >= params.conf_threshold)
        class_id = pred[4:, keep].argmax(axis=0)
        boxes = cxcywh_to_xyxy(pred[:4, keep].T)
        return finish(boxes, scores[keep], class_id, resize, params)

    def graph_decode(self, output: ov.Output, params: DecodeParams) -> GraphCandidates:
        """:meth:`decode` in OpenVINO operations, for :func:`~ovq.model.decoders.graph_nms.nms_variant`."""
        c = int(output.get_shape()[1])
        pred = ops.squeeze(output, ops.constant(np.array([0], np.int64)))  # (4 + nc, N)
        best = ops.topk(span(pred, 4, c, 0), ops.constant(np.int64(1)), 0, "max", "none", "i32")  # (1, N) each
        centre, half = span(pred, 0, 2, 0), ops.multiply(span(pred, 2, 4, 0), ops.constant(np.float32(0.5)))
        corners = ops.concat([ops.subtract(centre, half), ops.add(centre, half)], 0)  # (4, N)
        squeeze = ops.constant(np.array([0], np.int64))
        return GraphCandidates(
            boxes=ops.transpose(corners, ops.constant(np.array([1, 0], np.int64))).output(0),
            scores=ops.squeeze(best.output(0), squeeze).output(0),
            class_id=ops.squeeze(best.output(1), squeeze).output(0),
            num_classes=c - 4,
        )
