"""The video pipeline end to end, on the shared FastestDet model, real videos and real servers."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ctrl_c_when, popen_as_terminal
from services import MjpegServer, Mosquitto, RtspServer, free_port

from ovq.core.errors import ConfigError, DeviceError, OvqError, SourceError
from ovq.model.detector import Detector
from ovq.streaming.pipeline import FrameResult, Pipeline
from ovq.streaming.readers import ReconnectPolicy
from ovq.streaming.sinks import JsonlSink

VIDEO = "videos/one-by-one-person-detection.mp4"
GIF = "videos/people-detection.gif"
MODEL = "models/fastestdet/FastestDet.onnx"


class Collect:
    """A sink that keeps every result (and when it arrived)."""

    def __init__(self) -> None:
        self.results: list[FrameResult] = []
        self.arrived: list[float] = []
        self.closed = False

    def write(self, result: FrameResult) -> None:
        self.results.append(result)
        self.arrived.append(time.monotonic())

    def close(self) -> None:
        self.closed = True

    def of(self, stream: str) -> list[FrameResult]:
        return [r for r in self.results if r.stream == stream]


@pytest.fixture(scope="module")
def detector(assets) -> Detector:
    """FastestDet at f32, so asynchronous results can be compared with synchronous ones exactly."""
    return Detector(assets / MODEL, device="CPU", precision="f32", hint="throughput")


def read_frames(path: Path, limit: int | None = None) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while limit is None or len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def run_in_thread(pipeline: Pipeline) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def target() -> None:
        try:
            out["summary"] = pipeline.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


# -- files -----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_every_frame_of_the_file_once_in_order(assets, detector, tmp_path):
    jsonl = tmp_path / "r.jsonl"
    summary = Pipeline(detector, [str(assets / VIDEO)], sinks=[JsonlSink(jsonl)], stats_interval=0).run()
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame_index"] for r in records] == list(range(1394))
    assert {r["stream"] for r in records} == {"s0"}
    assert summary.streams["s0"].frames == 1394 and summary.streams["s0"].dropped == 0
    assert summary.streams["s0"].finished and not summary.stopped
    assert summary.inference_precision == "f32"
    assert sum(len(r["detections"]) for r in records) > 1394  # people were found, not empty records


def test_two_streams_keep_their_results_apart(assets, detector):
    """Async results of two sources match synchronous inference on the same frames of the same source."""
    sink = Collect()
    summary = Pipeline(
        detector, [str(assets / VIDEO), str(assets / GIF)], names=["people", "gif"], sinks=[sink], max_frames=40,
        stats_interval=0,
    ).run()
    assert sink.closed
    truth = {"people": read_frames(assets / VIDEO, 40), "gif": read_frames(assets / GIF)}
    for name, frames in truth.items():
        got = sink.of(name)
        assert [r.frame_index for r in got] == list(range(len(frames)))
        assert summary.streams[name].frames == len(frames)
        for r in got:
            assert r.frame.shape == frames[r.frame_index].shape
            assert np.array_equal(r.frame, frames[r.frame_index])
            expected = detector(frames[r.frame_index])
            assert len(r.detections) == len(expected)
            np.testing.assert_allclose(r.detections.xyxy, expected.xyxy, atol=0.5)
            np.testing.assert_allclose(r.detections.confidence, expected.confidence, atol=1e-3)
            assert np.array_equal(r.detections.class_id, expected.class_id)
            assert r.latency_ms > 0 and r.labels and r.labels[0] == "person"
    assert summary.streams["gif"].frames == 23


def test_image_folder_source(assets, detector, tmp_path):
    folder = assets / "coco128" / "images" / "val2017"
    files = sorted(folder.iterdir())[:4]
    for f in files:
        (tmp_path / f.name).symlink_to(f)
    sink = Collect()
    Pipeline(detector, [str(tmp_path)], sinks=[sink], stats_interval=0).run()
    assert [r.frame_index for r in sink.results] == [0, 1, 2, 3]
    for r, f in zip(sink.results, files, strict=True):
        assert r.frame.shape == cv2.imread(str(f)).shape


def test_max_frames_is_per_stream(assets, detector):
    sink = Collect()
    summary = Pipeline(detector, [str(assets / VIDEO), str(assets / VIDEO)], sinks=[sink], max_frames=7,
                       stats_interval=0).run()
    assert [r.frame_index for r in sink.of("s0")] == list(range(7))
    assert [r.frame_index for r in sink.of("s1")] == list(range(7))
    assert summary.frames == 14


# -- tracking --------------------------------------------------------------------------------------------------
def test_track_ids_are_stable_and_per_stream(assets, detector):
    pytest.importorskip("trackers", reason="tracking needs the optional 'trackers' package (pip install trackers)")
    sink = Collect()
    Pipeline(detector, [str(assets / VIDEO), str(assets / VIDEO)], names=["a", "b"], sinks=[sink], track=True,
             max_frames=200, conf=0.4, stats_interval=0).run()
    a, b = sink.of("a"), sink.of("b")
    assert len(a) == len(b) == 200
    for ra, rb in zip(a, b, strict=True):
        # one tracker per stream: the same frames give the same IDs, no matter how the streams interleave
        assert np.array_equal(ra.detections.tracker_id, rb.detections.tracker_id)
    ids = [set(r.detections.tracker_id[(r.detections.tracker_id >= 0) & (r.detections.class_id == 0)]) for r in a]
    with_people = sum(bool((r.detections.class_id == 0).any()) for r in a)
    assert with_people > 100  # people walk in from frame 60 on
    assert sum(bool(s) for s in ids) > 0.85 * with_people  # and are tracked on nearly every such frame
    kept = [len(prev & cur) / len(prev) for prev, cur in itertools.pairwise(ids) if prev]
    assert np.mean(kept) > 0.8  # an ID seen on one frame is still there on the next
    assert len(set().union(*ids)) < 20


# -- live ------------------------------------------------------------------------------------------------------
def test_live_source_keeps_the_newest_frame_and_counts_drops(detector):
    """A slow sink holds inference back; the synthetic camera goes on and its old frames are dropped."""

    class Slow(Collect):
        def write(self, result: FrameResult) -> None:
            super().write(result)
            time.sleep(0.3)

    # the sink (0.3 s a frame) must be far slower than the camera even when the camera's renderer is starved:
    # at load 13 on 2 cores the 60 fps synthetic camera rendered only about 12 fps, and a 0.1 s sink saw frame 13
    sink = Slow()
    summary = Pipeline(detector, ["synth://conveyor?fps=30&width=160&height=120"], sinks=[sink], max_frames=12,
                       stats_interval=0).run()
    indices = [r.frame_index for r in sink.results]
    assert len(indices) == 12 and indices == sorted(indices)
    stats = summary.streams["s0"]
    assert stats.dropped > 0
    assert stats.dropped >= indices[-1] + 1 - len(indices)  # every skipped index was counted as dropped
    assert indices[-1] > 2 * len(indices)  # the stream kept moving: results are recent frames, not a backlog


def test_mjpeg_http_source(assets, detector):
    sink = Collect()
    with MjpegServer(assets / VIDEO, fps=20, max_frames=30) as server:
        summary = Pipeline(detector, [server.url], sinks=[sink], max_frames=10, stats_interval=0).run()
    assert len(sink.results) == 10 and summary.streams["s0"].reconnects == 0
    assert sink.results[0].frame.shape == (432, 768, 3)


def test_realtime_files_are_paced(assets, detector):
    sink = Collect()
    Pipeline(detector, [str(assets / GIF)], sinks=[sink], realtime_files=True, stats_interval=0).run()
    stamps = [r.timestamp for r in sink.results]
    index = [r.frame_index for r in sink.results]
    assert len(stamps) >= 10 and index == sorted(index)
    # read at the GIF's 12.5 fps, not as fast as it decodes (a busy machine may drop a few frames)
    assert stamps[-1] - stamps[0] > 0.7 * (index[-1] - index[0]) / 12.5 > 1.0


@pytest.mark.slow
@pytest.mark.services
def test_rtsp_server_restart_reconnects_while_other_streams_go_on(assets, detector, ovq_log):
    reason = RtspServer.available()
    if reason:
        pytest.skip(reason)
    sink = Collect()
    with RtspServer(assets / VIDEO) as server:
        pipeline = Pipeline(
            detector, [server.url, "synth://conveyor?fps=10&width=160&height=120"], names=["cam", "belt"],
            # retries at most 1 s apart: the return is noticed within 1 s, plus FFmpeg's ~3 s stream probe
            sinks=[sink], stats_interval=0, reconnect=ReconnectPolicy(max_delay=1.0, stall_timeout=3.0),
        )
        thread, out = run_in_thread(pipeline)
        try:
            deadline = time.monotonic() + 30
            while len(sink.of("cam")) < 15 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(sink.of("cam")) >= 15, ovq_log.messages()
            server.kill()
            killed = time.monotonic()
            time.sleep(3.0)
            server.start()
            back = time.monotonic()
            before = len(sink.of("cam"))
            deadline = back + 20
            while time.monotonic() < deadline and not any(t > back for t, r in zip(sink.arrived, sink.results)
                                                          if r.stream == "cam"):
                time.sleep(0.05)
            resumed = [t for t, r in zip(sink.arrived, sink.results) if r.stream == "cam" and t > back]
            assert resumed, ovq_log.messages()
            reconnect_s = resumed[0] - back
            print(f"first RTSP result {reconnect_s:.2f} s after the server returned")
            time.sleep(1.0)
        finally:
            pipeline.stop()
            thread.join(30)
        assert not thread.is_alive()
    assert "error" not in out, out.get("error")
    messages = ovq_log.messages(logging.WARNING)
    assert any(m.startswith("cam: lost rtsp://") for m in messages), messages
    assert any(m.startswith("cam: reconnected to rtsp://") for m in messages), messages
    assert reconnect_s <= 5.0, f"first frame {reconnect_s:.1f} s after the server returned"
    assert len(sink.of("cam")) > before
    cam_index = [r.frame_index for r in sink.of("cam")]
    assert cam_index == sorted(cam_index)
    # the other stream never noticed: results all through the outage, no gap longer than a second
    belt = [t for t, r in zip(sink.arrived, sink.results) if r.stream == "belt" and killed <= t <= back]
    assert len(belt) >= 20
    assert max(np.diff([killed, *belt, back])) < 1.0
    summary = out["summary"]
    assert summary.streams["cam"].reconnects == 1 and summary.streams["belt"].reconnects == 0
    assert summary.stopped


# -- stopping and errors ---------------------------------------------------------------------------------------
def test_stop_from_another_thread_drains_and_closes(detector, tmp_path):
    jsonl = tmp_path / "r.jsonl"
    pipeline = Pipeline(detector, ["synth://conveyor?fps=30&width=160&height=120"], sinks=[JsonlSink(jsonl)],
                        stats_interval=0)
    thread, out = run_in_thread(pipeline)
    time.sleep(1.5)
    pipeline.stop()
    thread.join(10)
    assert not thread.is_alive()
    summary = out["summary"]
    assert summary.stopped and summary.frames > 5
    assert len(jsonl.read_text().splitlines()) == summary.frames  # every drained result was written


def test_a_failing_sink_stops_the_run_with_its_error(assets, detector):
    class Broken(Collect):
        def write(self, result: FrameResult) -> None:
            super().write(result)
            if len(self.results) == 5:
                raise OSError("disk full")

    broken, other = Broken(), Collect()
    pipeline = Pipeline(detector, [str(assets / VIDEO)], sinks=[broken, other], stats_interval=0)
    thread, out = run_in_thread(pipeline)
    thread.join(30)
    assert not thread.is_alive()
    assert isinstance(out.get("error"), OSError) and "disk full" in str(out["error"])
    assert broken.closed and other.closed
    assert len(other.results) == 4  # nothing after the failure


@pytest.mark.parametrize("outputs", ["decoded in place", "copied"])
def test_a_failing_inference_stops_the_run(assets, detector, monkeypatch, outputs):
    calls = []
    if outputs == "decoded in place":
        owner, name, real = detector, "output_views", detector.output_views
    else:  # a decoder that may keep views of its inputs (a plug-in) gets a new copy of every output
        monkeypatch.setattr(Detector, "decodes_into_new_arrays", property(lambda self: False))
        owner, name, real = detector, "outputs_of", detector.outputs_of

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("device lost")
        return real(*args)

    monkeypatch.setattr(owner, name, failing)
    sink = Collect()
    with pytest.raises(OvqError, match="inference failed on frame .*device lost"):  # the patched detector itself,
        Pipeline(detector, [str(assets / GIF)], sinks=[sink], stats_interval=0, nms_in_graph=False).run()  # no variant
    assert sink.closed and len(sink.results) < 23 and len(calls) >= 3


def test_bad_arguments(assets, detector):
    video = str(assets / VIDEO)
    with pytest.raises(ConfigError, match="2 stream names for 1 sources"):
        Pipeline(detector, [video], names=["a", "b"])
    with pytest.raises(ConfigError, match="unique"):
        Pipeline(detector, [video, video], names=["a", "a"])
    with pytest.raises(ConfigError, match="stream name 'door/1'"):
        Pipeline(detector, [video], names=["door/1"])
    with pytest.raises(ConfigError, match="max_frames"):
        Pipeline(detector, [video], max_frames=0)
    with pytest.raises(ConfigError, match="not a sink"):
        Pipeline(detector, [video], sinks=[object()])
    with pytest.raises(SourceError, match="no such file"):
        Pipeline(detector, [video + ".missing"])
    with pytest.raises(DeviceError, match="'NOPE' is not available"):
        Pipeline(assets / MODEL, [video], device="NOPE")
    p = Pipeline(detector, [video], max_frames=1, stats_interval=0)
    p.run()
    with pytest.raises(RuntimeError, match="runs once"):
        p.run()


def test_no_retry_fails_at_start_up(detector):
    port = free_port()
    sink = Collect()
    with pytest.raises(SourceError, match=f"connection refused by 127.0.0.1:{port}.*not retrying"):
        Pipeline(detector, [f"rtsp://127.0.0.1:{port}/live"], sinks=[sink],
                 reconnect=ReconnectPolicy(retry=False)).run()
    assert sink.closed


def _stop_once(pipeline: Pipeline, ready) -> dict:
    """Run ``pipeline`` in a thread, stop it once ``ready()`` holds (polled), and return what run() gave."""
    thread, out = run_in_thread(pipeline)
    deadline = time.monotonic() + 60
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    pipeline.stop()
    thread.join(30)
    assert not thread.is_alive() and ready()
    return out


@pytest.mark.parametrize("with_belt", [False, True], ids=["camera-only", "camera-and-belt"])
def test_a_run_stopped_before_any_camera_answered_is_an_error(detector, ovq_log, with_belt):
    """A pipeline whose one camera never opened (retrying) exited 0 on Ctrl-C with "0 frames ... DISCONNECTED": a
    success to a service supervisor, where a file that gives no frame fails the run. Now it is the run's error;
    with another source that gave frames the stop is the user's, as before."""
    port = free_port()  # nothing listens there: connection refused, retried
    sources = [f"rtsp://127.0.0.1:{port}/live"] + (["synth://conveyor?fps=30&width=160&height=120"] * with_belt)
    sink = Collect()
    pipeline = Pipeline(detector, sources, names=["cam", "belt"][:len(sources)], sinks=[sink], stats_interval=0)
    retried = lambda: any("retrying in" in m for m in ovq_log.messages(logging.WARNING))
    out = _stop_once(pipeline, (lambda: retried() and sink.of("belt")) if with_belt else retried)
    if with_belt:
        assert "error" not in out and out["summary"].stopped and out["summary"].streams["cam"].frames == 0
        return
    assert isinstance(out.get("error"), SourceError), out
    assert str(out["error"]) == (f"the run was stopped before any source gave a frame; never connected: cam: "
                                 f"rtsp://127.0.0.1:{port}/live: connection refused by 127.0.0.1:{port} (no server "
                                 "listening)")
    assert sink.closed and not sink.results


