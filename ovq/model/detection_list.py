"""Models that end in their own NMS and output a list of detections as long as the image needs.

torchvision's detection models (SSD, SSDlite, RetinaNet, FCOS, Faster R-CNN) export to ONNX as three outputs
``boxes [N, 4]`` (x1, y1, x2, y2 in input pixels), ``scores [N]`` and ``labels [N]`` (integers, 0 the
background), where N is known only after inference. ovq's families read fixed-size outputs, and a server's
or a quantizer's tooling wants them too, so :func:`pad_detection_list` appends to the graph the few ops that
put the list into one ``[1, K, 6]`` output (x1, y1, x2, y2, score, label), padded with zero-score rows: the
``torchvision`` family decodes it. K is the exporter's own bound on N when the graph has one (torchvision's
``detections_per_img``, 300 by default), else :data:`DEFAULT_ROWS`; a longer list keeps its first K rows
(torchvision sorts them by score).
"""

from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops

OUTPUT_NAME = "ovq_detection_list"  # the appended output's tensor name: how the family knows the model
DEFAULT_ROWS = 300
_MAX_BOUND = 10_000  # a larger "bound" is no bound (an unbounded dimension reports a huge one)


def detection_list_outputs(model: ov.Model) -> tuple[int, int, int] | None:
    """(boxes, scores, labels) output indices when the outputs are one list of detections of data-dependent
    length, as above; ``None`` otherwise."""
    if len(model.outputs) != 3:
        return None
    boxes = scores = labels = None
    for i, out in enumerate(model.outputs):
        shape, kind = out.get_partial_shape(), out.get_element_type()
        if shape.rank.is_dynamic or shape[0].is_static:
            return None
        rank = shape.rank.get_length()
        if rank == 2 and shape[1].is_static and shape[1].get_length() == 4 and kind.is_real():
            boxes = i
        elif rank == 1 and kind.is_integral():
            labels = i
        elif rank == 1 and kind.is_real():
            scores = i
    if boxes is None or scores is None or labels is None:
        return None
    return boxes, scores, labels


def rows_of(model: ov.Model, index: int) -> int:
    """How many rows the padded output gets: the graph's bound on the list's length, else DEFAULT_ROWS."""
    bound = model.outputs[index].get_partial_shape()[0].get_max_length()
    return int(bound) if 0 < bound <= _MAX_BOUND else DEFAULT_ROWS


def pad_detection_list(model: ov.Model) -> ov.Model | None:
    """``model`` with its detection list as one static ``[1, K, 6]`` output (see the module doc), or ``None``
    when its outputs are not such a list."""
    found = detection_list_outputs(model)
    if found is None:
        return None
    b, s, c = found
    k = rows_of(model, b)
    model = model.clone()
    produced = [r.input_value(0) for r in model.get_results()]  # what feeds each Result, in output order
    boxes = ops.convert(produced[b], ov.Type.f32)
    scores = ops.unsqueeze(ops.convert(produced[s], ov.Type.f32), ops.constant(np.array([1], np.int64)))
    labels = ops.unsqueeze(ops.convert(produced[c], ov.Type.f32), ops.constant(np.array([1], np.int64)))
    rows = ops.concat([boxes, scores, labels], axis=1)  # [N, 6]
    n = ops.gather(ops.shape_of(rows, ov.Type.i64), ops.constant(np.array([0], np.int64)), ops.constant(0))
    missing = ops.maximum(ops.subtract(ops.constant(np.array([k], np.int64)), n), ops.constant(np.array([0], np.int64)))
    pads_end = ops.concat([missing, ops.constant(np.array([0], np.int64))], axis=0)
    padded = ops.pad(rows, ops.constant(np.array([0, 0], np.int64)), pads_end, "constant", ops.constant(np.float32(0)))
    first = ops.slice(padded, ops.constant(np.array([0], np.int64)), ops.constant(np.array([k], np.int64)),
                      ops.constant(np.array([1], np.int64)), ops.constant(np.array([0], np.int64)))
    out = ops.reshape(first, ops.constant(np.array([1, k, 6], np.int64)), special_zero=False)
    out.output(0).set_names({OUTPUT_NAME})
    return ov.Model([out.output(0)], model.get_parameters(), model.get_friendly_name())


def is_padded_list(graph: ov.Model | None) -> bool | None:
    """Whether ``graph``'s only output is one :func:`pad_detection_list` appended; ``None`` without a graph."""
    if graph is None:
        return None
    return len(graph.outputs) == 1 and OUTPUT_NAME in graph.outputs[0].get_names()
