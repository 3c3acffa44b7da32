"""Sinks: annotated MP4, JSON Lines, MQTT (against a real mosquitto broker), windows (under Xvfb)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from conftest import make_dets, read_fifo
from services import Mosquitto, free_port

from ovq.core.errors import ConfigError, OutputError
from ovq.core.fileio import write_json_atomic
from ovq.streaming.mqtt import MqttSink, mqtt_settings
from ovq.streaming.pipeline import FrameResult
from ovq.streaming.sinks import JsonlSink, RateMeter, VideoSink, WindowSink, frame_record

LABELS = ["person", "car"]


def make_result(stream: str = "s0", index: int = 0, size: tuple[int, int] = (320, 240), dets=None) -> FrameResult:
    w, h = size
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:, :, 1] = (index * 20) % 255  # a frame of its own per index
    return FrameResult(
        stream=stream, source=f"src-{stream}", frame_index=index, timestamp=1000.0 + index / 10,
        frame=frame, detections=dets if dets is not None else make_dets([[20, 30, 120, 200]], [0.9], [0]),
        latency_ms=12.5, labels=LABELS, fps=10.0,
    )


def count_frames(path) -> tuple[int, tuple[int, int], float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    n, size = 0, (0, 0)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
        size = (frame.shape[1], frame.shape[0])
    cap.release()
    return n, size, fps


# -- video -----------------------------------------------------------------------------------------------------
def test_video_sink_writes_a_playable_mp4_only_at_close(tmp_path):
    out = tmp_path / "out.mp4"
    sink = VideoSink(out, fps=8.0)
    for i in range(12):
        sink.write(make_result(index=i))
    assert not out.exists()  # still a hidden partial file
    sink.close()
    assert not (tmp_path / ".out.partial.mp4").exists()
    n, size, fps = count_frames(out)
    assert (n, size) == (12, (320, 240))
    assert fps == pytest.approx(8.0)
    assert sink.written == {out: "12 frames"}


def test_video_sink_draws_boxes_labels_and_fps(tmp_path):
    out = tmp_path / "a.mp4"
    sink = VideoSink(out)
    dets = make_dets([[40, 60, 200, 220]], [0.9], [1], tracker_id=np.array([7]))
    sink.write(make_result(dets=dets))
    sink.close()
    cap = cv2.VideoCapture(str(out))
    ok, frame = cap.read()
    assert ok
    left_edge = frame[100:180, 38:43].astype(float).mean(axis=(0, 1))
    inside = frame[100:180, 100:140].astype(float).mean(axis=(0, 1))
    assert np.abs(left_edge - inside).max() > 40  # a box edge was drawn where the detection is
    assert frame[8:20, 8:60].max() > 200  # the white overlay text (stream name and FPS) at top-left
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)  # the source's fps from the result


def test_video_sink_one_file_per_stream(tmp_path):
    sink = VideoSink(tmp_path / "out.mp4")
    sink.start(["cam A", "s1"])
    for i in range(5):
        sink.write(make_result("cam A", i, (320, 240)))
        sink.write(make_result("s1", i, (160, 120)))
    sink.write(make_result("s1", 5, (200, 100)))  # a frame of another size is resized to the stream's first
    sink.close()
    assert count_frames(tmp_path / "out_cam_A.mp4")[:2] == (5, (320, 240))
    assert count_frames(tmp_path / "out_s1.mp4")[:2] == (6, (160, 120))
    assert not (tmp_path / "out.mp4").exists()


def test_video_sink_does_not_wait_for_ffmpegs_open_lock(tmp_path):
    """OpenCV opens FFmpeg captures and writers under one global lock; a slow stream open elsewhere in the
    process must not hold the pipeline's thread back: writes are queued while the writer waits."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"rtsp://127.0.0.1:{silent.getsockname()[1]}/live"
        opening = threading.Thread(
            target=cv2.VideoCapture, args=(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 3000])
        )
        opening.start()
        time.sleep(0.3)
        sink = VideoSink(tmp_path / "out.mp4")
        for i in range(10):
            sink.write(make_result(index=i))
        assert opening.is_alive()  # all ten writes returned while the open still held the lock
        opening.join()
        sink.close()
    assert count_frames(tmp_path / "out.mp4")[0] == 10


