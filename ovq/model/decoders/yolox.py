"""YOLOX (Megvii export): ``[1, N, 5 + nc]`` raw per-cell outputs over strides 8/16/32, then NMS.

xy = (raw_xy + grid) * stride, wh = exp(raw_wh) * stride, score = objectness * class score.
YOLOv5/v7 exports have the same ``[1, N, 5 + nc]`` shape with boxes already decoded; their graph shows an
anchor-based head (see :mod:`ovq.model.decoders.signatures`), YOLOX's does not, so YOLOX claims a model only
when the count N is its own and no anchor grid is in the graph.

``yolox_decoded``: YOLOX exported with its head's own decoding (``decode_in_inference``, the head's default, which
YOLOX's ``tools/export_onnx.py`` turns off unless given ``--decode_in_inference``): the same shape, boxes already
cx, cy, w, h in input pixels (an ``Exp`` in the graph), decoded as YOLOv5's rows with YOLOX's preprocessing.
"""

from __future__ import annotations

import functools

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from ovq.core.detections import Detections
from ovq.core.geometry import ResizeInfo, cxcywh_to_xyxy
from ovq.model.decoders.base import DecodeParams, ModelFacts, SourcePreprocessing, check_confidences, finish
from ovq.model.decoders.graph_nms import GraphCandidates, over_threshold, span
from ovq.model.decoders.signatures import anchor_grids, computed_with, output_parts
from ovq.model.decoders.yolov5 import Yolov5Decoder

STRIDES = (8, 16, 32)