# -- the command line ------------------------------------------------------------------------------------------
def ovq_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ovq", "run", *args]


def test_cli_unknown_device_exits_2_with_one_line(assets):
    proc = subprocess.run(ovq_cmd(str(assets / MODEL), "--source", str(assets / GIF), "--device", "NOPE", "-q"),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "device 'NOPE' is not available" in lines[0], proc.stderr


def test_cli_unreachable_url(assets):
    port = free_port()
    url = f"rtsp://127.0.0.1:{port}/live"
    proc = subprocess.run(ovq_cmd(str(assets / MODEL), "--source", url, "--device", "CPU", "--no-retry", "-q"),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"ovq run: error: {url}: connection refused by 127.0.0.1:{port} (no server listening) (not retrying)"
    ]
    # without --no-retry it keeps trying and says so; a SIGTERM before it ever connected fails the run (exit 2)
    # SIGTERM only once it has retried twice: a fixed sleep raced start-up on a loaded 2-core machine (import and
    # model load took over 6 s at load 9, and a SIGTERM before the run installs its handlers ends it with -15)
    proc = subprocess.Popen(ovq_cmd(str(assets / MODEL), "--source", url, "--device", "CPU"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    retried = threading.Event()

    def read_stderr() -> None:
        for line in proc.stderr:
            lines.append(line)
            if sum("retrying in" in ln for ln in lines) >= 2:
                retried.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    assert retried.wait(timeout=120), "".join(lines)
    proc.send_signal(signal.SIGTERM)
    stdout = proc.stdout.read()
    proc.wait(timeout=60)
    reader.join(timeout=10)
    stderr = "".join(lines)
    assert proc.returncode == 2, stderr
    retries = [ln for ln in stderr.splitlines() if "connection refused" in ln and "retrying in" in ln]
    assert len(retries) >= 2, stderr
    assert "until it answers" in retries[0]
    assert stderr.strip().splitlines()[-1].startswith("ovq run: error: the run was stopped before any source gave a "
                                                      "frame; never connected: s0: "), stderr
    assert "0 frames" not in stdout


@pytest.mark.slow
def test_cli_ctrl_c_leaves_a_readable_mp4(assets, tmp_path):
    out, jsonl, summary_path = tmp_path / "x.mp4", tmp_path / "x.jsonl", tmp_path / "summary.json"
    try:
        import trackers  # noqa: F401 - the optional tracking extra
        track = ["--track"]
    except ImportError:
        track = []
    proc = subprocess.Popen(
        ovq_cmd(str(assets / MODEL), "--source", str(assets / VIDEO), "--device", "CPU", "--out", str(out),
                "--jsonl", str(jsonl), "--summary-json", str(summary_path), *track),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        # the records go to a temporary file that replaces x.jsonl at the end of the run
        partial = list(tmp_path.glob(".x.jsonl.partial-*"))
        if partial and len(partial[0].read_text().splitlines()) >= 60:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    records = len(jsonl.read_text().splitlines())
    summary = json.loads(summary_path.read_text())
    cap = cv2.VideoCapture(str(out))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert 60 <= records < 1394
    assert frames == records == summary["frames"]
    assert summary["stopped"] is True and summary["streams"]["s0"]["frames"] == records
    assert f"wrote {out}" in stdout
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.services
def test_cli_publishes_to_mqtt(assets, tmp_path):
    reason = Mosquitto.available()
    if reason:
        pytest.skip(reason)
    from test_sinks import Subscriber

    with Mosquitto(tmp_path) as broker:
        sub = Subscriber(broker.port, topic="line3/#")
        assert sub.subscribed.wait(10)
        env = {**os.environ, "OVQ_MQTT_URL": broker.url}
        proc = subprocess.run(
            ovq_cmd(str(assets / MODEL), "--source", str(assets / GIF), "--name", "door", "--device", "CPU",
                    "--mqtt", "--mqtt-topic", "line3", "-q"),
            capture_output=True, text=True, timeout=120, env=env, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert sub.wait(23, 10)
        sub.close()
    assert {t for t, _ in sub.messages} == {"line3/door"}
    assert [m["frame_index"] for _, m in sub.messages] == list(range(23))


# -- tracking and stats units ----------------------------------------------------------------------------------
def test_tracking_without_the_package_is_a_dependency_error(assets, detector, monkeypatch):
    from ovq.core.errors import DependencyError

    monkeypatch.setitem(sys.modules, "trackers", None)  # as if it were not installed
    with pytest.raises(DependencyError, match=r"pip install 'ovq\[track\]'"):
        Pipeline(detector, [str(assets / GIF)], track=True)


def test_byte_tracker_keeps_input_order():
    pytest.importorskip("trackers", reason="tracking needs the optional 'trackers' package (pip install trackers)")
    from conftest import make_dets

    from ovq.streaming.tracking import ByteTracker

    tracker = ByteTracker(frame_rate=10)
    seen = []
    for step in range(6):
        boxes = [[10 + 5 * step, 10, 60 + 5 * step, 90], [200 - 4 * step, 100, 260 - 4 * step, 180]]
        order = [1, 0] if step % 2 else [0, 1]  # the detector may list them in any order
        dets = make_dets(np.array(boxes)[order], np.array([0.9, 0.8])[order], np.array([0, 2])[order])
        out = tracker.update(dets)
        np.testing.assert_array_equal(out.xyxy, dets.xyxy)  # same rows, same order
        seen.append(dict(zip(out.class_id.tolist(), out.tracker_id.tolist(), strict=True)))
    assert seen[0] == {0: -1, 2: -1}  # not confirmed yet on the first frame
    assert all(s == seen[-1] for s in seen[1:]) and len(set(seen[-1].values())) == 2 and -1 not in seen[-1].values()


def test_latency_percentiles_are_within_two_percent():
    from ovq.streaming.stats import LatencyHistogram

    values = np.random.default_rng(0).lognormal(mean=3.0, sigma=0.8, size=5000)
    hist = LatencyHistogram()
    for v in values:
        hist.add(float(v))
    for q in (50, 95, 99):
        assert hist.percentile(q) == pytest.approx(np.percentile(values, q), rel=0.02)
    assert LatencyHistogram().percentile(50) is None


def test_stream_meter_and_summary():
    from ovq.streaming.stats import RunSummary, StreamMeter

    meter = StreamMeter("s0", "cam", connected=False)
    for ms in (10.0, 20.0, 30.0):
        meter.result(ms)
    meter.dropped(4)
    meter.reconnected()
    first = meter.interval()
    assert (first.frames, first.dropped, first.reconnects, first.connected) == (3, 4, 1, True)
    assert first.latency_p50_ms == pytest.approx(20.0, rel=0.02)
    assert meter.interval().latency_p50_ms is None  # a new interval without results
    summary = RunSummary(streams={"s0": meter.snapshot()}, seconds=2.0, device="CPU")
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["frames"] == 3 and data["streams"]["s0"]["dropped"] == 4
    assert "s0:" in summary.lines()[1] and "dropped 4" in summary.lines()[1]


def test_cli_ctrl_c_before_the_only_camera_answered_exits_2(assets):
    port = free_port()
    url = f"rtsp://127.0.0.1:{port}/live"
    proc = popen_as_terminal(ovq_cmd(str(assets / MODEL), "--source", url, "--device", "CPU", "--no-progress"))
    stdout, stderr = ctrl_c_when(proc, "retrying in")
    lines = stderr.strip().splitlines()
    assert proc.returncode == 2, lines
    assert lines[-1] == (f"ovq run: error: the run was stopped before any source gave a frame; never connected: s0: "
                         f"{url}: connection refused by 127.0.0.1:{port} (no server listening)")
    assert "0 frames" not in stdout
