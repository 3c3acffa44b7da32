"""Models a user exports with torch itself: ``torch.onnx.export`` (torch 2.9+: the dynamo exporter by default).

Fast tests build the graphs such an export gives with ``openvino.opset``; slow ones export real models (random
weights, no downloads) with the dynamo exporter, which needs ``onnxscript``, and compare ovq's boxes with torch's.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from heads import dfl_head, end_to_end_head, save

from ovq.cli import main
from ovq.core.errors import ModelError
from ovq.model.conversion import convert
from ovq.model.detector import Detector

NC = 2


def _with_raw_maps(size=(64, 64), *, flat: bool = True, twice: bool = False, cells_off: int = 0) -> ov.Model:
    """``dfl_head``'s predictions followed by what Ultralytics' Detect head returns beside them in eval mode: box bins
    [1, 64, M] and class logits [1, nc, M] (``flat``; 8.3 returned only the maps), the feature maps [1, C, H, W]
    (``twice``: YOLO26's second head's bins, logits and the same maps again); ``cells_off`` spoils M."""
    model = dfl_head(size, nc=NC)
    x = model.get_parameters()[0]
    maps = [ops.avg_pool(x, [s, s], [0, 0], [0, 0], [s, s], exclude_pad=True) for s in (8, 16, 32)]
    m = sum((size[0] // s) * (size[1] // s) for s in (8, 16, 32)) + cells_off
    extras = []
    for _ in range(2 if twice else 1):
        if flat:
            extras += [ops.constant(np.zeros((1, 64, m), np.float32)), ops.constant(np.zeros((1, NC, m), np.float32))]
        extras += [ops.relu(p) for p in maps]
    outputs = [model.outputs[0].get_node().input_value(0), *(e.output(0) for e in extras)]
    return ov.Model(outputs, [x], "ultralytics_eval_mode")


@pytest.mark.parametrize("flat, twice", [(True, False), (False, False), (True, True)])
def test_ultralytics_head_exported_from_torch_keeps_its_predictions(tmp_path, flat, twice):
    """torch.onnx.export(YOLO('yolov8n.yaml').model, ...) gave six outputs ([1, 84, 8400], then [1, 64, 8400],
    [1, 80, 8400] and the three feature maps) and ovq said 'no known family fits'; the first is the predictions."""
    model = _with_raw_maps(flat=flat, twice=twice)
    expected = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    xml = convert(save(model, tmp_path / "src.xml"), tmp_path / "ir")
    det = Detector(xml, precision="f32", cache=False)
    assert det.info.family == "yolo" and len(det.model.outputs) == 1
    assert tuple(det.model.outputs[0].get_shape()) == (1, 4 + NC, 64 + 16 + 4)
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    ours = ov.Core().compile_model(det.model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(image[None])[0]
    theirs = expected(image[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255)[0]
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_rtdetr_head_exported_from_torch_keeps_its_predictions(tmp_path):
    """torch.onnx.export(RTDETR('rtdetr-l.yaml').model, ...) gave [1, 300, 6] and then its decoder's [1, 1, 300, 4],
    [1, 1, 300, 80] and encoder's [1, 300, 4], [1, 300, 80]: 'no known family fits'; the first is the predictions."""
    model = end_to_end_head(normalised=True, k=10)
    x = model.get_parameters()[0]
    extras = [ops.constant(np.zeros(shape, np.float32)) for shape in ((1, 1, 10, 4), (1, 1, 10, 3), (1, 20, 4),
                                                                      (1, 20, 3))]
    model = ov.Model([model.outputs[0].get_node().input_value(0), *(e.output(0) for e in extras)], [x], "detr")
    xml = convert(save(model, tmp_path / "src.xml"), tmp_path / "ir")
    det = Detector(xml, precision="f32", cache=False)
    assert det.info.family == "rtdetr" and [tuple(o.get_shape()) for o in det.model.outputs] == [(1, 10, 6)]


def test_other_extra_outputs_are_kept_and_refused(tmp_path):
    """Maps whose cells are not the flat outputs' M are no Detect head's: nothing is dropped, no family fits."""
    with pytest.raises(ModelError, match="no known family fits the outputs"):
        convert(save(_with_raw_maps(cells_off=1), tmp_path / "src.xml"), tmp_path / "ir")
    assert not (tmp_path / "ir").exists()


# -- real exports with the dynamo exporter (slow) -------------------------------------------------------------
IMGSZ = 320


@pytest.fixture(scope="module")
def dynamo():
    pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript (the dev extra has it)")
    return pytest.importorskip("torch", reason="torch is an optional extra (pip install 'ovq[train]')")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dynamo")
    old = Path.cwd()
    os.chdir(folder)  # Ultralytics writes into the working folder
    yield folder
    os.chdir(old)


@pytest.mark.slow
def test_yolov8_module_exported_by_dynamo_decodes_like_ultralytics(dynamo, assets, work):
    ultralytics = pytest.importorskip("ultralytics", reason="Ultralytics is an optional extra")
    from test_reference import _compare, _spread_yolo

    yolo = ultralytics.YOLO("yolov8n.yaml")
    _spread_yolo(yolo.model, assets, seed=0)
    onnx = work / "y8_dynamo.onnx"
    # a copy: the export leaves the head's cached anchors as the tracer's fake tensors, and the next forward fails
    dynamo.onnx.export(copy.deepcopy(yolo.model).eval(), (dynamo.rand(1, 3, IMGSZ, IMGSZ),), str(onnx), dynamo=True)
    ir = work / "y8_ir"
    assert main(["convert", str(onnx), "-o", str(ir), "-q"]) == 0
    assert Detector(ir, cache=False).info.family == "yolo"
    assert _compare(assets, ir, yolo) >= 5
    out = work / "pred"
    assert main(["predict", str(ir), str(assets / "images/bus.jpg"), "-o", str(out), "-q"]) == 0
    assert json.loads((out / "predictions.json").read_text())[0]["detections"]


