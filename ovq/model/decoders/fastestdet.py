"""FastestDet: ``[1, 5 + nc, H, W]``; ch0 objectness, ch1-2 cell offsets (tanh), ch3-4 w, h (sigmoid,
relative to the image), ch5.. class scores (softmaxed). score = obj^0.6 * cls^0.4, then NMS.
FastestDet predicts on one stride-16 grid, so H and W are the input's over 16.
"""

from __future__ import annotations

import numpy as np

from ovq.core.detections import Detections
from ovq.core.geometry import ResizeInfo, cxcywh_to_xyxy
from ovq.model.decoders.base import DecodeParams, ModelFacts, SourcePreprocessing, check_confidences, finish


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
