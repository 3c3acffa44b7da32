"""Each decoder family on hand-made outputs whose right answer is known; which family claims which model."""

from __future__ import annotations

from dataclasses import replace

import heads
import numpy as np
import pytest

from ovq.core.errors import ModelError
from ovq.core.geometry import letterbox, stretch
from ovq.model.decoders import BUILTIN, DecodeParams, ModelFacts, check_confidences, get_decoder, infer_families
from ovq.model.identify import facts_of


def _params(size, conf=0.3, iou=0.5):
    return DecodeParams(input_size=size, conf_threshold=conf, iou_threshold=iou)


def _info_letterbox(orig=(200, 400), size=(320, 320)):
    return letterbox(np.zeros(orig + (3,), np.uint8), size)[1]


def test_registry_lists_every_family():
    assert set(BUILTIN) == {"yolo", "yolo_e2e", "rtdetr", "yolov5", "yolox", "yolox_decoded", "ssd", "fastestdet",
                            "torchvision"}
    with pytest.raises(ModelError, match="unknown decoder family 'nope': not built in and no installed package"):
        get_decoder("nope")


@pytest.mark.parametrize(
    ("shapes", "size", "metadata", "families"),
    [
        ([(1, 84, 8400)], (640, 640), {}, ["yolo"]),
        ([(1, 9, 2100)], (320, 320), {}, ["yolo"]),
        ([(1, 300, 6)], (640, 640), {}, []),  # boxes in pixels or normalised: only the graph or metadata says
        ([(1, 300, 6)], (640, 640), {"head": "RTDETRDecoder", "end2end": "False"}, ["rtdetr"]),
        ([(1, 300, 6)], (640, 640), {"head": "Detect", "end2end": "True"}, ["yolo_e2e"]),
        ([(1, 84, 8400)], (640, 640), {"head": "Detect", "end2end": "True"}, []),
        ([(1, 3549, 85)], (416, 416), {}, ["yolox"]),
        ([(1, 3549, 85)], (416, 416), {"task": "detect"}, []),  # an Ultralytics export is never YOLOX
        ([(1, 25200, 85)], (640, 640), {}, []),  # YOLOv5 needs its graph to be told from anything else
        ([(1, 1, 200, 7)], (320, 544), {}, ["ssd"]),
        ([(1, 85, 22, 22)], (352, 352), {}, ["fastestdet"]),
        ([(1, 85, 11, 11)], (352, 352), {}, []),  # not FastestDet's stride 16
        ([(1, 80, 11, 11), (1, 80, 22, 22)], (352, 352), {}, []),  # every output must fit, not the first
        ([(1, 84, 8400), (1, 32, 160, 160)], (640, 640), {}, []),  # a segmentation model is not a detector
        ([(1, 1000)], (224, 224), {}, []),
    ],
)
def test_families_claim_only_outputs_that_fit(shapes, size, metadata, families):
    assert infer_families(ModelFacts(shapes, size, metadata)) == families


@pytest.mark.parametrize("anchors", [1, 3])
def test_yolov5_and_yolox_told_apart_by_the_graph_not_the_count(anchors):
    """With one anchor a YOLOv5-style head has YOLOX's exact output shape; the graph still tells them apart."""
    yolox, v5 = heads.yolox_raw_head(), heads.anchor_head(anchors=anchors)
    yolox_shape, v5_shape = tuple(yolox.outputs[0].get_shape()), tuple(v5.outputs[0].get_shape())
    assert yolox_shape == (1, 84, 7) and v5_shape == (1, 84 * anchors, 7)
    assert infer_families(facts_of(yolox, (64, 64), {})) == ["yolox"]
    assert infer_families(facts_of(v5, (64, 64), {})) == ["yolov5"]