@functools.lru_cache(maxsize=8)
def grid_cells(input_size: tuple[int, int], strides: tuple[int, ...] = STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """Grid (x, y) of every cell and its stride, in the export's order (stride by stride, row-major)."""
    h, w = input_size
    grids, cell_strides = [], []
    for s in strides:
        gh, gw = h // s, w // s
        ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        grids.append(np.stack([xs, ys], axis=-1).reshape(-1, 2))
        cell_strides.append(np.full((gh * gw, 1), s))
    return np.concatenate(grids).astype(np.float32), np.concatenate(cell_strides).astype(np.float32)


def _yolox_rows(facts: ModelFacts) -> bool:
    """One output [1, N, 5 + nc] with N the cells over strides 8/16/32, and no Ultralytics metadata."""
    shape = facts.single_output
    if shape is None or len(shape) != 3 or shape[0] != 1 or shape[2] < 6:
        return False
    h, w = facts.input_size
    return shape[1] == sum((h // s) * (w // s) for s in STRIDES) and "task" not in facts.metadata  # task: Ultralytics


def _boxes_apart(graph: ov.Model) -> bool:
    """Whether the output joins 4-wide boxes to the scores on its last axis (YOLOv6: [boxes in pixels, ones,
    scores]); raw YOLOX joins its levels there, the widest first, never 4 wide."""
    parts = output_parts(graph)
    return bool(parts) and parts[0][0] == 4


class YoloxDecoder:
    family = "yolox"
    expects = "one output [1, N, 5 + nc], N = cells over strides 8/16/32, raw offsets (no anchor grid in the graph)"
    preprocessing = SourcePreprocessing(
        color="BGR", scale=(1.0, 1.0, 1.0), resize="letterbox", letterbox_center=False, pad_value=114
    )
    default_iou = 0.65

    def matches(self, facts: ModelFacts) -> bool:
        if not _yolox_rows(facts):
            return False
        return facts.graph is None or not (anchor_grids(facts.graph, facts.output_shapes[0][2])
                                           or computed_with(facts.graph, "Exp", "Softmax") or _boxes_apart(facts.graph))

    def num_classes(self, facts: ModelFacts) -> int | None:
        return facts.output_shapes[0][2] - 5

    def decode(self, outputs: list[np.ndarray], resize: ResizeInfo, params: DecodeParams) -> Detections:
        pred = np.asarray(outputs[0])[0]  # (N, 5 + nc)
        grid, stride = grid_cells(params.input_size)
        if len(grid) != pred.shape[0]:
            raise ValueError(f"YOLOX output has {pred.shape[0]} cells, expected {len(grid)} for {params.input_size}")
        # score = objectness * class score <= objectness: only cells whose objectness reaches the threshold can
        # hold a detection, so the class scores of the others are never touched (a few dozen of 3549 cells)
        obj = check_confidences(pred[:, 4])
        cells = np.flatnonzero(obj >= params.conf_threshold)
        p = pred[cells]
        cls = p[:, 5:] * p[:, 4:5]
        class_id = cls.argmax(axis=1)
        scores = check_confidences(cls[np.arange(len(cells)), class_id])
        keep = scores >= params.conf_threshold
        p, cells = p[keep], cells[keep]
        g, s = grid[cells], stride[cells]
        xy = (p[:, :2] + g) * s
        wh = np.exp(np.clip(p[:, 2:4], -20, 20)) * s
        boxes = cxcywh_to_xyxy(np.concatenate([xy, wh], axis=1))
        return finish(boxes, scores[keep], class_id[keep], resize, params)

    def graph_decode(self, output: ov.Output, params: DecodeParams) -> GraphCandidates:
        """:meth:`decode` in OpenVINO operations, for :func:`~ovq.model.decoders.graph_nms.nms_variant`; like it,
        only the cells whose objectness reaches the threshold go on (score = objectness * class score)."""
        n, c = (int(d) for d in output.get_shape()[1:])
        grid, stride = grid_cells(tuple(params.input_size))
        if len(grid) != n:
            raise ValueError(f"YOLOX output has {n} cells, expected {len(grid)} for {tuple(params.input_size)}")
        pred = ops.squeeze(output, ops.constant(np.array([0], np.int64)))  # (N, 5 + nc)
        cells = over_threshold(ops.squeeze(span(pred, 4, 5, 1), ops.constant(np.array([1], np.int64))), params)
        zero = ops.constant(np.int64(0))
        pred = ops.gather(pred, cells, zero)  # (candidates, 5 + nc)
        grid, stride = ops.gather(ops.constant(grid), cells, zero), ops.gather(ops.constant(stride), cells, zero)

        def cols(start: int, stop: int) -> ov.Output:
            return span(pred, start, stop, 1)

        best = ops.topk(cols(5, c), ops.constant(np.int64(1)), 1, "max", "none", "i32")  # (N, 1) each
        # objectness not clipped to 1: a score over 1 (raw logits: not YOLOX) is FinalBoxes' ModelError, as in decode
        score = ops.multiply(ops.clamp(cols(4, 5), 0.0, 3.0e38), best.output(0))
        xy = ops.multiply(ops.add(cols(0, 2), grid), stride)
        half = ops.multiply(ops.exp(ops.clamp(cols(2, 4), -20.0, 20.0)), ops.multiply(stride, ops.constant(np.float32(0.5))))
        squeeze = ops.constant(np.array([1], np.int64))
        return GraphCandidates(
            boxes=ops.concat([ops.subtract(xy, half), ops.add(xy, half)], 1).output(0),
            scores=ops.squeeze(score, squeeze).output(0),
            class_id=ops.squeeze(best.output(1), squeeze).output(0),
            num_classes=c - 5,
        )


class YoloxDecodedDecoder(Yolov5Decoder):
    """YOLOX whose graph decodes its boxes (its rows are YOLOv5's: boxes in pixels, objectness, class scores)."""

    family = "yolox_decoded"
    expects = ("one output [1, N, 5 + nc], N = cells over strides 8/16/32, boxes decoded in the graph (an Exp): "
               "cx, cy, w, h in pixels, objectness, class scores")
    preprocessing = YoloxDecoder.preprocessing
    default_iou = YoloxDecoder.default_iou

    def matches(self, facts: ModelFacts) -> bool | None:
        if not _yolox_rows(facts):
            return False
        if facts.graph is None:
            return None  # only the graph tells (a served model)
        return (computed_with(facts.graph, "Exp") and not computed_with(facts.graph, "Softmax")
                and not anchor_grids(facts.graph, facts.output_shapes[0][2]))
