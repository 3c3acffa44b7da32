"""Lean post-processing: matrix NMS keeps exactly what step NMS keeps; decoders touch only candidate cells."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from ovq.core import geometry
from ovq.core.geometry import nms
from ovq.model.detector import Detector

VIDEO = "videos/one-by-one-person-detection.mp4"


@pytest.mark.parametrize("n", [1, 2, 50, 400])
@pytest.mark.parametrize("classes", [None, 3])
@pytest.mark.parametrize("threshold, max_det", [(0.45, 300), (0.7, 300), (0.3, 5)])
def test_matrix_nms_keeps_what_step_nms_keeps(monkeypatch, n, classes, threshold, max_det):
    rng = np.random.default_rng(n)
    xy = rng.uniform(0, 200, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 80, (n, 2))], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    scores[: n // 4] = 0.5  # ties keep their input order in both
    class_id = None if classes is None else rng.integers(0, classes, n)
    matrix = nms(boxes, scores, class_id, iou_threshold=threshold, max_det=max_det)
    monkeypatch.setattr(geometry, "MATRIX_NMS_MAX", 0)
    steps = nms(boxes, scores, class_id, iou_threshold=threshold, max_det=max_det)
    assert matrix.tolist() == steps.tolist()
    assert len(matrix) <= max_det and len(matrix) >= 1


@pytest.fixture(scope="module")
def video_frames(assets) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(assets / VIDEO))
    frames = [cap.read()[1] for _ in range(60)][::6]
    cap.release()
    return frames


@pytest.mark.parametrize("model, most_kib", [("models/yolox_nano/yolox_nano.onnx", 256),
                                             ("models/fastestdet/FastestDet.onnx", 128)])
def test_decoding_allocates_for_candidates_not_for_every_cell(assets, video_frames, model, most_kib):
    """YOLOX's 3549 x 80 class scores were multiplied in full every frame (1.2 MB traced; FastestDet 157 KiB); now only cells whose
    objectness reaches the threshold are (YOLOX-Nano, the shared person video, conf 0.25)."""
    det = Detector(assets / model, precision="f32")
    outputs = []
    for image in video_frames:
        request = det.compiled.create_infer_request()
        tensor, rinfo = det.preprocess(image)
        request.infer({0: tensor})
        outputs.append((det.outputs_of(request), rinfo))
    assert sum(len(det.postprocess(o, r)) for o, r in outputs) > 0  # the frames have people in them
    tracemalloc.start()
    try:
        for o, r in outputs:
            det.postprocess(o, r)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < most_kib * 1024, f"{peak / 1024:.0f} KiB traced at peak"
