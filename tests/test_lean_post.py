"""Lean post-processing: matrix NMS keeps exactly what step NMS keeps; decoders touch only candidate cells."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from ovq.core import geometry
from ovq.core.geometry import nms
from ovq.model.detector import Detector
from ovq.streaming.pipeline import Pipeline

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


def _infer_queue_contract(make, compiled, frames):
    order = []
    with make(compiled, 3, lambda request, i: order.append((i, request.get_output_tensor(0).data.copy()))) as q:
        for i, x in enumerate(frames):
            q.start_async({0: x}, i)
        q.wait_all()
    return order


def test_the_waiting_queue_calls_back_in_start_order_on_its_own_thread(assets, video_frames):
    """Same results as OpenVINO's own queue, in the order started; the callback runs on a Python thread of the
    queue (never an OpenVINO worker), before the request is reused, and inputs may be shared."""
    import threading

    from ovq.runtime.inference import InferQueue, WaitingQueue

    det = Detector(assets / "models/yolox_nano/yolox_nano.onnx", precision="f32", hint="throughput")
    frames = [det.preprocess(f)[0] for f in video_frames]
    ours = _infer_queue_contract(WaitingQueue, det.compiled, frames)
    theirs = dict(_infer_queue_contract(InferQueue, det.compiled, frames))
    assert [i for i, _ in ours] == list(range(len(frames)))
    assert all(np.array_equal(out, theirs[i]) for i, out in ours)
    threads = set()
    q = WaitingQueue(det.compiled, 2, lambda request, i: threads.add(threading.current_thread().name))
    for x in frames:
        q.start_async({0: x}, None, share_inputs=True)
    q.close()
    q.close()  # twice: a no-op
    assert threads == {"ovq-infer-done"} and q.released
    with pytest.raises(RuntimeError, match="closed"):
        q.start_async({0: frames[0]}, None)


def test_shared_inputs_reach_the_request_as_they_are_or_through_openvino(assets, video_frames):
    """share_inputs hands C-contiguous arrays of the input's type to the request directly; anything else (a strided
    view) goes through OpenVINO's dispatcher. Both give OpenVINO's own queue's results; a wrong shape is refused
    at start and the request is given back."""
    from ovq.runtime.inference import InferQueue, WaitingQueue

    det = Detector(assets / "models/fastestdet/FastestDet.onnx", precision="f32", hint="throughput")
    frames = [det.preprocess(f)[0] for f in video_frames]
    theirs = dict(_infer_queue_contract(InferQueue, det.compiled, frames))
    wide = [np.concatenate([x, np.zeros_like(x)], axis=2)[:, :, : x.shape[2]] for x in frames]
    assert not wide[0].flags.c_contiguous
    for inputs in (frames, wide):
        got: dict[int, np.ndarray] = {}
        q = WaitingQueue(det.compiled, 2, lambda request, i, got=got: got.update({i: request.get_output_tensor(0).data.copy()}))
        for i, x in enumerate(inputs):
            q.start_async({0: x}, i, share_inputs=True)
        q.wait_all()
        with pytest.raises(Exception, match="(?i)shape|dimension|size"):
            q.start_async({0: np.zeros((1, 8, 8, 3), np.uint8)}, -1, share_inputs=True)
        q.start_async({0: inputs[0]}, 0, share_inputs=True)  # the request given back: the queue goes on
        q.close()
        assert sorted(got) == list(range(len(frames)))
        assert all(np.array_equal(got[i], theirs[i]) for i in got)


def test_only_inputs_with_a_numpy_type_of_their_own_skip_the_dispatcher():
    """bf16 reads back from OpenVINO as float16 and u4 as uint8, and a dynamic type raises: those go through the
    dispatcher (it converts), which the queue must still build for."""
    import openvino as ov
    import openvino.opset13 as ops

    from ovq.runtime.inference import _numpy_type

    kinds = {ov.Type.u8: np.uint8, ov.Type.f32: np.float32, ov.Type.f16: np.float16, ov.Type.i64: np.int64,
             ov.Type.bf16: None, ov.Type.u4: None, ov.Type.string: None, ov.Type.dynamic: None}
    for kind, want in kinds.items():
        assert _numpy_type(ops.parameter([1, 4], kind).output(0)) == (None if want is None else np.dtype(want)), kind


def test_the_waiting_queue_reports_errors(assets, video_frames):
    from ovq.runtime.inference import WaitingQueue

    det = Detector(assets / "models/fastestdet/FastestDet.onnx", precision="f32")
    x = det.preprocess(video_frames[0])[0]
    seen = []

    def callback(request, i):
        seen.append(i)
        if i == 1:
            raise ValueError("sink broke")

    q = WaitingQueue(det.compiled, 2, callback)
    for i in range(4):
        q.start_async({0: x}, i)
    with pytest.raises(ValueError, match="sink broke"):
        q.wait_all()
    assert seen == [0, 1, 2, 3]  # one failing callback does not stop the others
    q.close()
    failed = []
    q = WaitingQueue(det.compiled, 1, lambda request, i: failed.append(request.get_output_tensor(0)))
    with pytest.raises(Exception, match="(?i)shape|dimension|size"):  # OpenVINO refuses a wrong input at start
        q.start_async({0: np.zeros((1, 8, 8, 3), np.uint8)}, 0)
    q.start_async({0: x}, 1)  # the request given back: the queue goes on
    q.close()
    assert len(failed) == 1


class _Keep:
    def __init__(self) -> None:
        self.dets: list = []

    def write(self, result) -> None:
        self.dets.append(result.detections)

    def close(self) -> None:
        pass


def test_the_pipeline_decodes_in_place_and_results_stay_exact(assets, monkeypatch):
    """ovq's own families decode on completion from the request's outputs (no copy of YOLOX's 1.2 MB a frame);
    the detections are those of decoding copies (a later inference overwriting outputs in use would differ)."""
    det = Detector(assets / "models/yolox_nano/yolox_nano.onnx", precision="f32", hint="throughput")
    copied = []
    real = Detector.outputs_of
    monkeypatch.setattr(Detector, "outputs_of", lambda self, request: copied.append(1) or real(self, request))
    in_place, fresh = _Keep(), _Keep()
    Pipeline(det, [str(assets / VIDEO)], sinks=[in_place], max_frames=60, stats_interval=0).run()
    assert not copied
    monkeypatch.setattr(Detector, "decodes_into_new_arrays", property(lambda self: False))  # as for a plug-in
    Pipeline(det, [str(assets / VIDEO)], sinks=[fresh], max_frames=60, stats_interval=0).run()
    assert len(copied) == 60
    assert len(in_place.dets) == len(fresh.dets) == 60 and sum(len(d) for d in fresh.dets) > 20
    for a, b in zip(in_place.dets, fresh.dets, strict=True):
        assert np.array_equal(a.xyxy, b.xyxy) and np.array_equal(a.class_id, b.class_id)
