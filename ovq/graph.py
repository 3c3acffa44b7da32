"""Graph rewrites ovq applies when it converts a model: same outputs, faster kernels.

``fuse_focus``: YOLOX's (and YOLOv5's first) "Focus" layer takes every second pixel four ways with
strided Slice ops and concatenates them on channels. OpenVINO's CPU plugin runs those strided slices as
reference kernels (YOLOX-Nano at 416: 1.3 ms of a 9.4 ms single-thread inference). The same tensor is a
SpaceToDepth whose channel blocks come in another order, which the next convolution's weights absorb.
YOLOX-Nano FP at bf16: 197-208 -> 218-224 FPS (benchmark_app, 2 cores).
"""

from __future__ import annotations

import logging

import numpy as np
import openvino as ov
import openvino.opset13 as ops

logger = logging.getLogger(__name__)

_OPEN_END = 2**62  # ONNX exports "to the end" as INT64_MAX


def _half_slice(node: ov.Node) -> tuple[int, int, ov.Output] | None:
    """(axis, start, input) when ``node`` is a Slice taking every second element from 0 or 1 to the end."""
    if node.get_type_name() != "Slice" or node.get_input_size() != 5:
        return None
    values = []
    for i in range(1, 5):
        src = node.input_value(i).get_node()
        if src.get_type_name() != "Constant":
            return None
        values.append(np.asarray(src.get_data()).reshape(-1))
    start, stop, step, axes = values
    if not (len(start) == len(stop) == len(step) == len(axes) == 1):
        return None
    if int(step[0]) != 2 or int(start[0]) not in (0, 1) or int(stop[0]) < _OPEN_END:
        return None
    return int(axes[0]), int(start[0]), node.input_value(0)


def _focus_offsets(concat: ov.Node) -> tuple[ov.Output, list[tuple[int, int]]] | None:
    """The source tensor and the (row, column) offset of each of the four inputs of a Focus concat."""
    if concat.get_type_name() != "Concat" or concat.get_input_size() != 4 or concat.get_axis() not in (1, -3):
        return None
    source: ov.Output | None = None
    offsets: list[tuple[int, int]] = []
    for i in range(4):
        outer = _half_slice(concat.input_value(i).get_node())
        inner = _half_slice(outer[2].get_node()) if outer else None
        if outer is None or inner is None:
            return None
        starts = {outer[0]: outer[1], inner[0]: inner[1]}
        if set(starts) != {2, 3}:
            return None
        src = inner[2]
        if source is None:
            source = src
        elif src.get_node() is not source.get_node() or src.get_index() != source.get_index():
            return None
        offsets.append((starts[2], starts[3]))
    if source is None or sorted(offsets) != [(0, 0), (0, 1), (1, 0), (1, 1)]:
        return None
    shape = source.get_partial_shape()
    if shape.rank.is_dynamic or shape.rank.get_length() != 4 or shape[1].is_dynamic:
        return None
    return source, offsets


def _single_conv_consumer(concat: ov.Node) -> ov.Node | None:
    targets = concat.output(0).get_target_inputs()
    if len(targets) != 1:
        return None
    target = next(iter(targets))
    conv = target.get_node()
    if conv.get_type_name() != "Convolution" or target.get_index() != 0:
        return None
    if conv.input_value(1).get_node().get_type_name() != "Constant":
        return None
    return conv


def fuse_focus(model: ov.Model) -> int:
    """Replace every Focus pattern (four stride-2 Slice pairs + Concat on channels) that feeds one convolution
    with SpaceToDepth, permuting that convolution's input channels to match; returns how many.

    The permutation goes into the weights here rather than as a Gather: OpenVINO 2026.4's CPU plugin folds a
    SpaceToDepth -> Gather -> Convolution chain wrongly for some channel orders (seen with the block order
    (1,1), (0,0), (1,0), (0,1); tests/test_graph.py checks that order).
    """
    count = 0
    for concat in [op for op in model.get_ordered_ops() if op.get_type_name() == "Concat"]:
        found = _focus_offsets(concat)
        conv = _single_conv_consumer(concat) if found is not None else None
        if found is None or conv is None:
            continue
        source, offsets = found
        channels = source.get_partial_shape()[1].get_length()
        # concat channel k is SpaceToDepth (blocks_first) channel order[k]: block (row * 2 + column)
        order = np.concatenate([(r * 2 + c) * channels + np.arange(channels) for r, c in offsets])
        weights_node = conv.input_value(1).get_node()
        weights = np.asarray(weights_node.get_data())
        if weights.ndim != 4 or weights.shape[1] != len(order):
            continue
        permuted = np.empty_like(weights)
        permuted[:, order] = weights
        new_weights = ops.constant(permuted)
        new_weights.set_friendly_name(weights_node.get_friendly_name())
        s2d = ops.space_to_depth(source, "blocks_first", 2)
        s2d.set_friendly_name(concat.get_friendly_name())
        conv.input(0).replace_source_output(s2d.output(0))
        conv.input(1).replace_source_output(new_weights.output(0))
        count += 1
    if count:
        model.validate_nodes_and_infer_types()
        logger.info("replaced %d Focus slice pattern(s) with SpaceToDepth (same output, faster kernels)", count)
    return count


def after_space_to_depth(model: ov.Model) -> list[str]:
    """Names of the convolutions that read a SpaceToDepth output (the stems :func:`fuse_focus` makes)."""
    return [
        op.get_friendly_name() for op in model.get_ops()
        if op.get_type_name() in ("Convolution", "GroupConvolution")
        and op.input_value(0).get_node().get_type_name() == "SpaceToDepth"
    ]
