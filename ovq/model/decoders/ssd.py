"""SSD ``DetectionOutput`` (Intel Open Model Zoo): ``[1, 1, N, 7]`` = image_id, label, conf, x1, y1, x2, y2.

Coordinates are normalised to 0..1 of the network input; rows after the first image_id < 0 are padding.
Labels count the background: ``DetectionOutput`` has ``num_classes`` including it and never outputs its
``background_label_id`` (0 in Open Model Zoo, so person-detection-retail-0013's person is label 1). Conversion
reads both from the graph (:meth:`SsdDecoder.background_id`, stored as ``ModelInfo.background_id``) and decoding
moves the labels above the background down one: class ids are 0..K-1 for K named classes, as in every family.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ovq.core.detections import Detections
from ovq.core.geometry import ResizeInfo
from ovq.model.decoders.base import DecodeParams, ModelFacts, SourcePreprocessing, finish


def _detection_output(graph: Any) -> tuple[int, int] | None:
    """(num_classes counting the background, background_label_id) of the graph's one DetectionOutput, or None."""
    if graph is None:
        return None
    nodes = [op for op in graph.get_ops() if op.get_type_name() == "DetectionOutput"]
    if len(nodes) != 1:
        return None
    attrs = nodes[0].get_attributes()
    classes = attrs.get("num_classes")
    if classes is None:  # opset8 leaves it to the shapes: class predictions over (proposals / prior box size)
        preds, priors = nodes[0].get_input_partial_shape(1), nodes[0].get_input_partial_shape(2)
        if not (preds.is_static and priors.is_static):
            return None
        n_priors = priors[2].get_length() // (4 if attrs.get("normalized", True) else 5)
        if not n_priors or preds[1].get_length() % n_priors:
            return None
        classes = preds[1].get_length() // n_priors
    return int(classes), int(attrs.get("background_label_id", -1))


class SsdDecoder:
    family = "ssd"
    expects = "one output [1, 1, N, 7]: image_id, label, conf, x1, y1, x2, y2 normalised (DetectionOutput)"
    preprocessing = SourcePreprocessing(color="BGR", scale=(1.0, 1.0, 1.0), resize="stretch")
    default_iou = 0.5  # unused
    no_nms = "its DetectionOutput ran NMS inside the graph"

    def matches(self, facts: ModelFacts) -> bool:
        shape = facts.single_output
        return shape is not None and len(shape) == 4 and shape[:2] == (1, 1) and shape[3] == 7

    def num_classes(self, facts: ModelFacts) -> int | None:
        """The classes the graph's DetectionOutput detects, not counting its background."""
        found = _detection_output(facts.graph)
        if found is None:
            return None
        classes, background = found
        return classes - 1 if 0 <= background < classes else classes

    def background_id(self, facts: ModelFacts) -> int | None:
        """The label the graph's DetectionOutput reserves for the background, or None (none, or no graph)."""
        found = _detection_output(facts.graph)
        return found[1] if found is not None and 0 <= found[1] < found[0] else None

    def decode(self, outputs: list[np.ndarray], resize: ResizeInfo, params: DecodeParams) -> Detections:
        rows = np.asarray(outputs[0]).reshape(-1, 7)
        ends = np.nonzero(rows[:, 0] < 0)[0]
        if len(ends):
            rows = rows[: ends[0]]
        labels = rows[:, 1].astype(np.int64)
        background = params.background_id
        if background is not None:
            kept = labels != background  # DetectionOutput never outputs it; a model that did would be dropped here
            rows, labels = rows[kept], labels[kept]
            labels -= labels > background
        h, w = params.input_size
        boxes = rows[:, 3:7].astype(np.float32) * np.array([w, h, w, h], np.float32)
        # DetectionOutput has already run NMS inside the graph.
        return finish(boxes, rows[:, 2].astype(np.float32), labels, resize, params, run_nms=False)