def test_yolox_exported_with_its_decoding_is_told_from_raw_yolox_and_decodes_to_the_same_boxes(tmp_path):
    """YOLOX's head decodes its boxes itself unless told not to (YOLOX's export_onnx.py --decode_in_inference, or
    any torch.onnx.export of the model as it comes): the same [1, N, 5 + nc], boxes in pixels. Taken for raw YOLOX,
    they were decoded again, every box the whole image (a 0-255 random-weight YOLOX-Nano at 320: 134 boxes on
    bus.jpg, each [0, 0, 810, 1080]), exit 0."""
    import openvino as ov

    from ovq.model.conversion import convert
    from ovq.model.detector import Detector

    raw, decoded = (heads.yolox_raw_head(nc=3, seed=4, std=0.001, decoded=d) for d in (False, True))
    assert infer_families(facts_of(raw, (64, 64), {})) == ["yolox"]
    assert infer_families(facts_of(decoded, (64, 64), {})) == ["yolox_decoded"]
    found = {}
    for name, model in (("raw", raw), ("decoded", decoded)):
        ov.save_model(model, str(tmp_path / f"{name}.xml"))
        det = Detector(convert(tmp_path / f"{name}.xml", tmp_path / name, labels=["a", "b", "c"]), precision="f32",
                       conf=0.3)
        assert (det.info.resize, det.info.pad_value, det.info.letterbox_center) == ("letterbox", 114, False)
        image = np.random.default_rng(2).integers(0, 60, (96, 96, 3), dtype=np.uint8)  # boxes of a few cells
        found[name] = [det(image), det.with_nms_in_graph()(image)]
    assert len(found["raw"][0]) >= 10 and (found["raw"][0].xyxy[:, 2] - found["raw"][0].xyxy[:, 0]).min() < 20
    for ours in found["decoded"]:
        assert ours.class_id.tolist() == found["raw"][0].class_id.tolist()
        np.testing.assert_allclose(ours.confidence, found["raw"][0].confidence, atol=1e-5)
        np.testing.assert_allclose(ours.xyxy, found["raw"][0].xyxy, atol=1e-3)


def test_a_transposed_yolov8_output_is_not_taken_for_yolox():
    """A YOLOv8 export transposed to [1, N, 4 + nc] (as deployment exports for other runtimes write it), without
    Ultralytics' metadata, has YOLOX's shape: ovq decoded it as YOLOX (its first class score taken for objectness,
    79 of 80 classes, every score 1.00 on bus.jpg), exit 0. Its DFL softmax says it is not YOLOX."""
    transposed = heads.dfl_head(nc=3, transposed=True)
    assert tuple(transposed.outputs[0].get_shape()) == (1, 84, 7)
    assert infer_families(facts_of(transposed, (64, 64), {})) == []
    assert infer_families(facts_of(heads.dfl_head(nc=3), (64, 64), {})) == ["yolo"]


def test_yolo_layout_of_many_classes_at_a_small_input_comes_from_the_cell_count_and_the_graph():
    """80 classes at 64x64: [1, 84, 84] (64 + 16 + 4 cells), and at 32x32 [1, 84, 21]; both were refused."""
    assert tuple(heads.dfl_head(nc=80).outputs[0].get_shape()) == (1, 84, 84)
    assert infer_families(facts_of(heads.dfl_head(nc=80), (64, 64), {})) == ["yolo"]  # box and class rows joined
    assert infer_families(facts_of(heads.dfl_head(nc=80, transposed=True), (64, 64), {})) == []  # [1, N, 4 + nc]
    small = heads.dfl_head(size=(32, 32), nc=80)
    assert tuple(small.outputs[0].get_shape()) == (1, 84, 21)
    assert infer_families(facts_of(small, (32, 32), {})) == ["yolo"]
    yolo = get_decoder("yolo")
    assert yolo.num_classes(facts_of(small, (32, 32), {})) == 80
    assert yolo.matches(ModelFacts([(1, 84, 84)], (64, 64))) is None  # served: only its IR's family can say
    assert yolo.matches(ModelFacts([(1, 84, 21)], (32, 32))) is True
    assert yolo.matches(ModelFacts([(1, 21, 84)], (32, 32))) is False  # the cells on axis 1: not this layout
    # a P6 model (largest stride 64, as its exporter says) has a fourth level of cells
    assert yolo.matches(ModelFacts([(1, 84, 22)], (64, 64), {"stride": "64"})) is False
    assert yolo.matches(ModelFacts([(1, 84, 85)], (64, 64), {"stride": "64"})) is True


