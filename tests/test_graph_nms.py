"""Decoding and NMS in the graph (ovq.model.decoders.graph_nms): the same boxes as the Python path."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import heads as head_graphs
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from ovq.core.errors import ConfigError
from ovq.deployment.build import build_pipeline
from ovq.deployment.loader import parse_pipeline_config
from ovq.model.conversion import convert
from ovq.model.decoders.graph_nms import FinalBoxes, nms_variant
from ovq.model.detector import Detector
from ovq.streaming.pipeline import Pipeline

VIDEO = "videos/one-by-one-person-detection.mp4"
SYNTH = "synth://conveyor?width=96&height=64"


def ovq(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ovq", *args], check=False, capture_output=True, text=True,
                          timeout=300)


def _constant_head(tmp: Path, name: str, size: int, head: np.ndarray, family: str, labels: list[str],
                   dtype: type = np.float32) -> Path:
    """An ovq IR whose output is ``head`` whatever the image (a zero times the image keeps the input live);
    ``dtype=np.float16``: input and output in f16, as a whole-model float16 ONNX has them."""
    x = ops.parameter([1, 3, size, size], ov.Type.f16 if dtype == np.float16 else ov.Type.f32, name="images")
    zero = ops.multiply(ops.reduce_mean(x, ops.constant(np.array([0, 1, 2, 3], np.int64)), keep_dims=False),
                        ops.constant(dtype(0)))
    out = ops.add(ops.constant(head.astype(dtype)), zero)
    src = tmp / f"{name}.xml"
    ov.save_model(ov.Model([out], [x], name), str(src))
    return convert(src, tmp / f"{name}_ovq", family=family, labels=labels)


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.fixture(scope="module")
def heads(tmp_path_factory) -> dict[str, Path]:
    """Models of every family with NMS, with crowded, overlapping candidates of 3 classes."""
    tmp = tmp_path_factory.mktemp("heads")
    rng = np.random.default_rng(7)
    g = 16  # FastestDet: 256 x 256 input, 16 x 16 cells
    fd = np.concatenate([
        rng.uniform(0, 1, (1, 1, g, g)),  # objectness (sigmoided)
        rng.normal(0, 1, (1, 2, g, g)),  # offsets (tanh in decoding)
        rng.normal(-2, 0.7, (1, 2, g, g)),  # sizes (sigmoid in decoding)
        _softmax(rng.normal(0, 1.5, (1, 3, g, g)), axis=1),
    ], axis=1)
    n = 8 * 8 + 4 * 4 + 2 * 2  # YOLOX: 64 x 64 input, strides 8/16/32
    yx = np.concatenate([
        rng.normal(0, 1, (1, n, 2)), rng.normal(0.5, 0.8, (1, n, 2)),
        rng.uniform(0, 1, (1, n, 1)), rng.uniform(0, 1, (1, n, 3)),
    ], axis=2)
    n = 300  # YOLO: [1, 4 + nc, N], boxes in pixels of a 64 x 64 input
    # distinct scores: the IR stores constants in f16, and boxes of tied scores come in either order
    distinct = rng.permutation(np.linspace(0.001, 0.999, 3 * n)).reshape(1, 3, n)
    yolo = np.concatenate([rng.uniform(0, 64, (1, 2, n)), rng.uniform(4, 24, (1, 2, n)), distinct], axis=1)
    labels = ["a", "b", "c"]
    # YOLOv5: the anchors in the graph (the family is told apart by them), so its outputs follow the image
    v5 = tmp / "v5.xml"
    ov.save_model(head_graphs.anchor_head(size=(64, 64), nc=3, anchors=3, seed=2), str(v5))
    return {"fastestdet": _constant_head(tmp, "fd", 256, fd, "fastestdet", labels),
            "yolox": _constant_head(tmp, "yx", 64, yx, "yolox", labels),
            "yolo": _constant_head(tmp, "yolo", 64, yolo, "yolo", labels),
            "yolov5": convert(v5, tmp / "v5_ovq", family="yolov5", labels=labels)}


FAMILIES = ["fastestdet", "yolox", "yolo", "yolov5"]


@pytest.fixture(scope="module")
def e2e(tmp_path_factory) -> Path:
    """A model whose outputs are final boxes already (YOLO26's end-to-end head): nothing for the graph to add."""
    tmp = tmp_path_factory.mktemp("e2e")
    ov.save_model(head_graphs.end_to_end_head(size=(64, 64)), str(tmp / "e2e.xml"))
    return convert(tmp / "e2e.xml", tmp / "e2e_ovq", family="yolo_e2e", labels=["a", "b"])


def _same(python, graph, *, px: float = 1e-3) -> None:
    assert len(python) == len(graph), (len(python), len(graph))
    assert graph.class_id.tolist() == python.class_id.tolist()
    np.testing.assert_allclose(graph.confidence, python.confidence, atol=1e-5)
    np.testing.assert_allclose(graph.xyxy, python.xyxy, atol=px)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("options", [
    {}, {"agnostic_nms": True}, {"classes": [1]}, {"classes": [0, 2], "agnostic_nms": True}, {"max_det": 3},
    {"conf": 0.05, "iou": 0.3}, {"conf": 0.5, "iou": 0.8},
], ids=["defaults", "agnostic", "classes", "classes-agnostic", "max_det", "low", "high"])
def test_the_graph_keeps_what_python_keeps(heads, family, options):
    det = Detector(heads[family], precision="f32", **options)
    graph = det.with_nms_in_graph()
    assert graph.nms_in_graph and not det.nms_in_graph and graph.decoder.family == family
    assert [o.get_partial_shape()[1].get_length() for o in graph.compiled.outputs] == [6]
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)  # boxes are mapped back to a 160 x 90 frame
    python, in_graph = det(image), graph(image)
    assert len(python) >= (1 if "max_det" in options else 3)  # crowded enough for NMS to decide something
    _same(python, in_graph)
    if "max_det" in options:
        assert len(in_graph) == 3


