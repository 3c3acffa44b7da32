"""Each decoder family on hand-made outputs whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from ovq.core.errors import ModelError
from ovq.core.geometry import letterbox, stretch
from ovq.model.decoders import REGISTRY, DecodeParams, get_decoder, infer_family


def _params(size, conf=0.3, iou=0.5):
    return DecodeParams(input_size=size, conf_threshold=conf, iou_threshold=iou)


def _info_letterbox(orig=(200, 400), size=(320, 320)):
    return letterbox(np.zeros(orig + (3,), np.uint8), size)[1]


def test_registry_lists_every_family():
    assert set(REGISTRY) == {"yolo", "yolo_e2e", "yolox", "ssd", "fastestdet"}
    with pytest.raises(ModelError, match="unknown decoder family 'nope'"):
        get_decoder("nope")


@pytest.mark.parametrize(
    ("shapes", "size", "family"),
    [
        ([(1, 84, 8400)], (640, 640), "yolo"),
        ([(1, 9, 2100)], (320, 320), "yolo"),
        ([(1, 300, 6)], (640, 640), "yolo_e2e"),
        ([(1, 3549, 85)], (416, 416), "yolox"),
        ([(1, 1, 200, 7)], (320, 544), "ssd"),
        ([(1, 85, 22, 22)], (352, 352), "fastestdet"),
        ([(1, 1000)], (224, 224), None),
    ],
)
def test_family_inferred_from_output_shapes(shapes, size, family):
    assert infer_family(shapes, size) == family


def test_yolo_decodes_two_boxes_and_suppresses_duplicate():
    rinfo = _info_letterbox()  # 200x400 -> scale 0.8, pad_y 80
    n, nc = 10, 3
    out = np.zeros((1, 4 + nc, n), np.float32)
    out[0, :4, 0] = [160, 160, 80, 40]  # cx, cy, w, h in input pixels
    out[0, 4 + 1, 0] = 0.9
    out[0, :4, 1] = [162, 160, 80, 40]  # near-duplicate, same class, lower score
    out[0, 4 + 1, 1] = 0.8
    out[0, :4, 2] = [40, 120, 20, 20]
    out[0, 4 + 2, 2] = 0.5
    dets = get_decoder("yolo").decode([out], rinfo, _params((320, 320)))
    assert list(dets.class_id) == [1, 2]
    np.testing.assert_allclose(dets.confidence, [0.9, 0.5])
    # (120..200, 140..180) in input -> x/0.8, (y-80)/0.8
    np.testing.assert_allclose(dets.xyxy[0], [150, 75, 250, 125], atol=1e-3)


def test_agnostic_nms_keeps_one_box_per_object_across_classes(tmp_path):
    from dataclasses import replace

    from conftest import tiny_yolo_ir

    from ovq.model.detector import Detector

    rinfo = _info_letterbox()
    out = np.zeros((1, 4 + 3, 10), np.float32)
    out[0, :4, 0] = [160, 160, 80, 40]
    out[0, 4 + 0, 0] = 0.9  # a "nut" ...
    out[0, :4, 1] = [161, 160, 80, 40]
    out[0, 4 + 2, 1] = 0.7  # ... and a "washer" on the same part
    aware = get_decoder("yolo").decode([out], rinfo, _params((320, 320)))
    agnostic = get_decoder("yolo").decode([out], rinfo, replace(_params((320, 320)), agnostic=True))
    assert list(aware.class_id) == [0, 2] and list(agnostic.class_id) == [0]
    # stored in the IR by convert, read back by the Detector, overridable per Detector
    xml = tiny_yolo_ir(tmp_path)
    assert Detector(xml, cache=False).params.agnostic is False
    from ovq.model.conversion import convert

    xml2 = convert(xml, tmp_path / "agnostic", agnostic_nms=True)
    assert Detector(xml2, cache=False).params.agnostic is True
    assert Detector(xml2, cache=False, agnostic_nms=False).params.agnostic is False


def test_yolo_e2e_takes_rows_as_they_are_without_nms():
    rinfo = _info_letterbox()
    out = np.zeros((1, 300, 6), np.float32)
    out[0, 0] = [120, 140, 200, 180, 0.9, 4]
    out[0, 1] = [121, 140, 200, 180, 0.8, 4]  # overlapping, kept: the head is NMS-free
    dets = get_decoder("yolo_e2e").decode([out], rinfo, _params((320, 320)))
    assert len(dets) == 2 and list(dets.class_id) == [4, 4]
    np.testing.assert_allclose(dets.xyxy[0], [150, 75, 250, 125], atol=1e-3)


def test_yolox_grid_decoding():
    size = (64, 64)
    cells = (8 * 8) + (4 * 4) + (2 * 2)
    out = np.zeros((1, cells, 5 + 2), np.float32)
    # stride-16 cell at grid (x=2, y=1): index 64 + 1*4 + 2
    i = 64 + 1 * 4 + 2
    out[0, i, :4] = [0.5, 0.5, np.log(2.0), np.log(1.0)]  # centre (2.5*16, 1.5*16), w=32, h=16
    out[0, i, 4] = 0.8
    out[0, i, 6] = 0.9
    _, rinfo = letterbox(np.zeros((64, 64, 3), np.uint8), size, center=False)
    dets = get_decoder("yolox").decode([out], rinfo, _params(size))
    assert len(dets) == 1 and dets.class_id[0] == 1
    np.testing.assert_allclose(dets.confidence[0], 0.72, atol=1e-6)
    np.testing.assert_allclose(dets.xyxy[0], [24, 16, 56, 32], atol=1e-4)


def test_ssd_skips_padding_rows_and_scales_normalised_boxes():
    _, rinfo = stretch(np.zeros((432, 768, 3), np.uint8), (320, 544))
    out = np.zeros((1, 1, 5, 7), np.float32)
    out[0, 0, 0] = [0, 1, 0.95, 0.1, 0.2, 0.3, 0.6]
    out[0, 0, 1] = [0, 1, 0.10, 0.1, 0.2, 0.3, 0.6]  # below threshold
    out[0, 0, 2] = [-1, 0, 0, 0, 0, 0, 0]  # end marker
    out[0, 0, 3] = [0, 1, 0.99, 0.5, 0.5, 0.6, 0.6]  # after the marker: ignored
    dets = get_decoder("ssd").decode([out], rinfo, _params((320, 544)))
    assert len(dets) == 1 and dets.class_id[0] == 1
    np.testing.assert_allclose(dets.xyxy[0], [76.8, 86.4, 230.4, 259.2], atol=1e-2)


def test_fastestdet_cell_decoding():
    size = (352, 352)
    gh = gw = 22
    out = np.full((1, 5 + 3, gh, gw), -10.0, np.float32)
    out[0, 0] = 0.0  # objectness (already sigmoided)
    out[0, 5:] = 0.0
    out[0, 0, 5, 7] = 0.9
    out[0, 1, 5, 7] = 0.0  # tanh(0) = 0 offset
    out[0, 2, 5, 7] = 0.0
    out[0, 3, 5, 7] = 0.0  # sigmoid(0) = 0.5 of the width
    out[0, 4, 5, 7] = np.log(0.25 / 0.75)  # sigmoid -> 0.25 of the height
    out[0, 5 + 2, 5, 7] = 0.8
    _, rinfo = stretch(np.zeros((352, 352, 3), np.uint8), size)
    dets = get_decoder("fastestdet").decode([out], rinfo, _params(size))
    assert len(dets) == 1 and dets.class_id[0] == 2
    np.testing.assert_allclose(dets.confidence[0], 0.9**0.6 * 0.8**0.4, rtol=1e-5)
    cx, cy, w, h = 7 / 22 * 352, 5 / 22 * 352, 176, 88
    np.testing.assert_allclose(dets.xyxy[0], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], atol=1e-3)
