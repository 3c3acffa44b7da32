"""End-to-end heads (YOLO26 one-to-one, YOLOv10): ``[1, K, 6]`` = x1, y1, x2, y2, score, class; no NMS."""

from __future__ import annotations

import numpy as np

from ovq.core.detections import Detections
from ovq.core.geometry import ResizeInfo
from ovq.model.decoders.base import DecodeParams, SourcePreprocessing, finish


class YoloEndToEndDecoder:
    family = "yolo_e2e"
    preprocessing = SourcePreprocessing(color="RGB", scale=(255.0, 255.0, 255.0), resize="letterbox")
    default_iou = 0.7

    def matches(self, output_shapes: list[tuple[int, ...]], input_size: tuple[int, int]) -> bool:
        shape = output_shapes[0]
        return len(shape) == 3 and shape[0] == 1 and shape[2] == 6 and shape[1] <= 1000

    def num_classes(self, output_shapes: list[tuple[int, ...]]) -> int | None:
        return None

    def decode(self, outputs: list[np.ndarray], resize: ResizeInfo, params: DecodeParams) -> Detections:
        pred = np.asarray(outputs[0])[0]  # (K, 6)
        return finish(
            pred[:, :4].astype(np.float32),
            pred[:, 4].astype(np.float32),
            pred[:, 5].astype(np.int64),
            resize,
            params,
            run_nms=False,
        )