def test_a_float16_model_decodes_in_the_graph_as_in_python(tmp_path):
    """An ONNX converted to float16 whole (onnxconverter-common's ``convert_float_to_float16`` with
    ``keep_io_types=False``) has f16 outputs: ``ovq run --nms graph`` (and ``--resize graph``, which takes the
    graph's NMS) stopped with OpenVINO's traceback 'Arguments do not have the same element type (arg0 element
    type: f16, arg1 element type: f32)'. The converted IR outputs f32, as every stage expects."""
    rng = np.random.default_rng(8)
    scores = rng.permutation(np.linspace(0.001, 0.999, 3 * 100)).reshape(1, 3, 100)
    head = np.concatenate([rng.uniform(0, 64, (1, 2, 100)), rng.uniform(4, 24, (1, 2, 100)), scores], axis=1)
    model = _constant_head(tmp_path, "half", 64, head, "yolo", ["a", "b", "c"], dtype=np.float16)
    assert [o.get_element_type() for o in ov.Core().read_model(model).outputs] == [ov.Type.f32]
    det = Detector(model, precision="f32")
    image = np.random.default_rng(1).integers(0, 255, (90, 160, 3), dtype=np.uint8)
    python = det(image)
    assert len(python) >= 3
    _same(python, det.with_nms_in_graph()(image))


def test_conf_may_rise_per_call_but_not_fall(heads):
    det = Detector(heads["fastestdet"], precision="f32", conf=0.1)
    graph = det.with_nms_in_graph()
    image = np.full((64, 64, 3), 100, np.uint8)
    _same(det(image, conf=0.4), graph(image, conf=0.4))
    with pytest.raises(ConfigError, match="under 0.1"):
        graph(image, conf=0.05)
    assert det.with_nms_in_graph(conf=0.05)(image, conf=0.05) is not None  # a variant built lower can


def test_a_variant_is_compiled_once_and_composes_with_the_resize(heads):
    det = Detector(heads["yolox"], precision="f32")
    graph = det.with_nms_in_graph()
    assert det.with_nms_in_graph() is graph and graph.with_nms_in_graph() is graph
    both = graph.for_source(90, 160)
    assert both.nms_in_graph and both.source_size == (90, 160) and both is det.for_source(90, 160).with_nms_in_graph()
    image = np.random.default_rng(3).integers(0, 255, (90, 160, 3), dtype=np.uint8)
    _same(det.for_source(90, 160)(image), both(image))


