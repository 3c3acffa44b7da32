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

from collections.abc import Sequence

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
    repair_empty_branches(model)
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


def repair_empty_branches(model: ov.Model) -> int:
    """Give back the empty tensors OpenVINO's ONNX reader turned into scalars in ``If`` branches; how many.

    torchvision's NMS returns ``torch.empty(0)`` when no box is left, exported as an ``If`` whose branch is an
    ONNX Constant of shape [0]. OpenVINO 2026.4's ONNX frontend reads an empty Constant as a scalar 0 (its
    "failsafe" constant), so with no candidate the model gathered index 0 of an empty tensor: one row of
    whatever memory held (SSDlite, Faster R-CNN, FCOS and RetinaNet alike; RetinaNet's read score 4.7e22), where
    ONNX Runtime gives no row. A rank-0 Constant answering for a branch whose twin returns a tensor of rank >= 1
    can only be such an empty tensor, so it becomes one, shaped like the twin's rows.
    """
    fixed = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "If" or op.get_output_size() != 1:
            continue
        bodies = (op.get_function(0), op.get_function(1))
        if any(len(b.get_results()) != 1 for b in bodies):
            continue
        for body, twin in (bodies, bodies[::-1]):
            result = body.get_results()[0]
            source = result.input_value(0).get_node()
            rows = twin.get_results()[0].get_input_partial_shape(0)
            if (source.get_type_name() != "Constant" or source.get_output_partial_shape(0).rank.get_length() != 0
                    or rows.rank.is_dynamic or rows.rank.get_length() < 1 or not rows[1:].is_static):
                continue
            shape = [0, *(d.get_length() for d in rows[1:])]
            empty = ops.constant(np.zeros(shape, dtype=source.get_output_element_type(0).to_dtype()))
            result.input(0).replace_source_output(empty.output(0))
            body.validate_nodes_and_infer_types()
            fixed += 1
    if fixed:
        model.validate_nodes_and_infer_types()
    return fixed


def is_padded_list(graph: ov.Model | None, names: Sequence[str] = ()) -> bool | None:
    """Whether the model's only output is one :func:`pad_detection_list` appended: from ``graph``, else from the
    output ``names`` a server lists (the name ovq gave it); ``None`` with neither."""
    if graph is None:
        return None if not names else tuple(names) == (OUTPUT_NAME,)
    return len(graph.outputs) == 1 and OUTPUT_NAME in graph.outputs[0].get_names()