def test_a_torch_export_program_is_refused_in_one_line_saying_how_to_write_onnx(tmp_path, capsys):
    """A .pt2 (torch.export.save) was 'unsupported model file type'; the line now says what it is and the one call
    that writes the ONNX ovq converts (tried on a YOLOv8n .pt2: that ONNX converts and decodes)."""
    torch = pytest.importorskip("torch", reason="torch is an optional extra (pip install 'ovq[train]')")
    pt2 = tmp_path / "detector.pt2"
    torch.export.save(torch.export.export(torch.nn.Conv2d(3, 6, 1), (torch.rand(1, 3, 8, 8),)), str(pt2))
    assert main(["convert", str(pt2), "-o", str(tmp_path / "ir")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"ovq convert: error: {pt2}: a torch.export program (.pt2), which ovq does not convert; write it as "
                   f"ONNX with torch.onnx.export(torch.export.load('{pt2}'), f='model.onnx') and convert that")
    assert not (tmp_path / "ir").exists()


def test_a_torch_export_program_named_pt_is_not_taken_for_a_broken_checkpoint(tmp_path, capsys):
    """torch.export.save(ep, 'model.pt'): handed to Ultralytics, which called it 'not a loadable checkpoint - the file
    is empty, truncated or corrupted'; the archive says it is a torch.export program, so the line says so."""
    torch = pytest.importorskip("torch", reason="torch is an optional extra (pip install 'ovq[train]')")
    pt = tmp_path / "detector.pt"
    torch.export.save(torch.export.export(torch.nn.Conv2d(3, 6, 1), (torch.rand(1, 3, 8, 8),)), str(pt))
    capsys.readouterr()  # torch's own warning about the name
    assert main(["convert", str(pt), "-o", str(tmp_path / "ir")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"ovq convert: error: {pt}: a torch.export program (.pt2), which ovq does not convert; write it as ONNX with "
        f"torch.onnx.export(torch.export.load('{pt}'), f='model.onnx') and convert that")


def _onnx_with_data_beside(folder: Path) -> tuple[Path, Path]:
    """A tiny detector ONNX with its weights in ``NAME.onnx.data``, as the dynamo exporter writes every model."""
    import onnx
    from heads import onnx_yolo

    folder.mkdir(exist_ok=True)
    path = onnx_yolo(folder / "det.onnx")
    onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=True, location="det.onnx.data",
                    size_threshold=0)
    return path, folder / "det.onnx.data"


def test_an_output_file_over_the_onnx_models_weights_is_refused(tmp_path, capsys):
    """`ovq eval det.onnx --json det.onnx.data` wrote its numbers over the model's weights (exit 0, and the model
    no longer read); an ONNX model's external data files are its files too."""
    pytest.importorskip("onnx", reason="writing an ONNX model needs the onnx package")
    model, data = _onnx_with_data_beside(tmp_path / "m")
    weights = data.read_bytes()
    assert main(["bench", str(model), "--json", str(data)]) == 2
    assert capsys.readouterr().err.strip() == (f"ovq bench: error: --json {data}: is a file of the model {model}; "
                                               "writing there would replace it (give another file)")
    assert data.read_bytes() == weights


def test_the_digest_of_an_onnx_model_covers_its_weights(tmp_path):
    """A quantized model records the digest of the model it was made from, and a pipeline or bundle makes it again
    when that changes; new weights in det.onnx.data (a retrained model exported again) left it the same."""
    pytest.importorskip("onnx", reason="writing an ONNX model needs the onnx package")
    from ovq.model.paths import model_digest

    model, data = _onnx_with_data_beside(tmp_path / "m")
    before = model_digest(model)
    weights = bytearray(data.read_bytes())
    weights[:4] = bytes(4)
    data.write_bytes(bytes(weights))
    assert model_digest(model) != before


def test_quantize_counts_the_weights_beside_an_onnx_model_before_it_starts(tmp_path, capsys):
    """quantize checks the output's free space before minutes of NNCF, from the model's size; an ONNX model whose
    weights are in NAME.onnx.data (every dynamo export) counted as its small .onnx, so a folder without room passed
    the check and the work failed at the end."""
    pytest.importorskip("onnx", reason="writing an ONNX model needs the onnx package")
    import onnx
    from conftest import random_images
    from heads import onnx_yolo
    from test_faults import fill, tmpfs

    path = onnx_yolo(tmp_path / "big.onnx", nc=16_000)  # 12 MB of weights: an INT8 copy needs about 4 MB
    onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=True, location="big.onnx.data",
                    size_threshold=0)
    images = random_images(tmp_path / "images")
    with tmpfs(tmp_path / "disk", "size=8m") as disk:
        fill(disk, leave=3_000_000)
        assert main(["quantize", str(path), "--data", str(images), "-o", str(disk / "int8")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"ovq quantize: error: {disk / 'int8'}: not enough free space: needs about 4."), err
        assert not (disk / "int8").exists()