def test_families_without_graph_decoding_say_so(e2e):
    det = Detector(e2e)
    assert det.why_not_nms_in_graph() == "family yolo_e2e decodes in Python only"
    with pytest.raises(ConfigError, match="NMS in the graph: family yolo_e2e decodes in Python only"):
        det.with_nms_in_graph()
    with pytest.raises(ConfigError, match="NMS in the graph: family yolo_e2e"):
        Pipeline(det, [SYNTH], nms_in_graph=True, stats_interval=0, max_frames=1).run()


@pytest.mark.parametrize("command", ["run", "capacity"])
def test_nms_graph_for_a_family_without_it_is_refused_before_compiling(tmp_path, assets, caplog, capsys, command):
    """`ovq run RTDETR_IR --nms graph` logged 'compiled rt.xml (rtdetr) on AUTO' (run's default device) and opened
    the video before it said the family decodes in Python only; now it is said before anything compiles or opens."""
    import logging

    from ovq.cli import main

    ov.save_model(head_graphs.end_to_end_head(normalised=True), str(tmp_path / "rt.xml"))
    ir = convert(tmp_path / "rt.xml", tmp_path / "rt")
    args = {"run": ["--max-frames", "2"], "capacity": ["--fps", "5"]}[command]
    with caplog.at_level(logging.INFO, logger="ovq"):
        code = main([command, str(ir), "--source", str(assets / VIDEO), "--nms", "graph", *args])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"ovq {command}: error: NMS in the graph: family rtdetr decodes in Python only")
    assert not [r.getMessage() for r in caplog.records if "compiled" in r.getMessage() or "opened" in r.getMessage()]


def test_the_pipeline_takes_the_graph_on_cpu_by_default_and_python_when_told(heads, e2e):
    runs = {}
    for name, model, nms in [("auto", heads["fastestdet"], None), ("python", heads["fastestdet"], False),
                             ("other family", e2e, None)]:
        p = Pipeline(Detector(model, device="CPU"), [SYNTH], nms_in_graph=nms,
                     stats_interval=0, max_frames=3)
        runs[name] = p.run()
    assert runs["auto"].extra["nms"] == "graph" and "NMS in graph" in runs["auto"].lines()[0]
    assert runs["python"].extra["nms"] == "python" and "NMS" not in runs["python"].lines()[0]
    assert runs["other family"].extra["nms"] == "python"
    assert runs["auto"].frames == runs["python"].frames == 3


def test_the_cli_names_a_wrong_nms_mode(tiny):
    r = ovq("run", str(tiny), "--source", SYNTH, "--max-frames", "2", "--nms", "gpu")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "nms" in r.stderr and "gpu" in r.stderr and "graph" in r.stderr


# --- the shared detectors ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frames(assets) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(assets / VIDEO))
    video = [cap.read()[1] for _ in range(120)][::3]
    cap.release()
    images = sorted((assets / "coco128/images").rglob("*.jpg"))[:40]
    return video + [cv2.imread(str(p)) for p in images]


@pytest.mark.parametrize("model", ["models/fastestdet/FastestDet.onnx", "models/yolox_nano/yolox_nano.onnx"])
def test_the_shared_detectors_give_the_same_boxes(assets, frames, model):
    """40 frames of the person video and 40 COCO images at conf 0.1 (many classes, crowded scenes), at the
    device's default precision (bf16 on AMX and AVX-512 BF16 CPUs: the decoding ops after the last convolution
    stay f32 there too, or the boxes would move by pixels)."""
    det = Detector(assets / model, conf=0.1)
    graph = det.with_nms_in_graph()
    boxes = 0
    for image in frames:
        python, in_graph = det(image), graph(image)
        _same(python, in_graph, px=0.01)
        boxes += len(python)
    assert boxes > 200, boxes


