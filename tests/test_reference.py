"""Each new route checked against an independent reference: the exporter's own predictor on the same weights.

Ultralytics (random-init models built from yaml, no downloads): a custom-class YOLOv8n through its ONNX export,
YOLO26 through both heads (ovq's ``.pt`` route gives the one-to-one head, Ultralytics' default ONNX export the
one-to-many head), RT-DETR through its ONNX export. Scores are spread first (``spread``), so NMS order and
thresholds mean something. ovq runs at f32, as the references do; families with NMS are compared twice, decoded in
Python and in the graph (``--nms graph``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ovq.cli import main
from ovq.core.geometry import letterbox
from ovq.model.detector import Detector

pytestmark = pytest.mark.slow

IMAGES = ("bus.jpg", "dog.jpg", "street.jpg")
IMGSZ = 320
NAMES = {0: "bolt", 1: "hex nut", 2: "washer"}
ROOT = Path(__file__).resolve().parents[1]


def _calibration_input(assets: Path, stretch: bool = False, size: int = IMGSZ):
    """The test images as one batch, resized as the model takes them: what the score spread is set on."""
    import torch

    batch = []
    for name in IMAGES:
        image = cv2.imread(str(assets / "images" / name))
        image = cv2.resize(image, (size, size)) if stretch else letterbox(image, (size, size))[0]
        batch.append(torch.from_numpy(image[..., ::-1].transpose(2, 0, 1).copy()).float() / 255)
    return torch.stack(batch)


def _spread_yolo(model, assets: Path, seed: int, size: int = IMGSZ) -> None:
    import torch
    from spread import he_init, spread_scores

    gen = he_init(model, seed)
    head = model.model[-1]
    layers = [seq[-1] for branch in (head.cv3, getattr(head, "one2one_cv3", None)) if branch is not None
              for seq in branch]
    model.eval()
    with torch.no_grad():
        # about a dozen cells of the calibration image over 0.5, whatever the class count
        spread_scores(layers, lambda: model(_calibration_input(assets, size=size)), gen, share=0.006 / head.nc,
                      spread=8.0)


def _assert_same(ours, theirs, conf: float, *, box_px: float = 2.0) -> int:
    """Every reference detection clearly above ``conf`` is in ``ours`` (same class, box and score) and the
    other way round; returns how many were compared."""
    t_conf = theirs[1]
    for (a_xyxy, a_conf, a_cls), (b_xyxy, b_conf, b_cls), who in (
        ((ours.xyxy, ours.confidence, ours.class_id), theirs, "reference"),
        (theirs, (ours.xyxy, ours.confidence, ours.class_id), "ovq"),
    ):
        for box, score, cls in zip(a_xyxy, a_conf, a_cls):
            if score < conf + 0.01:
                continue  # borderline: either side may keep it
            close = [j for j in range(len(b_xyxy)) if b_cls[j] == cls and np.abs(b_xyxy[j] - box).max() <= box_px
                     and abs(b_conf[j] - score) <= 0.01]
            assert close, f"{who} lacks class {int(cls)} {score:.3f} at {np.round(box, 1).tolist()}"
    return int((np.asarray(t_conf) >= conf + 0.01).sum())


def _ultralytics_boxes(result):
    """Boxes clipped to the image as ovq's are (Ultralytics' RT-DETR predictor leaves them unclipped)."""
    b = result.boxes
    h, w = result.orig_shape
    xyxy = b.xyxy.numpy().copy()
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
    return xyxy, b.conf.numpy(), b.cls.numpy().astype(int)


def _both_paths(det: Detector, image: np.ndarray) -> list:
    """The detections of the Python decoding and, for a family with NMS, of decoding and NMS in the graph."""
    found = [det(image)]
    if det.why_not_nms_in_graph() is None:
        found.append(det.with_nms_in_graph()(image))
    return found


def _compare(assets: Path, xml, reference, *, conf: float = 0.25, imgsz: int = IMGSZ, **predict_args) -> int:
    det = Detector(xml, precision="f32", conf=conf, cache=False)
    compared = 0
    for name in IMAGES:
        path = assets / "images" / name
        # rect=False: the full square letterbox the exported model takes (a .pt would pad to a multiple of 32 only)
        theirs = _ultralytics_boxes(reference.predict(str(path), imgsz=imgsz, conf=conf, rect=False, verbose=False,
                                                      **predict_args)[0])
        for ours in _both_paths(det, cv2.imread(str(path))):
            assert len(ours) < det.params.max_det, "too many candidates: the comparison would hinge on the max_det cut"
            compared += _assert_same(ours, theirs, conf)
    print(f"{Path(str(xml)).name}: {compared} reference detections matched")
    return compared


@pytest.fixture(scope="module")
def ultralytics():
    return pytest.importorskip("ultralytics", reason="Ultralytics is an optional extra (pip install 'ovq[ultralytics]')")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    old = Path.cwd()
    os.chdir(folder)  # Ultralytics writes beside its sources and into the working folder
    yield folder
    os.chdir(old)


def test_custom_class_ultralytics_onnx_keeps_its_names_and_boxes(ultralytics, assets, work, capsys):
    from ultralytics.nn.tasks import DetectionModel

    yolo = ultralytics.YOLO("yolov8n.yaml")
    yolo.model = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    yolo.model.names = dict(NAMES)
    _spread_yolo(yolo.model, assets, seed=0)
    yolo.save(str(work / "parts.pt"))
    onnx = ultralytics.YOLO(str(work / "parts.pt")).export(format="onnx", imgsz=IMGSZ, simplify=False)
    ir = work / "parts_ir"
    assert main(["convert", onnx, "-o", str(ir), "-q"]) == 0
    det = Detector(ir, cache=False)
    assert det.info.family == "yolo" and det.labels == list(NAMES.values())
    assert _compare(assets, ir, ultralytics.YOLO(str(work / "parts.pt"))) >= 5
    out = work / "pred"
    assert main(["predict", str(ir), str(assets / "images/bus.jpg"), "-o", str(out), "-q"]) == 0
    labels = {d["label"] for d in json.loads((out / "predictions.json").read_text())[0]["detections"]}
    assert labels and labels <= set(NAMES.values())


@pytest.mark.parametrize("size", [64, 32])
def test_80_classes_at_a_small_input_size_decode_like_ultralytics(ultralytics, assets, work, size):
    """YOLOv8n's 80 classes exported at 64x64 give [1, 84, 84] (84 = 64 + 16 + 4 cells): both axes as long, which
    ovq refused as [1, 4 + nc, N] needed N > 4 + nc ('no known family fits'); at 32x32 [1, 84, 21] likewise. The
    cells the input size implies, and the graph where both axes are that long, say which axis is which."""
    yolo = ultralytics.YOLO("yolov8n.yaml")
    _spread_yolo(yolo.model, assets, seed=3, size=64)  # at 32 a level of one cell an image has no spread to set
    pt = work / f"y8_{size}.pt"
    yolo.save(str(pt))
    onnx = ultralytics.YOLO(str(pt)).export(format="onnx", imgsz=size, simplify=False)
    ir = work / f"y8_{size}_ir"
    assert main(["convert", onnx, "-o", str(ir), "-q"]) == 0
    det = Detector(ir, cache=False)
    assert det.info.family == "yolo" and len(det.labels) == 80
    assert tuple(det.model.outputs[0].get_shape()) == (1, 84, 64 + 16 + 4 if size == 64 else 16 + 4 + 1)
    assert _compare(assets, ir, ultralytics.YOLO(str(pt)), imgsz=size) >= 3


def test_yolo26_both_heads_decode_like_ultralytics(ultralytics, assets, work):
    """ovq's .pt route: the one-to-one head (= Ultralytics' predict with nms=False); Ultralytics' default ONNX
    export: the one-to-many head (= its predict with the default nms=None, NMS on)."""
    yolo = ultralytics.YOLO("yolo26n.yaml")
    _spread_yolo(yolo.model, assets, seed=1)
    pt = work / "y26.pt"
    yolo.save(str(pt))
    one2one = work / "y26_one2one"
    assert main(["convert", str(pt), "-o", str(one2one), "--imgsz", str(IMGSZ), "-q"]) == 0
    assert Detector(one2one, cache=False).info.family == "yolo_e2e"
    # a fresh YOLO per route: Ultralytics' predictor keeps the head it was first set up with
    assert _compare(assets, one2one, ultralytics.YOLO(str(pt)), nms=False) >= 5
    onnx = ultralytics.YOLO(str(pt)).export(format="onnx", imgsz=IMGSZ, simplify=False)
    one2many = work / "y26_one2many"
    assert main(["convert", onnx, "-o", str(one2many), "-q"]) == 0
    assert Detector(one2many, cache=False).info.family == "yolo"
    assert _compare(assets, one2many, ultralytics.YOLO(str(pt))) >= 5


def test_rtdetr_onnx_decodes_like_ultralytics(ultralytics, assets, work):
    """RT-DETR's [1, 300, 6] is normalised cx, cy, w, h: taken for yolo_e2e (pixels, x1 y1 x2 y2) it would not
    match a single box."""
    import torch
    from spread import he_init, spread_scores

    model = ultralytics.RTDETR("rtdetr-l.yaml")
    net = model.model.eval()
    gen = he_init(net, seed=2)  # without it the decoder's features barely differ between queries
    with torch.no_grad():
        spread_scores([net.model[-1].dec_score_head[-1]], lambda: net(_calibration_input(assets, stretch=True)), gen,
                      share=0.0006, spread=8.0)
    pt = work / "rtdetr.pt"
    model.save(str(pt))
    onnx = ultralytics.RTDETR(str(pt)).export(format="onnx", imgsz=IMGSZ, simplify=False)
    ir = work / "rtdetr_ir"
    assert main(["convert", onnx, "-o", str(ir), "-q"]) == 0
    det = Detector(ir, cache=False)
    assert det.info.family == "rtdetr" and det.info.resize == "stretch" and len(det.labels) == 80
    assert _compare(assets, ir, ultralytics.RTDETR(str(pt))) >= 5


# --- YOLOv5 (the packaged original, anchor-based) ------------------------------------------------------------


def yolov5_reference() -> Path | None:
    """The folder holding the PyPI package ``yolov5`` and what it imports (tests only; .ci/run installs it with
    ``pip install --target .ci/yolov5``, apart from ovq's environment, whose packages it would downgrade)."""
    path = Path(os.environ.get("OVQ_YOLOV5_REFERENCE", ROOT / ".ci" / "yolov5"))
    return path if (path / "yolov5" / "models" / "yolo.py").exists() else None


def test_yolov5_onnx_decodes_like_yolov5s_own_pipeline(assets, tmp_path):
    reference = yolov5_reference()
    if reference is None:
        pytest.skip("the yolov5 reference package is not installed (.ci/run puts it in .ci/yolov5)")
    images = [str(assets / "images" / name) for name in IMAGES]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(reference), str(Path(__file__).parent)])}
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "reference_yolov5.py"), str(tmp_path),
                           str(IMGSZ), *images], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = json.loads((tmp_path / "reference.json").read_text())
    ir = tmp_path / "ir"
    assert main(["convert", str(tmp_path / "yolov5n.onnx"), "-o", str(ir), "-q"]) == 0
    det = Detector(ir, precision="f32", conf=0.25, cache=False)
    assert det.info.family == "yolov5" and det.labels == list(NAMES.values()) and det.info.iou_threshold == 0.45
    compared = 0
    for path in images:
        ref = expected[path]
        theirs = (np.array(ref["xyxy"]).reshape(-1, 4), np.array(ref["conf"]), np.array(ref["cls"], int))
        for ours in _both_paths(det, cv2.imread(path)):
            compared += _assert_same(ours, theirs, 0.25)
    print(f"yolov5: {compared} reference detections matched")
    assert compared >= 5
