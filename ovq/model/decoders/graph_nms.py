"""Decoding and NMS in the graph: a variant of a model whose output is the final boxes.

A family that can say its decoding in OpenVINO operations has a ``graph_decode(output, params)`` method
returning, per candidate, boxes ``(N, 4)`` (xyxy, model-input pixels), scores ``(N,)`` and class ids ``(N,)``.
:func:`nms_variant` appends the thresholds, the class filter and OpenVINO's ``NonMaxSuppression`` to it, so the
model outputs ``(K, 6)`` rows of x1, y1, x2, y2, score, class id, sorted by falling score; :class:`FinalBoxes`
maps them back to the original image. The result is the Python path's (:func:`ovq.model.decoders.base.finish`):
class-aware NMS is the op's per-class NMS over a one-hot score tensor (no coordinate offsets, so no float32
precision lost on far classes), and the top ``max_det`` of all classes are the same boxes as the greedy pass that
stops at ``max_det`` (a class's boxes never suppress another's). On FastestDet's shared person video (200
frames, f32, EPYC Zen 3) the boxes were the Python path's to 1.2e-4; tests/test_graph_nms.py holds both
shared NMS families to 0.01 px on 80 frames and COCO images. Where FP models run in bf16 (AMX Xeon, Zen 4), the
appended ops stay f32: the CPU plugin keeps a graph's tail after its last convolution in f32
(``Graph::EnforceInferencePrecision``, "skip low-precision enforcement for the tail of the graph").

Why: the Python decode (several dozen NumPy calls a frame) runs beside inference on the same cores, under the
GIL; in the graph it is a few small ops in OpenVINO's threads. What it saves is small: FastestDet paced at 60 fps
took 13.4 instead of 14.1 ms of CPU a frame; YOLOX-Nano the same either way (ovq.streaming.pipeline.Pipeline).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from ovq.core.detections import Detections
from ovq.core.errors import ConfigError, ModelError
from ovq.core.geometry import ResizeInfo, scale_boxes
from ovq.model.decoders.base import DecodeParams, check_confidences

NMS_MODES = {"auto": None, "python": False, "graph": True}  # --nms / nms: -> Pipeline(nms_in_graph=)


def nms_mode(mode: str) -> bool | None:
    """``Pipeline(nms_in_graph=)`` for an ``--nms`` mode; :class:`ConfigError` naming the choices."""
    if mode not in NMS_MODES:
        raise ConfigError(f"nms '{mode}': expected one of {', '.join(NMS_MODES)}")
    return NMS_MODES[mode]


class GraphCandidates(NamedTuple):
    """What a family's ``graph_decode`` returns: per candidate, in model-input pixels."""

    boxes: ov.Output  # (N, 4) f32 x1, y1, x2, y2
    scores: ov.Output  # (N,) f32, checked against [0, 1] by FinalBoxes for the boxes kept
    class_id: ov.Output  # (N,) integer
    num_classes: int


def supports_graph_nms(decoder: Any, params: DecodeParams) -> str | None:
    """Why ``decoder`` with ``params`` cannot decode in the graph, or ``None`` when it can."""
    if not callable(getattr(decoder, "graph_decode", None)):
        return f"family {getattr(decoder, 'family', '?')} decodes in Python only"
    if not params.conf_threshold > 0:
        return "a confidence threshold of 0 keeps every candidate: nothing for the graph to filter"
    return None


def nms_variant(model: ov.Model, decoder: Any, params: DecodeParams) -> ov.Model:
    """A copy of ``model`` that decodes, thresholds and runs NMS with ``params``; its one output is ``(K, 6)``."""
    why = supports_graph_nms(decoder, params)
    if why:
        raise ConfigError(f"NMS in the graph: {why}")
    variant = model.clone()
    results = variant.get_results()
    if len(results) != 1:
        raise ConfigError(f"NMS in the graph: expected one output, the model has {len(results)}")
    found = decoder.graph_decode(results[0].input_value(0), params)
    dets = _append_nms(found, params)
    variant.remove_result(results[0])
    variant.add_results([ops.result(dets)])
    variant.outputs[0].get_tensor().set_names({"detections"})
    return variant


def _i64(*values: int) -> ov.Node:
    return ops.constant(np.array(values, dtype=np.int64))


def span(table: Any, start: int, stop: int, axis: int) -> ov.Output:
    """``table[start:stop]`` along ``axis`` (the families' ``graph_decode`` cut their outputs with it)."""
    return ops.slice(table, _i64(start), _i64(stop), _i64(1), _i64(axis)).output(0)


def over_threshold(scores: Any, params: DecodeParams) -> ov.Output:
    """The indices of ``scores`` at or over ``params.conf_threshold`` (one float32 step lower, so a score equal to
    it passes on every device; FinalBoxes applies the threshold exactly)."""
    threshold = np.nextafter(np.float32(params.conf_threshold), np.float32(0))
    return ops.squeeze(ops.non_zero(ops.greater(scores, ops.constant(threshold)), "i64"), _i64(0)).output(0)