def test_video_sink_rejects_bad_options(tmp_path):
    with pytest.raises(ConfigError, match="must end in .mp4"):
        VideoSink(tmp_path / "out.avi")
    for fps in (0, float("nan"), float("inf")):  # NaN slipped past "fps <= 0" and failed in the encoder thread
        with pytest.raises(ConfigError, match="fps must be a finite number > 0"):
            VideoSink(tmp_path / "out.mp4", fps=fps)


def test_video_sink_raises_an_encoder_error_from_close_when_no_write_did(tmp_path):
    # fps=NaN (bypassing the check) makes the encoder fail on the first frame, in its thread, after the last
    # write() returned: close() must raise it, replace nothing and announce nothing.
    out = tmp_path / "out.mp4"
    out.write_bytes(b"earlier video")
    sink = VideoSink(out, fps=10.0)
    sink.fps = float("nan")
    sink.start(["s0"])
    sink.write(make_result())
    with pytest.raises(OutputError, match=f"^{re.escape(str(out))}: video writing failed: .*; left as it was$"):
        sink.close()
    assert out.read_bytes() == b"earlier video" and not sink.written
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


# -- JSON Lines ------------------------------------------------------------------------------------------------
def test_jsonl_sink_one_flushed_record_per_frame(tmp_path):
    path = tmp_path / "r.jsonl"
    sink = JsonlSink(path)
    dets = make_dets([[1, 2, 3, 4], [5, 6, 7, 8]], [0.5, 0.25], [1, 0], tracker_id=np.array([3, -1]))
    sink.write(make_result("a", 0, dets=dets))
    sink.write(make_result("b", 4))
    [partial] = tmp_path.glob(".r.jsonl.partial-*")
    lines = partial.read_text().splitlines()  # written through: readable (tail -f) while the sink is open
    assert len(lines) == 2 and not path.exists()
    sink.close()
    assert path.read_text().splitlines() == lines and sink.written == {path: "2 records"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]
    first, second = (json.loads(x) for x in lines)
    assert first["stream"] == "a" and first["frame_index"] == 0 and first["source"] == "src-a"
    assert first["timestamp"] == pytest.approx(1000.0) and first["latency_ms"] == pytest.approx(12.5)
    assert (first["width"], first["height"]) == (320, 240)
    assert first["detections"] == [
        {"class_id": 1, "label": "car", "confidence": 0.5, "xyxy": [1.0, 2.0, 3.0, 4.0], "tracker_id": 3},
        {"class_id": 0, "label": "person", "confidence": 0.25, "xyxy": [5.0, 6.0, 7.0, 8.0], "tracker_id": -1},
    ]
    assert second["stream"] == "b" and second["frame_index"] == 4


def test_jsonl_sink_replaces_the_file_only_when_it_wrote_records(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"old":1}\n')
    JsonlSink(path).close()  # made, never started: nothing touched
    idle = JsonlSink(path)
    idle.start(["s0"])
    idle.close()  # started, no record: the old results stay
    assert path.read_text() == '{"old":1}\n' and idle.written == {}
    path.chmod(0o640)
    sink = JsonlSink(path)
    sink.write(make_result())
    sink.close()
    assert [json.loads(x)["frame_index"] for x in path.read_text().splitlines()] == [0]
    assert path.stat().st_mode & 0o777 == 0o640  # the replaced file's mode is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]


def test_jsonl_sink_appends_and_mends_a_cut_last_line(tmp_path, ovq_log):
    path = tmp_path / "r.jsonl"
    path.write_text('{"old":1}\n{"cut')
    sink = JsonlSink(path, append=True)
    sink.write(make_result(index=3))
    sink.close()
    lines = path.read_text().splitlines()
    assert lines[:2] == ['{"old":1}', '{"cut'] and json.loads(lines[2])["frame_index"] == 3
    assert sink.written == {path: "1 records appended"}
    assert any("last line is incomplete" in m for m in ovq_log.messages())