def test_a_run_of_the_shared_video_reports_the_graph(assets, tmp_path):
    out = tmp_path / "r.jsonl"
    r = ovq("run", str(assets / "models/fastestdet/FastestDet.onnx"), "--source", str(assets / VIDEO), "--device", "CPU",
                "--max-frames", "30", "--jsonl", str(out), "--summary-json", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    assert "NMS in graph" in r.stdout
    assert json.loads((tmp_path / "s.json").read_text())["nms"] == "graph"
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 30 and sum(len(rec["detections"]) for rec in records) >= 25


def test_params_replace_is_hashable():
    """Variants are cached by their decoding settings."""
    from ovq.model.decoders import DecodeParams

    p = DecodeParams(input_size=(8, 8), conf_threshold=0.2, iou_threshold=0.5, classes=(1,))
    assert hash(p) == hash(replace(p)) and replace(p, conf_threshold=0.3) != p


@pytest.mark.parametrize("nms, expected", [(None, "graph"), ("python", "python"), ("graph", "graph")])
def test_nms_reaches_the_pipeline_from_yaml(heads, tmp_path, nms, expected):
    data = {"model": str(heads["fastestdet"]), "sources": [SYNTH], "device": "CPU", "max_frames": 2,
            "stats_interval": 0, **({"nms": nms} if nms else {})}
    summary = build_pipeline(parse_pipeline_config(data, tmp_path / "p.yaml", environ={})).run()
    assert summary.extra["nms"] == expected


def test_a_wrong_nms_in_yaml_is_named(heads, tmp_path):
    data = {"model": str(heads["fastestdet"]), "sources": [SYNTH], "nms": "npu"}
    with pytest.raises(ConfigError, match="p.yaml: nms"):
        parse_pipeline_config(data, tmp_path / "p.yaml", environ={})


@pytest.mark.parametrize("family", FAMILIES)
def test_the_graph_keeps_only_the_top_max_nms_candidates_as_python_does(heads, family):
    det = Detector(heads[family], precision="f32", conf=0.05)
    params = replace(det.params, max_nms=6)
    compiled = ov.Core().compile_model(nms_variant(det.model, det.decoder, params), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    image = np.random.default_rng(4).integers(0, 255, (64, 64, 3), dtype=np.uint8)  # YOLOv5's scores follow it
    tensor, rinfo = det.preprocess(image)
    graph = FinalBoxes(det.decoder).decode([compiled(tensor)[0]], rinfo, params)
    python = det.decoder.decode([det.compiled(tensor)[0]], rinfo, params)
    assert 1 <= len(python) <= 6 and len(det.decoder.decode([det.compiled(tensor)[0]], rinfo, det.params)) > 6
    _same(python, graph)


@pytest.mark.parametrize("family", ["fastestdet", "yolox", "yolo"])
def test_outputs_that_are_not_the_family_fail_in_the_graph_as_in_python(tmp_path, family):
    """Objectness (YOLO: class scores) as raw logits (up to 6) is a ModelError on both paths, not boxes with
    clipped scores."""
    from ovq.core.errors import ModelError

    rng = np.random.default_rng(5)
    if family == "fastestdet":
        head = rng.normal(0, 1, (1, 8, 16, 16))
        head[:, 0] = rng.uniform(1.5, 6, (16, 16))
        head[:, 5:] = _softmax(head[:, 5:], axis=1)  # valid class scores: only the objectness is wrong
        model = _constant_head(tmp_path, "fd_bad", 256, head, family, ["a", "b", "c"])
    elif family == "yolo":
        head = rng.uniform(4, 40, (1, 7, 50))
        head[:, 4:] = rng.uniform(1.5, 6, (3, 50))
        model = _constant_head(tmp_path, "yolo_bad", 64, head, family, ["a", "b", "c"])
    else:
        head = rng.normal(0, 1, (1, 84, 8))
        head[..., 4] = rng.uniform(1.5, 6, 84)
        head[..., 5:] = rng.uniform(0.5, 1, (1, 84, 3))
        model = _constant_head(tmp_path, "yx_bad", 64, head, family, ["a", "b", "c"])
    det = Detector(model, precision="f32")
    image = np.zeros((64, 64, 3), np.uint8)
    for detector in (det, det.with_nms_in_graph()):
        with pytest.raises(ModelError, match=r"not in \[0, 1\]"):
            detector(image)


@pytest.mark.parametrize("command", ["run", "capacity"])
def test_nms_and_decode_help_say_what_they_apply_to(command, capsys):
    """--nms's help left yolox_decoded out of the families that decode in the graph, and --decode's said "video
    decoding of files", though stream URLs are opened with the same hardware decoding option."""
    import re

    from ovq.cli import main
    from ovq.model.decoders import BUILTIN

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    listed = re.search(r"the families with NMS: ([\w, ]+)\)", text)[1].split(", ")
    assert listed == [name for name, dec in BUILTIN.items() if callable(getattr(dec, "graph_decode", None))]
    assert "video decoding of files and stream URLs:" in text