def _column(table: ov.Output, index: int) -> ov.Output:
    """Column ``index`` of a 2-D ``table``, as a 1-D output."""
    return ops.squeeze(span(table, index, index + 1, 1), _i64(1)).output(0)


def _append_nms(found: GraphCandidates, params: DecodeParams) -> ov.Output:
    boxes, scores = found.boxes, found.scores
    class_id = ops.convert(found.class_id, ov.Type.i32).output(0)
    # NMS only the candidates over the threshold: per-class NMS over every cell and class cost OpenVINO 0.91 ms
    # a frame for FastestDet (484 cells x 80 classes), over those 0.23-0.34 ms, the whole appended head with its
    # own inference call (Python's decode: 0.27-0.32; one thread, EPYC Zen 3)
    over = over_threshold(scores, params)
    most = scores.get_partial_shape()[0].get_max_length()
    if most < 0 or most > params.max_nms:  # then only the top max_nms of them, as finish() does
        count = ops.gather(ops.shape_of(over, "i64"), ops.constant(np.int64(0)), _i64(0))
        k = ops.minimum(count, ops.constant(np.int64(params.max_nms)))
        top = ops.topk(ops.gather(scores, over, _i64(0)), k, 0, "max", "none", "i64")
        over = ops.gather(over, top.output(1), _i64(0))
    boxes = ops.gather(boxes, over, _i64(0)).output(0)
    scores = ops.gather(scores, over, _i64(0)).output(0)
    class_id = ops.gather(class_id, over, _i64(0)).output(0)
    if params.classes is not None:  # the other classes' candidates score 0, under any threshold (> 0)
        nc = max(params.classes) + 1
        wanted = np.zeros(nc, dtype=np.float32)
        wanted[list(params.classes)] = 1.0
        known = ops.minimum(class_id, ops.constant(np.int32(nc - 1)))  # a class id past the list's is unwanted
        gate = ops.multiply(ops.gather(ops.constant(wanted), known, _i64(0)),
                            ops.convert(ops.less(class_id, ops.constant(np.int32(nc))), ov.Type.f32))
        scores = ops.multiply(scores, gate).output(0)
    if params.agnostic:
        per_class = ops.unsqueeze(scores, _i64(0, 1))  # (1, 1, N)
    else:  # (1, C, N): each candidate scores under its own class only
        one_hot = ops.one_hot(class_id, ops.constant(np.int32(found.num_classes)), ops.constant(np.float32(1)), ops.constant(np.float32(0)), axis=0)
        per_class = ops.unsqueeze(ops.multiply(one_hot, ops.unsqueeze(scores, _i64(0))), _i64(0))
    # the threshold again: the one-hot's zeros (other classes) and the classes filter's must not come out
    threshold = np.nextafter(np.float32(params.conf_threshold), np.float32(0))
    nms = ops.non_max_suppression(
        ops.unsqueeze(boxes, _i64(0)), per_class, _i64(params.max_det), ops.constant(np.float32(params.iou_threshold)),
        ops.constant(threshold), box_encoding="corner", sort_result_descending=True, output_type="i64",
    )
    valid = nms.output(2)  # rows past it are padding on devices with static shapes
    selected = ops.slice(nms.output(0), _i64(0), valid, _i64(1), _i64(0))
    selected = ops.slice(selected, _i64(0), _i64(params.max_det), _i64(1), _i64(0))  # the top max_det of all classes
    scored = ops.slice(nms.output(1), _i64(0), valid, _i64(1), _i64(0))
    scored = ops.slice(scored, _i64(0), _i64(params.max_det), _i64(1), _i64(0))
    index = _column(selected, 2)
    kept_class = ops.gather(class_id, index, _i64(0)) if params.agnostic else _column(selected, 1)
    return ops.concat([
        ops.gather(boxes, index, _i64(0)),
        ops.unsqueeze(_column(scored, 2), _i64(1)),
        ops.unsqueeze(ops.convert(kept_class, ov.Type.f32), _i64(1)),
    ], 1).output(0)


class FinalBoxes:
    """The decoder of an :func:`nms_variant`: its rows mapped back to the original image.

    ``conf`` may be raised per call (NMS at a lower threshold, then a higher one, keeps what NMS at the higher one
    keeps); :meth:`Detector.postprocess` refuses one under the threshold the graph was built with.
    """

    def __init__(self, family: Any) -> None:
        self.inner = family
        self.family = family.family
        self.expects = "one output (K, 6): x1, y1, x2, y2, score, class id (decoded and NMS'd in the graph)"
        self.preprocessing = family.preprocessing
        self.default_iou = family.default_iou

    def decode(self, outputs: list[np.ndarray], resize: ResizeInfo, params: DecodeParams) -> Detections:
        rows = np.asarray(outputs[0]).reshape(-1, 6)
        scores = check_confidences(rows[:, 4])
        keep = scores >= params.conf_threshold
        boxes = rows[keep, :4]
        if not np.isfinite(boxes).all():
            raise ModelError("decoded boxes are not finite: the outputs do not fit this family")
        return Detections(
            xyxy=scale_boxes(boxes, resize), confidence=scores[keep], class_id=rows[keep, 5].astype(np.int64)
        )
