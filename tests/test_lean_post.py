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


def test_output_buffers_are_reused_without_allocating(assets, video_frames):
    """A finished request's outputs are copied into a set given back earlier: no new 1.2 MB array per frame."""
    from ovq.runtime.inference import OutputBuffers

    det = Detector(assets / "models/yolox_nano/yolox_nano.onnx", precision="f32")
    request = det.compiled.create_infer_request()
    request.infer({0: det.preprocess(video_frames[0])[0]})
    pool = OutputBuffers()
    first = pool.copy(request)
    assert first[0].nbytes > 1_000_000 and np.array_equal(first[0], request.get_output_tensor(0).data)
    pool.give_back(first)
    request.infer({0: det.preprocess(video_frames[5])[0]})
    tracemalloc.start()
    try:
        again = pool.copy(request)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert again[0] is first[0] and np.array_equal(again[0], request.get_output_tensor(0).data)
    assert peak < 16 * 1024, f"{peak / 1024:.0f} KiB traced"
    assert pool.copy(request)[0] is not first[0]  # none given back: a new set, never one still being read
    pool.give_back([np.zeros(3, np.float32)])  # a set that no longer fits (a dynamic output changed shape)
    assert pool.copy(request)[0].shape == first[0].shape


class _Keep:
    def __init__(self) -> None:
        self.dets: list = []

    def write(self, result) -> None:
        self.dets.append(result.detections)

    def close(self) -> None:
        pass


def test_the_pipeline_reuses_output_buffers_and_results_stay_exact(assets, monkeypatch):
    """Buffers cycle through the frames in flight only, and no result is overwritten by a later frame's outputs:
    the same detections as with a fresh copy per frame (a decoder keeping views would differ)."""
    from ovq.runtime import inference
    from ovq.streaming.pipeline import Pipeline

    det = Detector(assets / "models/yolox_nano/yolox_nano.onnx", precision="f32", hint="throughput")
    seen: set[int] = set()
    copy = inference.OutputBuffers.copy

    def spy(self, request):
        out = copy(self, request)
        seen.add(id(out[0]))
        return out

    monkeypatch.setattr(inference.OutputBuffers, "copy", spy)
    pooled, fresh = _Keep(), _Keep()
    pipeline = Pipeline(det, [str(assets / VIDEO)], sinks=[pooled], max_frames=60, stats_interval=0)
    pipeline.run()
    monkeypatch.setattr(Detector, "decodes_into_new_arrays", property(lambda self: False))
    Pipeline(det, [str(assets / VIDEO)], sinks=[fresh], max_frames=60, stats_interval=0).run()
    assert len(pooled.dets) == len(fresh.dets) == 60 and sum(len(d) for d in fresh.dets) > 20
    for a, b in zip(pooled.dets, fresh.dets, strict=True):
        assert np.array_equal(a.xyxy, b.xyxy) and np.array_equal(a.class_id, b.class_id)
    assert 1 <= len(seen) <= pipeline.nireq + max(2, pipeline.nireq)  # at most one set per frame in flight
