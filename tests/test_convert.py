"""Conversion: preprocessing in the graph, metadata in rt_info, bad input rejected cleanly."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import heads
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from ovq.cli import main
from ovq.core.errors import ConfigError, ModelError
from ovq.core.metadata import read_info
from ovq.model.conversion import convert, prepare
from ovq.model.decoders import SourcePreprocessing


def _echo_model(h: int = 8, w: int = 12) -> ov.Model:
    """A tiny 'yolo-shaped' model whose first 3 output rows are its input image (to see preprocessing)."""
    x = ops.parameter([1, 3, h, w], ov.Type.f32, name="images")
    both = ops.concat([x, x], axis=1)
    out = ops.reshape(both, ops.constant(np.array([1, 6, h * w], np.int64)), special_zero=False)
    return ov.Model([out], [x], "echo")


@pytest.fixture()
def echo_xml(tmp_path: Path) -> Path:
    path = tmp_path / "echo.xml"
    ov.save_model(_echo_model(), str(path), compress_to_fp16=False)
    return path


@pytest.mark.parametrize(
    ("pre", "expect"),
    [
        (SourcePreprocessing(color="RGB", scale=(255.0,) * 3), lambda img: img[..., ::-1] / 255.0),
        (SourcePreprocessing(color="BGR", scale=(1.0,) * 3), lambda img: img.astype(np.float32)),
        (
            SourcePreprocessing(color="RGB", mean=(123.675, 116.28, 103.53), scale=(58.395, 57.12, 57.375)),
            lambda img: (img[..., ::-1] - np.array([123.675, 116.28, 103.53])) / np.array([58.395, 57.12, 57.375]),
        ),
    ],
)
def test_preprocessing_is_built_into_the_graph(echo_xml, tmp_path, pre, expect):
    xml = convert(echo_xml, tmp_path / "out", family="yolo", labels=["a", "b"], preprocessing=pre)
    core = ov.Core()
    model = core.read_model(str(xml))
    port = model.inputs[0]
    assert port.get_element_type() == ov.Type.u8 and list(port.get_shape()) == [1, 8, 12, 3]
    image = np.random.default_rng(1).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    out = compiled(image[None])[0][0, :3].reshape(3, 8, 12).transpose(1, 2, 0)
    np.testing.assert_allclose(out, expect(image.astype(np.float32)), atol=1e-4)
    info = read_info(model)
    assert info.family == "yolo" and info.labels == ["a", "b"] and info.input_size == (8, 12)


def test_metadata_round_trip_and_reconvert_keeps_info(echo_xml, tmp_path):
    first = convert(echo_xml, tmp_path / "a", family="yolo", labels=["x", "y"], conf_threshold=0.4)
    second = convert(first, tmp_path / "b")
    _, info = prepare(second)
    assert info.labels == ["x", "y"] and info.conf_threshold == pytest.approx(0.4)
    with pytest.raises(ModelError, match="already converted"):
        prepare(second, imgsz=16)


@pytest.mark.parametrize(("mask", "dir_mode", "file_mode"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)],
                         ids=["022", "077"])
def test_converted_model_follows_the_umask(echo_xml, tmp_path, mask, dir_mode, file_mode):
    """A model converted by one user is readable by a service user when the umask says so (not always 0700)."""
    out = tmp_path / "converted"
    old = os.umask(mask)
    try:
        assert main(["convert", str(echo_xml), "-o", str(out), "--family", "yolo", "--labels", "a,b"]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == dir_mode
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {
        "model.xml": file_mode, "model.bin": file_mode}


def test_dynamic_input_gets_static_shape(tmp_path):
    x = ops.parameter(ov.PartialShape([-1, 3, -1, -1]), ov.Type.f32, name="images")
    pooled = ops.reduce_mean(x, ops.constant(np.array([2, 3], np.int64)), keep_dims=False)  # [N, 3]
    tiled = ops.tile(ops.unsqueeze(pooled, ops.constant(np.array([2], np.int64))), ops.constant(np.array([1, 2, 10], np.int64)))
    model = ov.Model([tiled], [x], "dyn")  # [N, 6, 10] -> 'yolo' with 2 classes once static
    path = tmp_path / "dyn.xml"
    ov.save_model(model, str(path))
    xml = convert(path, tmp_path / "out", imgsz=64, family="yolo")
    m = ov.Core().read_model(str(xml))
    assert list(m.inputs[0].get_shape()) == [1, 64, 64, 3]
    assert not m.outputs[0].get_partial_shape().is_dynamic


def test_family_must_be_given_when_outputs_do_not_say(tmp_path):
    x = ops.parameter([1, 3, 8, 8], ov.Type.f32, name="images")
    out = ops.reduce_mean(x, ops.constant(np.array([1, 2, 3], np.int64)), keep_dims=False)
    path = tmp_path / "odd.xml"
    ov.save_model(ov.Model([out], [x], "odd"), str(path))
    with pytest.raises(ModelError, match="pass --family"):
        prepare(path)


# --- real models --------------------------------------------------------------------------------


def _reference_yolox_input(image: np.ndarray, size: int = 416) -> np.ndarray:
    """YOLOX's own preprocessing: ratio resize (truncated), image top-left, pad 114, BGR float 0..255."""
    r = min(size / image.shape[0], size / image.shape[1])
    resized = cv2.resize(image, (int(image.shape[1] * r), int(image.shape[0] * r)), interpolation=cv2.INTER_LINEAR)
    padded = np.full((size, size, 3), 114, np.uint8)
    padded[: resized.shape[0], : resized.shape[1]] = resized
    return padded.transpose(2, 0, 1)[None].astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rel", "input_fn"),
    [
        ("models/yolox_nano/yolox_nano.onnx", lambda img: img.transpose(2, 0, 1)[None].astype(np.float32)),
        ("models/fastestdet/FastestDet.onnx", lambda img: img.transpose(2, 0, 1)[None].astype(np.float32) / 255.0),
    ],
)
def test_ir_output_equals_source_onnx(assets, tmp_path, rel, input_fn):
    src = assets / rel
    xml = convert(src, tmp_path / "ir")
    core = ov.Core()
    ir = core.compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    onnx = core.compile_model(core.read_model(str(src)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    h, w = read_info(core.read_model(str(xml))).input_size
    image = cv2.resize(cv2.imread(str(assets / "images" / "dog.jpg")), (w, h))  # already input-sized
    got = ir(image[None])[0]
    want = onnx(input_fn(image))[0]
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= 1e-3


@pytest.mark.slow
def test_yolox_onnx_conversion_fuses_swish(assets):
    model, info = prepare(assets / "models/yolox_nano/yolox_nano.onnx")
    types = [op.get_type_name() for op in model.get_ops()]
    assert types.count("Swish") > 50 and info.family == "yolox" and info.input_size == (416, 416)
    assert not info.letterbox_center and info.pad_value == 114 and info.labels[16] == "dog"


# --- bad input: exit code 2, one line naming the file, nothing written ---------------------------


def _bad_inputs(assets: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    omz = assets / "models/person-detection-retail-0013-fp32"
    truncated = tmp / "truncated"
    truncated.mkdir()
    shutil.copy(omz / "person-detection-retail-0013.xml", truncated / "m.xml")
    data = (omz / "person-detection-retail-0013.bin").read_bytes()
    (truncated / "m.bin").write_bytes(data[: len(data) // 3])
    onnx = (assets / "models/yolox_nano/yolox_nano.onnx").read_bytes()
    (tmp / "corrupt.onnx").write_bytes(onnx[:4000])
    (tmp / "garbage.onnx").write_bytes(b"this is not a model\n")
    return {
        "legacy": (assets / "models/person-detection-retail-0013-irv4-legacy", "legacy OpenVINO IR v4"),
        "truncated": (truncated / "m.xml", "weights"),
        "corrupt": (tmp / "corrupt.onnx", "cannot read ONNX model"),
        "garbage": (tmp / "garbage.onnx", "not an ONNX model"),
        "missing": (tmp / "missing.onnx", "no such file"),
    }


@pytest.mark.parametrize("case", ["legacy", "truncated", "corrupt", "garbage", "missing"])
def test_bad_model_files_exit_2_with_one_line(assets, tmp_path, capsys, case):
    path, reason = _bad_inputs(assets, tmp_path)[case]
    out_dir = tmp_path / "out"
    assert main(["convert", str(path), "-o", str(out_dir), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(path.name) in err[0] and reason.lower() in err[0].lower()
    assert not out_dir.exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_bad_model_subprocess_has_no_traceback(assets, tmp_path):
    legacy = assets / "models/person-detection-retail-0013-irv4-legacy"
    proc = subprocess.run(
        [sys.executable, "-m", "ovq", "predict", str(legacy), str(assets / "images/dog.jpg"), "-o", str(tmp_path / "o")],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("ovq predict: error:")
    assert not (tmp_path / "o").exists()


# --- Ultralytics .pt (random weights built by Ultralytics in the test) ----------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "family", "out_shape"), [("yolov8n", "yolo", (1, 84, 2100)), ("yolo26n", "yolo_e2e", (1, 300, 6))])
def test_ultralytics_pt_converts_and_decodes(tmp_path, monkeypatch, arch, family, out_shape):
    ultralytics = pytest.importorskip("ultralytics", reason="Ultralytics is an optional extra")
    monkeypatch.chdir(tmp_path)
    pt = tmp_path / f"{arch}.pt"
    ultralytics.YOLO(f"{arch}.yaml").save(str(pt))
    xml = convert(pt, tmp_path / "ir", imgsz=320)
    assert not list(tmp_path.glob("*_openvino_model"))  # nothing written beside the source
    from ovq.model.detector import Detector

    det = Detector(xml, conf=0.0)
    assert det.info.family == family and len(det.labels) == 80
    assert tuple(det.compiled.outputs[0].get_shape()) == out_shape
    dets = det(np.random.default_rng(0).integers(0, 255, (240, 400, 3), dtype=np.uint8))
    assert len(dets) > 0 and dets.xyxy.shape[1] == 4
    assert (dets.xyxy[:, [0, 2]] <= 400).all() and (dets.xyxy[:, [1, 3]] <= 240).all()
    assert (dets.class_id >= 0).all() and (dets.class_id < 80).all()


# --- option values: checked before anything is converted or written -------------------------------


def test_a_lone_preprocessing_option_keeps_the_familys_others(assets, tmp_path):
    """`--resize stretch` alone on YOLOX (BGR, 0-255 input) once reset the colour order and scale to the default
    RGB / 255 as well: a model that converted fine and found nothing."""
    onnx = assets / "models/yolox_nano/yolox_nano.onnx"
    assert main(["convert", str(onnx), "-o", str(tmp_path / "s"), "--resize", "stretch", "-q"]) == 0
    info = read_info(ov.Core().read_model(str(tmp_path / "s/model.xml")))
    assert info.resize == "stretch"
    assert info.extra["source_preprocessing"] == {"color": "BGR", "mean": [0.0] * 3, "scale": [1.0] * 3}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--scale", "0", "0", "0"], "error: --scale [0.0, 0.0, 0.0]: a channel divided by 0"),  # was "scale"
        # converted with exit 0: every pixel's sign flipped
        (["--scale", "-1", "1", "1"], "error: --scale [-1.0, 1.0, 1.0]: a divisor below 0 flips the channel's sign"),
        (["--labels", ""], "error: --labels '': expected a comma-separated list"),  # kept the model's own, exit 0
        (["--mean", "nan", "0", "0"], "error: --mean [nan, 0.0, 0.0]: expected three finite numbers"),
        (["--conf", "5"], "error: --conf 5.0: expected a number from 0 to 1"),
        (["--iou", "nan"], "error: --iou nan: expected a number from 0 to 1"),
        (["--imgsz", "32", "32", "32"], "--imgsz 32 32 32"),
        # 0 and -3 reached OpenVINO: "cannot reshape input to 0x0: While validating node ... Kernel after dilation"
        (["--imgsz", "0"], "--imgsz 0: expected N (square) or H W, in pixels (at least 1)"),
        (["--imgsz", "-3", "8"], "--imgsz -3 8: expected N (square) or H W, in pixels (at least 1)"),
        (["--labels", "{binary}"], "not a UTF-8 text file"),
        (["--labels", "{missing}"], "missing.txt: No such file"),
        (["--labels", "{blank}"], "line 2 is blank"),
    ],
    ids=["scale0", "scale-negative", "labels-empty", "mean-nan", "conf5", "iou-nan", "imgsz3", "imgsz0", "imgsz-negative", "labels-binary",
         "labels-missing", "labels-blank"],
)
def test_bad_option_values_exit_2_with_one_line(echo_xml, tmp_path, capsys, args, says):
    (tmp_path / "binary.txt").write_bytes(bytes(range(128, 256)) * 8)
    (tmp_path / "blank.txt").write_text("a\n\nb\n")
    names = {"{binary}": tmp_path / "binary.txt", "{missing}": tmp_path / "missing.txt", "{blank}": tmp_path / "blank.txt"}
    args = [str(names.get(a, a)) for a in args]
    out = tmp_path / "out"
    assert main(["convert", str(echo_xml), "-o", str(out), "--family", "yolo", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("imgsz", [0, (8, -12), (8.5, 12), True, (8, 12, 3)])
def test_an_input_size_that_is_no_size_is_refused_before_converting(echo_xml, imgsz):
    with pytest.raises(ConfigError, match=r"imgsz .*: expected an input size in pixels, N \(square\) or \(H, W\)"):
        prepare(echo_xml, imgsz=imgsz, family="yolo")


def _stride_32_model() -> ov.Model:
    """The input beside itself pooled by 32 and upsampled back: the two line up only at multiples of 32, as a
    detector's upsampled feature maps and its skip connections do."""
    x = ops.parameter([1, 3, 64, 64], ov.Type.f32, name="images")
    pooled = ops.avg_pool(x, [32, 32], [0, 0], [0, 0], [32, 32], exclude_pad=True)
    up = ops.interpolate(pooled, ops.constant(np.array([32.0, 32.0], np.float32)), "nearest", "scales",
                         axes=ops.constant(np.array([2, 3], np.int64)))
    out = ops.reshape(ops.concat([x, up], axis=1), ops.constant(np.array([0, 6, -1], np.int64)), special_zero=True)
    return ov.Model([out], [x], "stride32")


STRIDE_32 = "its sides must be multiples of 32, the model's largest stride"


@pytest.mark.parametrize(("model", "imgsz", "says"), [
    ("stride", ["100"], f"cannot reshape input 'images' to 100x100: {STRIDE_32} (96x96 and 128x128 reshape)"),
    ("stride", ["64", "70"], f"cannot reshape input 'images' to 64x70: {STRIDE_32} (64x64 and 64x96 reshape)"),
    ("echo", ["16"], ("exported for input 8x12, and its graph does not run at 16x16 (sizes fixed at export); "
                      "export it at 16x16, or with a dynamic input size")),
], ids=["off-stride", "off-stride-hw", "fixed-size"])
def test_a_size_the_model_cannot_reshape_to_is_one_line(echo_xml, tmp_path, capsys, model, imgsz, says):
    """`--imgsz 417` for YOLOX-Nano printed OpenVINO's 'While validating node 'opset1::Concat Concat_40 (opset8::Slice
    Slice_9[0]:f32[1,3,209,209], ...' cut at 300 characters mid-word; now the size the model needs when it is one of
    the stride's multiples, else OpenVINO's node and reason in one line."""
    src = echo_xml
    if model == "stride":
        src = tmp_path / "stride.xml"
        ov.save_model(_stride_32_model(), str(src), compress_to_fp16=False)
    node = next(op.get_friendly_name() for op in ov.Core().read_model(str(echo_xml)).get_ops()
                if op.get_type_name() == "Reshape")
    out = tmp_path / "out"
    assert main(["convert", str(src), "-o", str(out), "--family", "yolo", "--imgsz", *imgsz]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ovq convert: error: {src}: {says.format(node=node)}"]
    assert not out.exists()


def test_yolox_nano_at_417_says_it_needs_a_multiple_of_32(assets, tmp_path, capsys):
    src = assets / "models/yolox_nano/yolox_nano.onnx"
    assert main(["convert", str(src), "-o", str(tmp_path / "out"), "--imgsz", "417"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"ovq convert: error: {src}: cannot reshape input 'images' to 417x417: {STRIDE_32} (416x416 and 448x448 reshape)"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "text"),
    [("names.yaml", "- cat\n- dog\n"), ("names.json", '["cat", "dog"]\n'), ("names.json", '{"1": "dog", "0": "cat"}'),
     ("data.yaml", "path: ../pets\ntrain: images/train\nnames:\n  0: cat\n  1: dog\n"),
     ("data.yml", "names: [cat, dog]\nnc: 2\n")],
    ids=["yaml-list", "json-list", "json-mapping", "dataset-yaml", "yml-names"],
)
def test_labels_in_a_json_or_yaml_file_are_read_as_data(echo_xml, tmp_path, name, text):
    """They were read a line at a time: a YAML list gave labels '- cat' and '- dog', a JSON list one label
    '["cat", "dog"]', and an Ultralytics data YAML its lines 'path: ../pets', 'names:', '0: cat'..."""
    (tmp_path / name).write_text(text)
    assert main(["convert", str(echo_xml), "-o", str(tmp_path / "o"), "--family", "yolo",
                 "--labels", str(tmp_path / name), "-q"]) == 0
    assert read_info(ov.Core().read_model(str(tmp_path / "o/model.xml"))).labels == ["cat", "dog"]


@pytest.mark.parametrize(("name", "text", "says"), [
    ("bad.json", "[cat", "bad.json:1: not valid JSON"),
    ("bad.yaml", "size: 3\n", "expected a list of class names, a mapping 0: name, 1: name..., or a dataset file"),
    ("gap.yaml", "names: {0: cat, 2: dog}\n", "expected a list of class names"),
])
def test_a_labels_file_that_holds_no_names_is_one_line(echo_xml, tmp_path, capsys, name, text, says):
    (tmp_path / name).write_text(text)
    assert main(["convert", str(echo_xml), "-o", str(tmp_path / "o"), "--family", "yolo",
                 "--labels", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["names.txt", "names.json"])
def test_a_labels_file_saved_with_a_byte_order_mark_names_its_first_class_plainly(echo_xml, tmp_path, capsys, name):
    """Windows Notepad's UTF-8 BOM became part of the first label: 'predict --classes cat' said "the model has no
    class 'cat'; did you mean '\ufeffcat'?" and eval printed the mark before it."""
    text = "cat\ndog\n" if name.endswith(".txt") else '["cat", "dog"]'
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert main(["convert", str(echo_xml), "-o", str(tmp_path / "o"), "--family", "yolo",
                 "--labels", str(tmp_path / name), "-q"]) == 0
    assert read_info(ov.Core().read_model(str(tmp_path / "o/model.xml"))).labels == ["cat", "dog"]


def test_labels_file_with_blank_lines_at_the_end_is_fine(echo_xml, tmp_path):
    (tmp_path / "labels.txt").write_text("cat\ndog\n\n\n")
    assert main(["convert", str(echo_xml), "-o", str(tmp_path / "o"), "--family", "yolo",
                 "--labels", str(tmp_path / "labels.txt"), "-q"]) == 0
    assert read_info(ov.Core().read_model(str(tmp_path / "o/model.xml"))).labels == ["cat", "dog"]


def test_reconverting_refuses_what_the_graph_fixed(echo_xml, tmp_path, capsys):
    first = convert(echo_xml, tmp_path / "a", family="yolo", labels=["x", "y"])
    for args in (["--color", "BGR"], ["--resize", "stretch"], ["--mean", "1", "2", "3"]):
        assert main(["convert", str(first), "-o", str(tmp_path / "b"), *args]) == 2
        assert "already converted" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_converting_into_the_models_own_folder_is_refused_before_any_work(echo_xml, tmp_path, capsys):
    """'ovq convert IR -o IR --fp16' replaced the FP32 model with FP16 weights, exit 0: the FP32 model was gone (as
    was a source IR named model.xml, replaced by its conversion); quantize was refused the same way."""
    ir = convert(echo_xml, tmp_path / "ir", family="yolo", labels=["x", "y"]).parent
    raw = tmp_path / "raw"
    raw.mkdir()
    ov.save_model(_echo_model(), str(raw / "model.xml"), compress_to_fp16=False)
    for folder in (ir, raw):
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        for src, out in ((folder, folder), (folder / "model.xml", folder), (folder / "model.xml", f"{folder}/./")):
            assert main(["convert", str(src), "-o", str(out), "--fp16", "--family", "yolo"]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert err == [(f"ovq convert: error: {out}: holds the model being converted (model.xml), which the "
                            "converted model would replace; give another output folder (-o)")]
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert main(["convert", str(echo_xml), "-o", str(echo_xml.parent), "--family", "yolo", "-q"]) == 0  # echo.xml
    assert (echo_xml.parent / "model.xml").is_file() and echo_xml.is_file()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{{", "not JSON"),
        ("[]", "not a JSON object"),
        ("{}", "lacks family, labels, input_size"),
        ('{"family": "yolo", "labels": ["x", "y"], "input_size": "abc"}', "input_size 'abc'"),
        ('{"family": "yolo", "labels": ["x", "y"], "input_size": [8, 12], "conf_threshold": 5}', "conf_threshold 5"),
    ],
    ids=["json", "list", "empty", "size", "conf"],
)
def test_corrupt_ovq_metadata_is_one_line_naming_the_file(echo_xml, tmp_path, capsys, text, says):
    model = ov.Core().read_model(str(convert(echo_xml, tmp_path / "a", family="yolo", labels=["x", "y"])))
    model.set_rt_info(text, ["ovq", "info"])
    ov.save_model(model, str(tmp_path / "bad.xml"))
    with pytest.raises(ModelError, match="bad.xml: ovq metadata") as excinfo:
        prepare(tmp_path / "bad.xml")
    assert says in str(excinfo.value)
    assert main(["convert", str(tmp_path / "bad.xml"), "-o", str(tmp_path / "o")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("which", [".onnx", ".bin"])
def test_a_model_file_it_may_not_read_says_permission_denied(echo_xml, tmp_path, which):
    """The ONNX front end said "not an ONNX model" of it, OpenVINO "cannot read model: Loading input model"."""
    if which == ".onnx":
        src = heads.onnx_yolo(tmp_path / "m.onnx")
    else:
        src = convert(echo_xml, tmp_path / "m", family="yolo", labels=["a", "b"])
    src.with_suffix(which).chmod(0)
    # root reads anything: without the capabilities that let it, it is refused like anyone else
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    if drop and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to drop root's file-reading capabilities")
    proc = subprocess.run([*drop, sys.executable, "-m", "ovq", "convert", str(src), "-o", str(tmp_path / "o"), "-q"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"ovq convert: error: {src.with_suffix(which)}: Permission denied"]


def _external_data_onnx(tmp_path: Path) -> Path:
    """A tiny ONNX saved as ``model.onnx`` with its weights in ``model.data`` beside it."""
    import onnx

    proto = onnx.load(str(heads.onnx_yolo(tmp_path / "src.onnx")))
    model = tmp_path / "model.onnx"
    onnx.save_model(proto, str(model), save_as_external_data=True, location="model.data", size_threshold=0)
    assert (tmp_path / "model.data").stat().st_size > 5000
    return model


@pytest.mark.parametrize("command", ["convert", "predict"])
def test_missing_external_data_file_is_named(tmp_path, capsys, command):
    """OpenVINO said only "cannot read ONNX model: Loading input model" of it."""
    pytest.importorskip("onnx", reason="the test builds its model with onnx.helper")
    model = _external_data_onnx(tmp_path)
    (tmp_path / "model.data").unlink()
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    args = [str(image)] if command == "predict" else []
    assert main([command, str(model), *args, "-o", str(tmp_path / "out"), "-q"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        (f"ovq {command}: error: {model}: its external data file {tmp_path / 'model.data'} is missing "
         "(ONNX keeps weights there; copy it next to the model)")]
    assert not (tmp_path / "out").exists()


def test_missing_external_data_file_is_named_without_the_onnx_package(tmp_path, monkeypatch):
    """Without ``onnx`` installed, OpenVINO's error text gives the file's name."""
    pytest.importorskip("onnx", reason="the test builds its model with onnx.helper")
    model = _external_data_onnx(tmp_path)
    (tmp_path / "model.data").unlink()
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(ModelError) as err:
        prepare(model)
    assert str(err.value) == (f"{model}: its external data file {tmp_path / 'model.data'} is missing "
                              "(ONNX keeps weights there; copy it next to the model)")


def test_truncated_external_data_file_is_named(tmp_path):
    pytest.importorskip("onnx", reason="the test builds its model with onnx.helper")
    model = _external_data_onnx(tmp_path)
    data = tmp_path / "model.data"
    size = data.stat().st_size
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(ModelError) as err:
        prepare(model)
    assert str(err.value).startswith(f"{model}: its external data file {data} is shorter than the model says (1000 bytes")
    assert f"up to byte {size}" in str(err.value)


def test_a_model_with_its_external_data_converts(tmp_path):
    pytest.importorskip("onnx", reason="the test builds its model with onnx.helper")
    _, info = prepare(_external_data_onnx(tmp_path))
    assert info.family == "yolo" and info.input_size == (64, 64)
