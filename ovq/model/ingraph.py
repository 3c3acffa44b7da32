"""Resize in the graph: a variant of a converted model that takes the source frame as it is.

An ovq IR takes a u8 BGR NHWC image of the model's input size; the caller resizes. For a stream whose frame
size is known and fixed, :func:`resize_variant` puts the letterbox (or stretch) in front of it with OpenVINO's
PrePostProcessor, so the variant takes the decoded frame (u8 BGR, source size) with no Python resize and no
copy. The geometry is the one :func:`ovq.core.geometry.letterbox` uses, so box mapping stays exact; only the
interpolation is OpenVINO's instead of OpenCV's (both bilinear with half-pixel centres, no antialiasing, on u8:
at most one grey level apart, as OpenCV's INTER_LINEAR is from its INTER_LINEAR_EXACT). Resizing the bytes
before converting to float measured 10.0 vs 10.5 ms CPU a frame for FastestDet on 768x432 frames (interleaved,
loaded 2-core EPYC Zen 3). Against the Python path at f32 (that CPU), coco128 val mAP50-95: YOLOX-Nano
0.3368 -> 0.3382, FastestDet 0.2067 -> 0.2062. On the shared person video (float resize, an earlier version)
99.2 % (YOLOX-Nano) and 95.5 % (FastestDet) of the boxes moved at most 1 px - as many as between OpenCV's two
bilinear resizes (99.2 %, 95.5 %); the slow test holds the byte resize to the same bound.

Why the CPU resizes in Python by default: OpenVINO's CPU Interpolate is several times slower than OpenCV on these
frames. A 768x432 u8 frame to 352x352, one thread, 2-core EPYC Zen 5 (openvino 2026.4): 1.3-1.4 ms in
``jit_avx512_I8`` (interleaved NHWC, modes ``linear`` and ``linear_onnx`` alike; planar NCHW 1.4-2.1 ms, on floats
1.3-2.0 ms plus the conversion) against 0.16-0.23 ms for ``cv2.resize``, and it runs in the inference streams.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import openvino as ov
from openvino.preprocess import PaddingMode, PrePostProcessor, ResizeAlgorithm

from ovq.core.errors import ConfigError
from ovq.core.geometry import ResizeInfo, letterbox_info, resized_extent, stretch_info
from ovq.core.metadata import ModelInfo

RESIZE_MODES = {"auto": None, "python": False, "graph": True}  # --resize / resize: -> Pipeline(resize_in_graph=)


def resize_mode(mode: str) -> bool | None:
    """``Pipeline(resize_in_graph=)`` for a ``--resize`` mode; :class:`ConfigError` naming the choices."""
    if mode not in RESIZE_MODES:
        raise ConfigError(f"resize '{mode}': expected one of {', '.join(RESIZE_MODES)}")
    return RESIZE_MODES[mode]


def source_resize(info: ModelInfo, source: tuple[int, int]) -> ResizeInfo:
    """How a frame of ``source`` = (height, width) maps onto the model input, as the Python path does it."""
    if info.resize == "letterbox":
        return letterbox_info(source, info.input_size, center=info.letterbox_center)
    return stretch_info(source, info.input_size)


def resize_variant(model: ov.Model, info: ModelInfo, source: tuple[int, int]) -> tuple[ov.Model, ResizeInfo]:
    """A copy of ``model`` whose input is a u8 BGR NHWC frame of ``source`` = (height, width), and its mapping."""
    h, w = (int(source[0]), int(source[1]))
    if h < 1 or w < 1:
        raise ConfigError(f"source size {w}x{h}: expected positive width and height")
    shape = model.inputs[0].get_partial_shape()
    if len(model.inputs) != 1 or shape.rank.get_length() != 4 or model.inputs[0].get_element_type() != ov.Type.u8:
        raise ConfigError("resizing in the graph needs one u8 NHWC image input (an IR converted by ovq)")
    rinfo = source_resize(info, (h, w))
    top, left, nh, nw = resized_extent(rinfo)
    th, tw = info.input_size
    variant = model.clone()
    ppp = PrePostProcessor(variant)
    inp = ppp.input(0)
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_shape([1, h, w, 3])
    inp.model().set_layout(ov.Layout("NHWC"))
    steps = inp.preprocess()
    if (nh, nw) != (h, w):  # on u8: cheaper than on floats (see the module doc)
        steps.resize(ResizeAlgorithm.RESIZE_LINEAR, nh, nw)
    if (nh, nw) != (th, tw):  # the PrePostProcessor pads floats only
        steps.convert_element_type(ov.Type.f32)
        steps.pad([0, top, left, 0], [0, th - nh - top, tw - nw - left, 0], float(info.pad_value), PaddingMode.CONSTANT)
    variant = ppp.build()
    _skip_u8_round_trip(variant)
    return variant, rinfo


def _skip_u8_round_trip(model: ov.Model) -> None:
    """Bypass the f32 -> u8 -> f32 the stacked preprocessing leaves between the resize and the model's own
    conversion: two passes over the image that only round (the Python path rounds too; at most 0.5 of 255)."""
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Convert" or op.get_output_element_type(0) != ov.Type.u8:
            continue
        source = op.input_value(0)
        if source.get_element_type() != ov.Type.f32:
            continue
        for target in list(op.output(0).get_target_inputs()):
            after = target.get_node()
            if after.get_type_name() == "Convert" and after.get_output_element_type(0) == ov.Type.f32:
                after.output(0).replace(source)
        return  # the first one is the preprocessing's; any later one belongs to the network


def box_shifts(reference: Any, other: Any, *, min_conf: float = 0.3) -> tuple[np.ndarray, int]:
    """How far ``other``'s boxes moved from ``reference``'s (two :class:`Detections` of one frame): for each
    confident reference box (confidence >= ``min_conf``), the largest coordinate shift (px) to its
    best-overlapping box of the same class in ``other``; and how many confident boxes had none (IoU < 0.5)."""
    from ovq.core.geometry import box_iou

    shifts, missing = [], 0
    for i in np.nonzero(reference.confidence >= min_conf)[0]:
        same = np.nonzero(other.class_id == reference.class_id[i])[0]
        iou = box_iou(reference.xyxy[i : i + 1], other.xyxy[same])[0] if len(same) else np.zeros(0)
        if not len(iou) or iou.max() < 0.5:
            missing += 1
            continue
        j = same[int(iou.argmax())]
        shifts.append(float(np.abs(reference.xyxy[i] - other.xyxy[j]).max()))
    return np.asarray(shifts, np.float32), missing