# -- outputs that are not plain files: pipes, devices, symlinks ----------------------------------------------------
# (a run with --jsonl /dev/stdout, a FIFO or /dev/full renamed a regular file over it: as root, over the device node)
def test_jsonl_sink_streams_into_a_fifo_and_leaves_it_a_fifo(tmp_path):
    fifo = tmp_path / "records"
    os.mkfifo(fifo)
    text: list[str] = []
    reader = read_fifo(fifo, text)
    sink = JsonlSink(fifo)
    sink.write(make_result(index=0))
    sink.write(make_result(index=1))
    sink.close()
    reader.join(10)
    lines = text[0].splitlines()
    assert [json.loads(x)["frame_index"] for x in lines] == [0, 1] and sink.written == {fifo: "2 records"}
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["records"]


def test_a_fifo_nobody_reads_is_said_at_once(tmp_path):
    """Opening it waited for a reader, where Ctrl-C could not stop the command (the kernel retries the open)."""
    fifo = tmp_path / "records"
    os.mkfifo(fifo)
    sink = JsonlSink(fifo)
    with pytest.raises(OutputError, match=f"{fifo}: a pipe nobody reads; start its reader first"):
        sink.start(["s0"])
    with pytest.raises(OutputError, match="a pipe nobody reads"):
        write_json_atomic(fifo, {"a": 1})
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node (a /dev/full of the test's own) needs root")
def test_jsonl_sink_into_a_full_device_fails_naming_it_and_keeps_the_node(tmp_path):
    full = tmp_path / "full"
    os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # what /dev/full is: every write fails with ENOSPC
    sink = JsonlSink(full)
    with pytest.raises(OutputError, match=f"{full}: No space left on device after 0 records"):
        sink.write(make_result())
    sink.abort()
    assert stat.S_ISCHR(os.lstat(full).st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def test_outputs_through_a_symlink_replace_the_file_it_points_to(tmp_path):
    real = tmp_path / "data" / "r.jsonl"
    real.parent.mkdir()
    real.write_text('{"old":1}\n')
    link = tmp_path / "latest.jsonl"
    link.symlink_to(real)
    sink = JsonlSink(link)
    sink.write(make_result(index=7))
    sink.close()
    assert link.is_symlink() and json.loads(real.read_text())["frame_index"] == 7
    assert sorted(p.name for p in real.parent.iterdir()) == ["r.jsonl"]
    video = tmp_path / "data" / "v.mp4"
    video.write_bytes(b"old")
    vlink = tmp_path / "v.mp4"
    vlink.symlink_to(video)
    vsink = VideoSink(vlink, use_av=False)
    vsink.write(make_result())
    vsink.close()
    assert vlink.is_symlink() and count_frames(video)[0] == 1


def test_run_with_jsonl_to_standard_output_keeps_stdout_for_the_records(tmp_path, tiny):
    """`ovq run ... --jsonl /dev/stdout | jq`: the records alone on the pipe, what the command did on stderr (a
    link to /dev/stdout stands in for it: the old code renamed a file over the link, as root over /dev/stdout)."""
    stdout = tmp_path / "stdout"
    stdout.symlink_to("/dev/stdout")
    proc = subprocess.run(
        [sys.executable, "-m", "ovq", "run", str(tiny), "--source", "synth://conveyor?width=320&height=240",
         "--max-frames", "3", "--jsonl", str(stdout), "-q"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["frame_index"] for line in proc.stdout.splitlines()] == [0, 1, 2]
    assert f"wrote {stdout} (3 records)" in proc.stderr and "3 frames from 1 stream(s)" in proc.stderr
    assert stdout.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["stdout"]


def test_video_sink_refuses_a_pipe(tmp_path):
    fifo = tmp_path / "v.mp4"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="a pipe or a device; a video file is written to a file"):
        VideoSink(fifo)


def test_frame_record_prefers_the_sinks_labels():
    record = frame_record(make_result(), labels=["human", "auto"])
    assert record["detections"][0]["label"] == "human"


def test_rate_meter():
    meter = RateMeter(window=2.0)
    rates = [meter.tick(t * 0.1) for t in range(30)]
    assert rates[0] == 0.0
    assert rates[-1] == pytest.approx(10.0)


# -- MQTT ------------------------------------------------------------------------------------------------------
def test_mqtt_settings_from_url_and_environment(monkeypatch):
    for var in ("OVQ_MQTT_URL", "OVQ_MQTT_USERNAME", "OVQ_MQTT_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="OVQ_MQTT_URL"):
        mqtt_settings(None)
    assert mqtt_settings("mqtt://broker.local") == {
        "host": "broker.local", "port": 1883, "tls": False, "username": None, "password": None,
        "display": "mqtt://broker.local",
    }
    assert mqtt_settings("mqtts://b:9999")["port"] == 9999
    assert mqtt_settings("mqtts://b")["tls"] is True
    monkeypatch.setenv("OVQ_MQTT_URL", "mqtt://u%40x:p%3Aw@10.1.2.3:1884")
    s = mqtt_settings(None)
    assert (s["host"], s["port"], s["username"], s["password"]) == ("10.1.2.3", 1884, "u@x", "p:w")
    monkeypatch.setenv("OVQ_MQTT_USERNAME", "envuser")
    monkeypatch.setenv("OVQ_MQTT_PASSWORD", "envpass")
    s = mqtt_settings(None)
    assert (s["username"], s["password"]) == ("envuser", "envpass")
    with pytest.raises(ConfigError, match="unknown MQTT broker scheme 'ws://'"):
        mqtt_settings("ws://b")
    with pytest.raises(ConfigError, match="no host"):
        mqtt_settings("mqtt://:1883")
    with pytest.raises(ConfigError, match=r"mqtt://u:\*\*\*@b:70000: bad port '70000'"):
        mqtt_settings("mqtt://u:s3cret@b:70000")


class Subscriber:
    """A paho subscriber on ``topic`` that keeps every message and resubscribes after reconnects."""

    def __init__(self, port: int, topic: str = "ovq/#", username: str | None = None, password: str | None = None):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}")
        if username:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, json.loads(m.payload)))
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def wait(self, n: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(self.messages) >= n

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_env(monkeypatch):
    for var in ("OVQ_MQTT_URL", "OVQ_MQTT_USERNAME", "OVQ_MQTT_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def _need_mosquitto():
    reason = Mosquitto.available()
    if reason:
        pytest.skip(reason)


@pytest.mark.services
def test_mqtt_messages_arrive_at_a_subscriber_topic_per_stream(tmp_path, mqtt_env):
    _need_mosquitto()
    with Mosquitto(tmp_path) as broker:
        sub = Subscriber(broker.port, topic="plant1/#")
        assert sub.subscribed.wait(10)
        mqtt_env.setenv("OVQ_MQTT_URL", broker.url)
        sink = MqttSink(topic_prefix="plant1")  # the broker from the environment
        try:
            assert sink.wait_connected(10)
            for i in range(5):
                sink.write(make_result("cam1", i))
                sink.write(make_result("cam2", i))
        finally:
            sink.close()
        assert sub.wait(10)
        sub.close()
    topics = sorted({t for t, _ in sub.messages})
    assert topics == ["plant1/cam1", "plant1/cam2"]
    for stream in ("cam1", "cam2"):
        got = [m for t, m in sub.messages if t == f"plant1/{stream}"]
        assert [m["frame_index"] for m in got] == list(range(5))
        assert all(m["stream"] == stream and m["detections"][0]["label"] == "person" for m in got)
    assert sink.sent == 10 and sink.unsent == 0


@pytest.mark.services
def test_mqtt_credentials_come_from_the_environment(tmp_path, mqtt_env):
    _need_mosquitto()
    with Mosquitto(tmp_path, users={"ovq": "s3cret"}) as broker:
        sub = Subscriber(broker.port, username="ovq", password="s3cret")
        assert sub.subscribed.wait(10)
        mqtt_env.setenv("OVQ_MQTT_USERNAME", "ovq")
        mqtt_env.setenv("OVQ_MQTT_PASSWORD", "wrong")
        refused = MqttSink(broker.url)
        assert not refused.wait_connected(2.0)
        refused.write(make_result())
        refused.close()
        assert refused.unsent == 1 and refused.sent == 0
        mqtt_env.setenv("OVQ_MQTT_PASSWORD", "s3cret")
        sink = MqttSink(broker.url)
        assert sink.wait_connected(10)
        sink.write(make_result())
        sink.close()
        assert sub.wait(1, 10)
        sub.close()


@pytest.mark.services
def test_mqtt_sink_reconnects_when_the_broker_returns(tmp_path, mqtt_env):
    _need_mosquitto()
    broker = Mosquitto(tmp_path)
    broker.start()
    sink = MqttSink(broker.url)
    try:
        assert sink.wait_connected(10)
        sink.write(make_result(index=0))
        broker.stop()
        deadline = time.monotonic() + 10
        while sink.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not sink.connected
        sink.write(make_result(index=1))  # dropped and counted, not queued forever
        assert sink.unsent == 1
        broker = Mosquitto(tmp_path, port=broker.port)
        broker.start()
        sub = Subscriber(broker.port)
        assert sub.subscribed.wait(10)
        assert sink.wait_connected(40)  # paho's back-off is at most 30 s
        sink.write(make_result(index=2))
        assert sub.wait(1, 10)
        assert [m["frame_index"] for _, m in sub.messages] == [2]
        sub.close()
    finally:
        sink.close()
        broker.stop()


# -- windows ---------------------------------------------------------------------------------------------------
def test_window_sink_needs_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(ConfigError, match="no display"):
        WindowSink()


def test_window_sink_shows_frames_under_xvfb(monkeypatch):
    xvfb = shutil.which("Xvfb")
    if not xvfb:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    display = f":{free_port() % 1000 + 100}"
    proc = subprocess.Popen([xvfb, display, "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        socket_path = f"/tmp/.X11-unix/X{display[1:]}"
        deadline = time.monotonic() + 10
        while not os.path.exists(socket_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        monkeypatch.setenv("DISPLAY", display)
        quit_called = []
        sink = WindowSink(on_quit=lambda: quit_called.append(True))
        for i in range(3):
            sink.write(make_result(index=i))
            time.sleep(0.1)
        sink.close()  # from another thread than the one that drew: must not hang
        assert sink.shown >= 1
        assert not quit_called
    finally:
        proc.kill()
        proc.wait(5)


class _RemoveFolderAt:
    """A sink that removes ``folder`` (``rm -rf out``) when frame ``at`` comes, the other sinks writing there."""

    def __init__(self, folder, at: int) -> None:
        self.folder, self.at = folder, at

    def write(self, result: FrameResult) -> None:
        if result.frame_index == self.at and self.folder.exists():
            shutil.rmtree(self.folder)

    def close(self) -> None:
        pass


def test_an_output_folder_removed_during_the_run_is_said_in_one_true_line(tiny, tmp_path, ovq_log, monkeypatch):
    """`rm -rf out` while `ovq run --jsonl out/x.jsonl --out out/x.mp4` ran: the warning said the records were in
    out/.x.jsonl.partial-..., gone with the folder, an ERROR line came from closing the video writer, and the error
    said "video writing failed: [Errno 2] No such file or directory: 'out'; left as it was"."""
    from ovq.model.detector import Detector
    from ovq.streaming.pipeline import Pipeline

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    jsonl, video = JsonlSink("out/x.jsonl"), VideoSink("out/x.mp4")
    pipeline = Pipeline(Detector(tiny), ["synth://conveyor"], sinks=[_RemoveFolderAt(out, 5), jsonl, video],
                        max_frames=40, stats_interval=0)
    with pytest.raises(OutputError) as err:
        pipeline.run()
    assert str(err.value) == "out/x.mp4: the folder out was removed during the run; this run's video went with it"
    said = ovq_log.messages(logging.WARNING)
    assert said == [(f"out/x.jsonl: the run failed; the folder out was removed during the run, and this run's "
                     f"{jsonl.records} records went with it")], said
    assert jsonl.records >= 5 and not out.exists()


def test_a_jsonl_folder_removed_during_the_run_fails_its_close_saying_so(tmp_path):
    out = tmp_path / "out"
    sink = JsonlSink(out / "cam" / "x.jsonl")
    sink.start(["s0"])
    for i in range(3):
        sink.write(make_result(index=i))
    shutil.rmtree(out)
    with pytest.raises(OutputError) as err:
        sink.close()
    assert str(err.value) == (f"{out / 'cam' / 'x.jsonl'}: the folder {out} was removed during the run; this run's 3 "
                              "records went with it")
