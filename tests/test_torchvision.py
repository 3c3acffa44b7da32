"""torchvision's detection models: their list of data-dependent length padded in the graph at convert, decoded
by the ``torchvision`` family, checked against torchvision's own forward pass on the same (random) weights."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from ovq.core.metadata import read_info
from ovq.model.conversion import convert
from ovq.model.detection_list import (
    DEFAULT_ROWS,
    OUTPUT_NAME,
    detection_list_outputs,
    pad_detection_list,
    repair_empty_branches,
)
from ovq.model.detector import Detector
from ovq.quantization.options import BiasCorrection
from ovq.quantization.workflow import fast_bias_correction

SIZE = 320


def _list_model() -> ov.Model:
    """A model whose outputs are a detection list of any length, no bound: what it is given, passed through."""
    boxes = ops.parameter([-1, 4], ov.Type.f32, name="b")
    scores = ops.parameter([-1], ov.Type.f32, name="s")
    labels = ops.parameter([-1], ov.Type.i64, name="l")
    outs = [ops.multiply(boxes, ops.constant(np.float32(1))), ops.multiply(scores, ops.constant(np.float32(1))),
            ops.add(labels, ops.constant(np.int64(0)))]
    return ov.Model([o.output(0) for o in outs], [boxes, scores, labels], "list")


@pytest.mark.parametrize("n", [0, 5, DEFAULT_ROWS + 100])
def test_a_list_of_any_length_becomes_one_padded_output(n):
    model = _list_model()
    assert detection_list_outputs(model) == (0, 1, 2)
    padded = pad_detection_list(model)
    assert padded is not None and padded.outputs[0].get_names() == {OUTPUT_NAME}
    assert padded.outputs[0].get_partial_shape().to_shape() == ov.Shape([1, DEFAULT_ROWS, 6])  # no bound: the default
    rng = np.random.default_rng(n)
    boxes = rng.uniform(0, 300, (n, 4)).astype(np.float32)
    scores = rng.uniform(0.01, 1, n).astype(np.float32)
    labels = rng.integers(1, 91, n).astype(np.int64)
    compiled = ov.Core().compile_model(padded, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    out = compiled({0: boxes, 1: scores, 2: labels})[0][0]
    kept = min(n, DEFAULT_ROWS)  # a longer list keeps its first rows
    np.testing.assert_array_equal(out[:kept, :4], boxes[:kept])
    np.testing.assert_array_equal(out[:kept, 4], scores[:kept])
    np.testing.assert_array_equal(out[:kept, 5], labels[:kept].astype(np.float32))
    assert not out[kept:].any()  # the padding: zero rows, zero score


def test_other_outputs_are_not_a_list():
    static = _list_model()
    static.reshape({0: [7, 4], 1: [7], 2: [7]})
    assert detection_list_outputs(static) is None and pad_detection_list(static) is None
    two = ov.Model([static.outputs[0].get_node().input_value(0), static.outputs[1].get_node().input_value(0)],
                   static.get_parameters(), "two")
    assert detection_list_outputs(two) is None


# -- a real torchvision model ---------------------------------------------------------------------------------
def _export(model, onnx: Path) -> Path:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's own tracer warnings
        torch.onnx.export(model, torch.rand(1, 3, SIZE, SIZE), str(onnx), opset_version=17, dynamo=False,
                          input_names=["images"], output_names=["boxes", "scores", "labels"])
    return onnx


@pytest.fixture(scope="module")
def ssdlite(tmp_path_factory):
    """(torchvision model, its ONNX export, the converted IR): SSDlite with 3 classes plus background, random
    weights with batch-norm statistics spread, so scores differ from anchor to anchor."""
    torch = pytest.importorskip("torch", reason="torch comes with the ultralytics extra")
    tv = pytest.importorskip("torchvision", reason="torchvision comes with the ultralytics extra")
    torch.manual_seed(0)
    model = tv.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4)
    model.eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 1.0 / p[0].numel() ** 0.5)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    work = tmp_path_factory.mktemp("torchvision")
    onnx = _export(model, work / "ssdlite.onnx")
    ir = convert(onnx, work / "ir", labels=["bolt", "nut", "washer"])
    return model, onnx, ir


def _image(h: int = 480, w: int = 640) -> np.ndarray:
    """A BGR test picture with structure (gradients and blocks), the same every run."""
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) % 97) * 2], axis=-1).astype(np.uint8)
    image[h // 4: h // 2, w // 3: w // 2] = (20, 200, 60)
    return image


def test_convert_pads_the_list_and_picks_the_family(ssdlite):
    _, _, ir = ssdlite
    model = ov.Core().read_model(ir)
    info = read_info(model)
    assert info.family == "torchvision" and info.labels == ["bolt", "nut", "washer"]
    assert info.resize == "stretch" and info.input_size == (SIZE, SIZE)
    assert [tuple(o.get_partial_shape().to_shape()) for o in model.outputs] == [(1, 300, 6)]  # detections_per_img


def test_detections_are_torchvisions_own(ssdlite):
    import cv2
    import torch

    model, _, ir = ssdlite
    image = _image()
    h, w = image.shape[:2]
    resized = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)  # what ovq's stretch gives the model
    with torch.no_grad():
        ref = model([torch.from_numpy(resized[..., ::-1].copy()).permute(2, 0, 1).float() / 255])[0]
    conf = 0.3
    keep = ref["scores"].numpy() >= conf
    boxes = ref["boxes"].numpy()[keep] * np.array([w / SIZE, h / SIZE] * 2, np.float32)
    scores, classes = ref["scores"].numpy()[keep], ref["labels"].numpy()[keep] - 1  # 0 is the background
    assert len(scores) >= 10 and len(set(np.round(scores, 3))) > 5  # enough, and different, to mean something
    ours = Detector(ir, precision="f32", conf=conf)(image)
    assert len(ours.confidence) == len(scores)
    for box, score, cls in zip(boxes, scores, classes):
        same = ((np.abs(ours.xyxy - box).max(axis=1) < 0.5) & (np.abs(ours.confidence - score) < 1e-4)
                & (ours.class_id == cls))
        assert same.any(), (box, score, cls)


def test_quantize_takes_fast_bias_correction_for_models_with_if_ops(ssdlite):
    _, _, ir = ssdlite
    model = ov.Core().read_model(ir)
    assert any(op.get_type_name() == "If" for op in model.get_ops())
    assert fast_bias_correction(model, "torchvision", BiasCorrection.AUTO) is True
    assert fast_bias_correction(model, "torchvision", BiasCorrection.FULL) is False  # asked for: NNCF says why not
    assert fast_bias_correction(_list_model(), "ssd", BiasCorrection.AUTO) is False  # no If: the family's default


def test_no_detection_is_no_row_not_a_row_of_stale_memory(ssdlite, tmp_path):
    """With nothing over its threshold, torchvision's NMS takes an If branch returning an empty tensor, which
    OpenVINO's ONNX reader makes a scalar 0: index 0 of nothing, one row of garbage (RetinaNet: score 4.7e22)."""
    import torch

    model, _, _ = ssdlite
    image = np.random.default_rng(0).random((1, 3, SIZE, SIZE), dtype=np.float32)
    model.score_thresh = 1.0  # no score passes: every image takes the empty branch
    try:
        onnx = _export(model, tmp_path / "empty.onnx")
        with torch.no_grad():
            assert len(model(list(torch.from_numpy(image)))[0]["scores"]) == 0  # torchvision: no detection
    finally:
        model.score_thresh = 0.001
    raw = ov.Core().read_model(onnx)
    assert repair_empty_branches(raw) == 1
    outputs = ov.Core().compile_model(raw, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(image)
    assert [tuple(a.shape) for a in outputs.values()] == [(0, 4), (0,), (0,)]
    padded = ov.Core().read_model(convert(onnx, tmp_path / "ir"))
    rows = ov.Core().compile_model(padded, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(
        np.zeros((1, SIZE, SIZE, 3), np.uint8))[0]
    assert not rows.any()  # all padding


# -- torchvision's COCO labels ----------------------------------------------------------------------------------
def test_coco91_is_torchvisions_own_category_list(tmp_path, monkeypatch):
    tv = pytest.importorskip("torchvision", reason="torchvision comes with the ultralytics extra")
    from ovq.cli._common import parse_labels

    categories = tv.models.detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
    assert parse_labels("coco91") == parse_labels("COCO91") == categories[1:]  # its 0 is the background
    assert parse_labels("coco91")[:3] == ["person", "bicycle", "car"] and parse_labels("coco91")[11] == "N/A"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "coco91").write_text("bolt\nnut\n")  # a file of that name is the user's, not the set
    assert parse_labels("coco91") == ["bolt", "nut"]


def test_labels_coco91_names_what_torchvisions_coco_weights_detect(tmp_path, capsys):
    """torchvision's COCO weights label with COCO's category ids (1 person, 18 dog): ovq printed 'dog.png: 0 0.97,
    17 0.95' unless --labels listed COCO's 90 slots by hand, and 'coco91' was taken for the name of one class."""
    import cv2
    import torch
    import torchvision as tv

    from ovq.cli import main

    categories = tv.models.detection.SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.meta["categories"]
    torch.manual_seed(0)
    model = tv.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91)
    model.eval()
    with torch.no_grad():  # random weights that see persons and dogs: every anchor's two logits raised
        for block in model.head.classification_head.module_list:
            block[-1].bias.view(-1, 91)[:, [1, 18]] += 6.0
    onnx = _export(model, tmp_path / "coco.onnx")
    image = _image()
    cv2.imwrite(str(tmp_path / "dog.png"), image)
    resized = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    with torch.no_grad():
        ref = model([torch.from_numpy(resized[..., ::-1].copy()).permute(2, 0, 1).float() / 255])[0]
    conf = 0.2
    said = {categories[int(k)] for k in ref["labels"][ref["scores"] >= conf]}
    assert said == {"person", "dog"}
    assert main(["convert", str(onnx), "-o", str(tmp_path / "ir"), "--labels", "coco91", "-q"]) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "ir"), str(tmp_path / "dog.png"), "-o", str(tmp_path / "out"),
                 "--conf", str(conf), "-q"]) == 0
    printed = capsys.readouterr().out.splitlines()[0].split(": ", 1)[1].split(", ")
    assert {p.rsplit(" ", 1)[0] for p in printed} == said  # how many is bf16's to say, near the threshold
    records = json.loads((tmp_path / "out/predictions.json").read_text())[0]["detections"]
    assert {(r["class_id"], r["label"]) for r in records} == {(0, "person"), (17, "dog")}  # id = category id - 1


def test_a_served_torchvision_model_is_known_by_its_output_name(ssdlite, tmp_path):
    """A server sends no graph: the padded list ovq appended is known by the name it gave the output, which ovq
    serve lists; the detections are the local model's."""
    import importlib.util

    if importlib.util.find_spec("kserve") is None or importlib.util.find_spec("tritonclient") is None:
        pytest.skip("serving needs the serve extra (pip install 'ovq[serve]')")
    from ovq.serving.remote import RemoteDetector
    from tests.test_serving import OvqServe

    _, _, ir = ssdlite
    assert ov.Core().read_model(ir).outputs[0].get_any_name() == OUTPUT_NAME
    server = OvqServe(Path(ir).parent, name="tv")
    server.start()
    try:
        served = RemoteDetector(server.url(), conf=0.3)(_image())
    finally:
        server.kill()
    local = Detector(ir, conf=0.3)(_image())
    assert len(served) == len(local) >= 5
    np.testing.assert_allclose(served.xyxy, local.xyxy, atol=0.5)
    assert served.class_id.tolist() == local.class_id.tolist()
