"""Conversion-time graph rewrites: same outputs as the original graph."""

from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from ovq.model.graph import fuse_focus

END = np.iinfo(np.int64).max


def _half(x, axis: int, start: int):
    c = lambda v: ops.constant(np.array([v], np.int64))
    return ops.slice(x, c(start), c(END), c(2), c(axis))


def _focus_model(order=((0, 0), (1, 0), (0, 1), (1, 1)), kernel=3, stride=1, pads=(1, 1)) -> ov.Model:
    """YOLOX's Focus: x[..., r::2, c::2] four ways, concatenated on channels, then a convolution."""
    x = ops.parameter([1, 3, 16, 20], ov.Type.f32, name="x")
    parts = [_half(_half(x, 2, r), 3, c) for r, c in order]
    cat = ops.concat(parts, 1)
    w = ops.constant(np.random.default_rng(0).normal(size=(8, 12, kernel, kernel)).astype(np.float32))
    conv = ops.convolution(cat, w, [stride, stride], [pads[0]] * 2, [pads[1]] * 2, [1, 1], name="stem")
    return ov.Model([ops.relu(conv)], [x])


def _run(model: ov.Model, x: np.ndarray) -> np.ndarray:
    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x)[0]


def test_focus_becomes_one_strided_convolution_with_the_same_output():
    x = np.random.default_rng(1).random((1, 3, 16, 20), np.float32)
    cases = [
        {"order": ((0, 0), (1, 0), (0, 1), (1, 1))},  # YOLOX / YOLOv5
        {"order": ((0, 0), (0, 1), (1, 0), (1, 1))},
        {"order": ((1, 1), (0, 0), (1, 0), (0, 1))},
        {"kernel": 1, "pads": (0, 0)},
        {"kernel": 3, "stride": 2, "pads": (1, 0)},
    ]
    for case in cases:
        original = _focus_model(**case)
        expected = _run(original, x)
        rewritten = _focus_model(**case)
        assert fuse_focus(rewritten) == 1, case
        kinds = [op.get_type_name() for op in rewritten.get_ops()]
        assert "Slice" not in kinds and "Concat" not in kinds, case
        (conv,) = [op for op in rewritten.get_ops() if op.get_type_name() == "Convolution"]
        assert conv.get_friendly_name() == "stem"
        assert conv.input_value(0).get_node().get_type_name() == "Parameter"  # reads the image itself
        kernel = case.get("kernel", 3)
        assert list(conv.input_value(1).get_shape()) == [8, 3, 2 * kernel, 2 * kernel]
        assert list(conv.get_strides()) == [2 * case.get("stride", 1)] * 2
        assert rewritten.output(0).get_shape() == original.output(0).get_shape()
        np.testing.assert_allclose(_run(rewritten, x), expected, rtol=1e-4, atol=1e-4)


def test_other_slicing_is_left_alone():
    x = ops.parameter([1, 3, 16, 16], ov.Type.f32, name="x")
    parts = [_half(_half(x, 2, 0), 3, 0)] * 2 + [_half(_half(x, 2, 1), 3, 1)] * 2  # not the four offsets
    model = ov.Model([ops.concat(parts, 1)], [x])
    assert fuse_focus(model) == 0
    assert sum(op.get_type_name() == "Slice" for op in model.get_ops()) == 4