@pytest.mark.parametrize("family", [None, "yolo"])
def test_a_yolo_output_as_long_on_both_axes_as_its_candidates_is_said_to_be_ambiguous(tmp_path, capsys, family):
    """[1, 84, 84] at 64x64 (84 candidates, 80 classes) whose graph does not show the layout (a Transpose between the
    head's Concat and the output) was refused as 'no known family fits the outputs [1, 84, 84]': now the refusal
    says the layout is ambiguous and to convert at another input size."""
    import openvino as ov

    from ovq.cli import main

    ov.save_model(heads.dfl_head(nc=80, transposed=True), str(tmp_path / "t.xml"))
    code = main(["convert", str(tmp_path / "t.xml"), "-o", str(tmp_path / "out"), *(["--family", family] if family
                                                                                      else []), "-q"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [(
        f"ovq convert: error: {tmp_path / 't.xml'}: the output [1, 84, 84] is ambiguous for the yolo family: a 64x64 "
        "input gives 84 candidates over strides 8/16/32, as many as both axes hold, and the graph does not show "
        "which axis holds them (Ultralytics' head joins its 4 box and 80 class rows on axis 1); convert or export "
        "the model at another input size, where the axes differ (ovq convert MODEL.pt --imgsz 640, or --imgsz for "
        "an ONNX of dynamic size; Ultralytics' export(imgsz=640))")]
    assert not (tmp_path / "out").exists()
    yolo = get_decoder("yolo")
    assert yolo.ambiguity(facts_of(heads.dfl_head(nc=80), (64, 64), {})) is None  # the graph tells: no ambiguity
    assert yolo.ambiguity(facts_of(heads.dfl_head(nc=3, transposed=True), (64, 64), {})) is None  # 7 != 84


def test_boxes_already_in_pixels_joined_to_the_scores_are_not_yolox():
    """YOLOv6's export ([boxes in pixels, ones, class scores] on the last axis: YOLOX's [1, N, 5 + nc], no Exp, no
    Softmax without its DFL) was taken for raw YOLOX and its pixel boxes decoded again as cell offsets."""
    v6 = heads.distance_head(nc=3)
    assert tuple(v6.outputs[0].get_shape()) == (1, 84, 8)
    assert infer_families(facts_of(v6, (64, 64), {})) == []
    for size in ((64, 64), (32, 32), (416, 416)):  # raw YOLOX's own levels are never 4 wide
        assert infer_families(facts_of(heads.yolox_raw_head(size=size), size, {})) == ["yolox"]


@pytest.mark.parametrize(("normalised", "family"), [(True, "rtdetr"), (False, "yolo_e2e")])
def test_end_to_end_box_convention_read_from_the_graph(normalised, family):
    """[1, K, 6] is RT-DETR when the boxes come out of a Sigmoid (0..1), YOLO26/YOLOv10 when in pixels."""
    model = heads.end_to_end_head(normalised=normalised)
    assert infer_families(facts_of(model, (64, 64), {})) == [family]


def test_confidences_outside_0_1_or_nan_are_errors():
    np.testing.assert_allclose(check_confidences(np.array([0.0, 0.5, 1.004])), [0.0, 0.5, 1.0])  # rounding
    for bad in ([0.2, 8.57], [0.2, -0.5], [0.2, np.nan]):
        with pytest.raises(ModelError, match=r"not in \[0, 1\]: the outputs do not fit this family"):
            check_confidences(np.array(bad, np.float32))
    out = np.zeros((1, 4 + 2, 10), np.float32)
    out[0, :4, 0] = [100, 100, 20, 20]
    out[0, 5, 0] = 8.57  # raw logits where the family expects sigmoided scores
    with pytest.raises(ModelError, match="8.57"):
        get_decoder("yolo").decode([out], _info_letterbox(), _params((320, 320)))


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


def test_rtdetr_scales_normalised_centre_boxes_to_the_image():
    _, rinfo = stretch(np.zeros((200, 400, 3), np.uint8), (320, 320))
    out = np.zeros((1, 300, 6), np.float32)
    out[0, 0] = [0.5, 0.5, 0.25, 0.5, 0.9, 7]  # centre of the image, a quarter of its width, half its height
    out[0, 1] = [0.5, 0.5, 0.25, 0.5, 0.8, 7]  # a duplicate: kept, the head needs no NMS
    out[0, 2] = [0.1, 0.1, 0.1, 0.1, 0.2, 3]  # under the threshold
    dets = get_decoder("rtdetr").decode([out], rinfo, _params((320, 320)))
    assert list(dets.class_id) == [7, 7]
    np.testing.assert_allclose(dets.xyxy[0], [150, 50, 250, 150], atol=1e-3)
    np.testing.assert_allclose(dets.confidence, [0.9, 0.8])


def test_yolov5_score_is_objectness_times_class_and_boxes_are_pixels():
    rinfo = _info_letterbox()  # 200x400 -> scale 0.8, pad_y 80
    out = np.zeros((1, 20, 5 + 3), np.float32)
    out[0, 0] = [160, 160, 80, 40, 0.9, 0.1, 0.8, 0.1]
    out[0, 1] = [162, 160, 80, 40, 0.8, 0.1, 0.8, 0.1]  # overlapping, same class, lower: suppressed
    out[0, 2] = [40, 120, 20, 20, 0.5, 0.9, 0.0, 0.0]  # 0.45
    out[0, 3] = [300, 300, 20, 20, 0.2, 0.0, 0.0, 0.99]  # 0.198: under 0.3
    dets = get_decoder("yolov5").decode([out], rinfo, _params((320, 320)))
    assert list(dets.class_id) == [1, 0]
    np.testing.assert_allclose(dets.confidence, [0.72, 0.45], rtol=1e-5)
    np.testing.assert_allclose(dets.xyxy[0], [150, 75, 250, 125], atol=1e-3)


def test_classes_and_max_det_filter_before_nms():

    rinfo = _info_letterbox()
    out = np.zeros((1, 4 + 3, 10), np.float32)
    for i, (cls, score) in enumerate([(0, 0.9), (2, 0.8), (1, 0.7), (2, 0.6)]):
        out[0, :4, i] = [40 + 60 * i, 160, 40, 40]
        out[0, 4 + cls, i] = score
    out[0, :4, 4] = [41, 160, 40, 40]  # a class-2 box over the class-0 one: agnostic NMS would drop it ...
    out[0, 4 + 2, 4] = 0.85
    params = replace(_params((320, 320)), classes=(2,), agnostic=True)
    dets = get_decoder("yolo").decode([out], rinfo, params)  # ... but class 0 is filtered out first
    np.testing.assert_allclose(dets.confidence, [0.85, 0.8, 0.6])
    dets = get_decoder("yolo").decode([out], rinfo, replace(params, max_det=2))
    np.testing.assert_allclose(dets.confidence, [0.85, 0.8])


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


def test_ssd_labels_above_the_background_move_down_one():
    """DetectionOutput never outputs its background label; with background 0 (Open Model Zoo) label 1 is class 0."""
    _, rinfo = stretch(np.zeros((320, 544, 3), np.uint8), (320, 544))
    out = np.zeros((1, 1, 4, 7), np.float32)
    out[0, 0, 0] = [0, 1, 0.9, 0.1, 0.1, 0.2, 0.2]
    out[0, 0, 1] = [0, 3, 0.8, 0.5, 0.5, 0.6, 0.6]
    out[0, 0, 2] = [0, 2, 0.7, 0.3, 0.3, 0.4, 0.4]  # background 2 (a model that puts it last but one)
    out[0, 0, 3] = [-1, 0, 0, 0, 0, 0, 0]
    ssd = get_decoder("ssd")
    assert ssd.decode([out], rinfo, replace(_params((320, 544)), background_id=0)).class_id.tolist() == [0, 2, 1]
    assert ssd.decode([out], rinfo, replace(_params((320, 544)), background_id=2)).class_id.tolist() == [1, 2]
    assert ssd.decode([out], rinfo, _params((320, 544))).class_id.tolist() == [1, 3, 2]  # no background: raw


@pytest.mark.parametrize("opset", [1, 8])
@pytest.mark.parametrize(("background", "classes", "expect"), [(0, 2, 0), (0, 3, 0), (-1, 3, None), (2, 3, 2)])
def test_ssd_reads_its_class_count_and_background_from_the_graph(opset, background, classes, expect):
    facts = facts_of(heads.ssd_head(classes=classes, background=background, opset=opset), (64, 64), {})
    ssd = get_decoder("ssd")
    assert ssd.background_id(facts) == expect
    assert ssd.num_classes(facts) == classes - (expect is not None)
    assert ssd.num_classes(ModelFacts(facts.output_shapes, (64, 64))) is None  # a served model: no graph


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
