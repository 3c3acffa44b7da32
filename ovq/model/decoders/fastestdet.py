"""FastestDet: ``[1, 5 + nc, H, W]``; ch0 objectness, ch1-2 cell offsets (tanh), ch3-4 w, h (sigmoid,
relative to the image), ch5.. class scores (softmaxed). score = obj^0.6 * cls^0.4, then NMS.
FastestDet predicts on one stride-16 grid, so H and W are the input's over 16.
"""

from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from ovq.core.detections import Detections
from ovq.core.geometry import ResizeInfo, cxcywh_to_xyxy
from ovq.model.decoders.base import DecodeParams, ModelFacts, SourcePreprocessing, check_confidences, finish
from ovq.model.decoders.graph_nms import GraphCandidates, span


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class FastestDetDecoder:
    family = "fastestdet"
    expects = "one output [1, 5 + nc, H/16, W/16]: objectness, offsets, size, class scores per stride-16 cell"
    preprocessing = SourcePreprocessing(color="BGR", scale=(255.0, 255.0, 255.0), resize="stretch")
    default_iou = 0.45

    def matches(self, facts: ModelFacts) -> bool:
        shape = facts.single_output
        if shape is None or len(shape) != 4 or shape[0] != 1 or shape[1] < 6:
            return False
        h, w = facts.input_size
        return (shape[2], shape[3]) == (h // 16, w // 16)

    def num_classes(self, facts: ModelFacts) -> int | None:
        return facts.output_shapes[0][1] - 5

    def decode(self, outputs: list[np.ndarray], resize: ResizeInfo, params: DecodeParams) -> Detections:
        pred = np.asarray(outputs[0])[0]  # (5 + nc, H, W)
        _, gh, gw = pred.shape
        flat = pred.reshape(pred.shape[0], -1)  # (5 + nc, H*W)
        obj = check_confidences(flat[0])  # clipped to [0, 1]
        # score = obj^0.6 * cls^0.4 <= obj^0.6 (class scores are softmaxed): other cells cannot reach the threshold
        idx = np.flatnonzero(obj ** 0.6 >= params.conf_threshold)
        f = flat[:, idx]  # (5 + nc, candidates); finish() checks and thresholds the scores
        cls = f[5:]
        class_id = cls.argmax(axis=0)
        cls_score = cls[class_id, np.arange(len(idx))]
        scores = (obj[idx] ** 0.6) * (cls_score.clip(0, None) ** 0.4)
        gy, gx = np.divmod(idx, gw)
        h, w = params.input_size
        cx = (np.tanh(f[1]) + gx) / gw * w
        cy = (np.tanh(f[2]) + gy) / gh * h
        bw = _sigmoid(f[3]) * w
        bh = _sigmoid(f[4]) * h
        boxes = cxcywh_to_xyxy(np.stack([cx, cy, bw, bh], axis=1))
        return finish(boxes, scores, class_id, resize, params)

    def graph_decode(self, output: ov.Output, params: DecodeParams) -> GraphCandidates:
        """:meth:`decode` in OpenVINO operations, for :func:`~ovq.model.decoders.graph_nms.nms_variant`."""
        c, gh, gw = (int(d) for d in output.get_shape()[1:])
        h, w = params.input_size
        flat = ops.reshape(output, ops.constant(np.array([c, gh * gw], np.int64)), False)  # (5 + nc, H*W)

        def rows(start: int, stop: int) -> ov.Output:
            return span(flat, start, stop, 0)

        best = ops.topk(rows(5, c), ops.constant(np.int64(1)), 0, "max", "none", "i32")  # (1, H*W) each
        obj = ops.clamp(rows(0, 1), 0.0, 3.0e38)  # not clipped to 1: a score over 1 is FinalBoxes' ModelError
        score = ops.multiply(ops.power(obj, ops.constant(np.float32(0.6))),
                             ops.power(ops.clamp(best.output(0), 0.0, 3.0e38), ops.constant(np.float32(0.4))))
        gy, gx = np.divmod(np.arange(gh * gw, dtype=np.float32), gw)
        cx = ops.multiply(ops.add(ops.tanh(rows(1, 2)), ops.constant(gx[None])), ops.constant(np.float32(w / gw)))
        cy = ops.multiply(ops.add(ops.tanh(rows(2, 3)), ops.constant(gy[None])), ops.constant(np.float32(h / gh)))
        half_w = ops.multiply(ops.sigmoid(rows(3, 4)), ops.constant(np.float32(w / 2)))
        half_h = ops.multiply(ops.sigmoid(rows(4, 5)), ops.constant(np.float32(h / 2)))
        corners = ops.concat([ops.subtract(cx, half_w), ops.subtract(cy, half_h), ops.add(cx, half_w),
                              ops.add(cy, half_h)], 0)  # (4, H*W)
        squeeze = ops.constant(np.array([0], np.int64))
        return GraphCandidates(
            boxes=ops.transpose(corners, ops.constant(np.array([1, 0], np.int64))).output(0),
            scores=ops.squeeze(score, squeeze).output(0),
            class_id=ops.squeeze(best.output(1), squeeze).output(0),
            num_classes=c - 5,
        )
