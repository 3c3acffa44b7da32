"""Resize in the graph: the variant sees what the Python path sees, maps boxes the same way, and the pipeline
uses it when every source has one known frame size."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from conftest import make_dets

from ovq.core.errors import ConfigError
from ovq.core.geometry import forward_boxes, letterbox, letterbox_info, stretch, stretch_info, then
from ovq.core.metadata import ModelInfo
from ovq.model.detector import Detector
from ovq.model.ingraph import box_shifts, resize_variant
from ovq.streaming.pipeline import Pipeline

VIDEO = "videos/one-by-one-person-detection.mp4"  # 768x432
GIF = "videos/people-detection.gif"  # 480x270


def identity_graph(size: tuple[int, int]) -> ov.Model:
    """A graph that returns its u8 NHWC input as f32: what the network behind the preprocessing would see."""
    x = ops.parameter([1, *size, 3], ov.Type.u8, name="images")
    return ov.Model([ops.convert(x, ov.Type.f32)], [x], "identity")


def frame(h: int, w: int) -> np.ndarray:
    """A smooth test picture with edges (random noise would make every interpolation look the same)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 255, yy / h * 255, (xx + yy) % 64 * 4], axis=-1)
    cv2.circle(img, (w // 3, h // 2), min(h, w) // 4, (20, 200, 90), -1)
    return img.astype(np.uint8)


@pytest.mark.parametrize("resize, size, center", [("letterbox", (416, 416), False), ("letterbox", (640, 640), True),
                                                  ("stretch", (352, 352), True), ("stretch", (320, 544), True)])
@pytest.mark.parametrize("source", [(432, 768), (480, 640), (120, 90), (416, 416)])
def test_the_graph_resizes_as_opencv_does(resize, size, center, source):
    info = ModelInfo(family="x", labels=[], input_size=size, resize=resize, letterbox_center=center, pad_value=114)
    variant, rinfo = resize_variant(identity_graph(size), info, source)
    assert tuple(variant.inputs[0].get_shape()) == (1, *source, 3)
    image = frame(*source)
    out = ov.Core().compile_model(variant, "CPU")({0: image[None]})[0][0]
    expected, expected_info = letterbox(image, size, center=center) if resize == "letterbox" else stretch(image, size)
    assert rinfo == expected_info
    # OpenCV's bilinear works in 11-bit fixed point and rounds to u8: the graph stays within one grey level of it,
    # and off by one on few pixels (as OpenCV's INTER_LINEAR is from its own INTER_LINEAR_EXACT)
    diff = np.abs(out - expected.astype(np.float32))
    assert diff.max() <= 1.0 and diff.mean() < 0.2


def test_composed_mappings_are_exact():
    first = stretch_info((480, 640), (432, 768))
    second = letterbox_info((432, 768), (416, 416), center=True)
    boxes = np.array([[0, 0, 640, 480], [10.5, 20.25, 300, 400]], np.float32)
    np.testing.assert_allclose(forward_boxes(boxes, then(first, second)),
                               forward_boxes(forward_boxes(boxes, first), second), rtol=1e-6)
    assert (then(first, second).orig_w, then(first, second).orig_h) == (640, 480)


def test_variants_need_an_ovq_image_input():
    info = ModelInfo(family="x", labels=[], input_size=(64, 64))
    x = ops.parameter([1, 3, 64, 64], ov.Type.f32, name="images")
    with pytest.raises(ConfigError, match="one u8 NHWC image input"):
        resize_variant(ov.Model([ops.relu(x)], [x], "f32"), info, (100, 100))
    with pytest.raises(ConfigError, match="source size 100x0"):
        resize_variant(identity_graph((64, 64)), info, (0, 100))


@pytest.fixture(scope="module")
def tiny_detector(tiny) -> Detector:
    return Detector(tiny, precision="f32")


def test_for_source_is_compiled_once_per_size_and_decodes_like_the_python_path(tiny_detector):
    variant = tiny_detector.for_source(96, 160)
    assert tiny_detector.for_source(96, 160) is variant and variant.for_source(96, 160) is variant
    assert tiny_detector.for_source(80, 80) is not variant
    image = frame(96, 160)
    tensor, rinfo = variant.preprocess(image)
    assert tensor.base is image or np.shares_memory(tensor, image)  # handed over as it is, no copy
    expected_tensor, expected_info = tiny_detector.preprocess(image)
    assert rinfo == expected_info
    got = variant.compiled({0: tensor})[0]
    expected = tiny_detector.compiled({0: expected_tensor})[0]
    np.testing.assert_allclose(got, expected, atol=0.05 * float(np.abs(expected).max()))


def test_a_frame_of_another_size_is_stretched_first_and_boxes_stay_in_its_pixels(tiny_detector, ovq_log):
    variant = tiny_detector.for_source(96, 160)
    other = frame(200, 150)
    _, rinfo = variant.preprocess(other)
    variant.preprocess(other)
    assert sum("stretching it in Python first" in m for m in ovq_log.messages(logging.WARNING)) == 1
    assert (rinfo.orig_w, rinfo.orig_h) == (150, 200)
    corners = forward_boxes(np.array([[0, 0, 150, 200]], np.float32), rinfo)[0]
    inner = letterbox_info((96, 160), tiny_detector.info.input_size, center=tiny_detector.info.letterbox_center)
    np.testing.assert_allclose(corners, forward_boxes(np.array([[0, 0, 160, 96]], np.float32), inner)[0], atol=1e-4)


def test_box_shifts_matches_boxes_by_class_and_overlap():
    a = make_dets([[0, 0, 10, 10], [50, 50, 80, 90], [0, 0, 5, 5]], scores=[0.9, 0.8, 0.1], classes=[0, 1, 0])
    b = make_dets([[50.5, 49, 80, 90], [0.25, 0, 10, 10]], classes=[1, 0])
    shifts, missing = box_shifts(a, b)
    assert missing == 0 and sorted(shifts.tolist()) == [0.25, 1.0]
    shifts, missing = box_shifts(a, make_dets([[0, 0, 10, 10]], classes=[1]))
    assert missing == 2 and len(shifts) == 0


@pytest.mark.parametrize("sources, in_graph, expected", [
    ([VIDEO], True, "graph from 768x432"),
    ([VIDEO, VIDEO], True, "graph from 768x432"),
    ([VIDEO], False, "python"),
    ([VIDEO], None, "python"),  # on the CPU the default resizes in Python (see Pipeline's docstring)
    ([VIDEO, GIF], True, "python"),
])
def test_the_pipeline_resizes_in_the_graph_when_the_sources_agree(assets, tiny_detector, sources, in_graph, expected):
    summary = Pipeline(tiny_detector, [str(assets / s) for s in sources], max_frames=3, stats_interval=0,
                       resize_in_graph=in_graph).run()
    assert summary.extra["resize"] == expected
    assert all(s.frames == 3 for s in summary.streams.values())


def shifts_on_video(detector: Detector, video, every: int = 4) -> tuple[np.ndarray, np.ndarray, int]:
    """Box shifts, in-graph vs Python path, and the control: OpenCV's INTER_LINEAR_EXACT vs its INTER_LINEAR."""
    cap = cv2.VideoCapture(str(video))
    graph, control, unmatched, index = [], [], 0, 0
    ok, image = cap.read()
    variant = detector.for_source(*image.shape[:2])
    while ok:
        if index % every == 0:
            python = detector(image, conf=0.1)
            shifted, missing = box_shifts(python, variant(image, conf=0.1))
            graph.append(shifted)
            unmatched += missing
            tensor, rinfo = letterbox(image, detector.info.input_size, pad_value=detector.info.pad_value,
                                      center=detector.info.letterbox_center, interpolation=cv2.INTER_LINEAR_EXACT)
            exact = detector.postprocess([detector.compiled({0: tensor[None]})[0]], rinfo, conf=0.1)
            control.append(box_shifts(python, exact)[0])
        index += 1
        ok, image = cap.read()
    return np.concatenate(graph), np.concatenate(control), unmatched


@pytest.mark.slow
def test_yolox_nano_in_the_graph_keeps_map_and_boxes(assets):
    """Measured at f32 (any CPU runs it; bf16 would add its own noise to both paths): mAP within 0.002 of the
    Python path on coco128 val (one variant per image size), boxes on the shared person video within 1 px as
    often as OpenCV's two bilinear resizes agree with each other."""
    from ovq.data.datasets import load_dataset
    from ovq.data.images import read_image
    from ovq.evaluation.metrics import coco_map

    detector = Detector(assets / "models/yolox_nano/yolox_nano.onnx", precision="f32")
    graph, control, unmatched = shifts_on_video(detector, assets / VIDEO)
    assert len(graph) > 100 and unmatched <= len(graph) // 100
    assert np.median(graph) < 0.25 and (graph <= 1).mean() >= min(0.98, (control <= 1).mean() - 0.01)
    data = load_dataset(assets / "coco128", split="val", names=detector.labels)
    python, in_graph = [], []
    for sample in data.samples:
        image = read_image(sample.image)
        python.append(detector(image, conf=0.01))
        in_graph.append(detector.for_source(*image.shape[:2])(image, conf=0.01))
    before = coco_map(data.samples, python, num_classes=80).map50_95
    after = coco_map(data.samples, in_graph, num_classes=80).map50_95
    assert before > 0.3 and abs(after - before) <= 0.002, (before, after)
