"""Sources and readers: parsing source strings, opening them, bounded buffers, live reconnects and stalls."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from services import MjpegServer, RtspServer, free_port

from ovq.core.errors import ConfigError, SourceError
from ovq.streaming.readers import FileReader, Frame, FrameBuffer, LiveReader, ReconnectPolicy
from ovq.streaming.sources import diagnose_url, open_source, parse_source, redact_url
from ovq.streaming.stats import StreamMeter


# -- parsing ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "kind", "live"),
    [
        ("0", "camera", True),
        ("12", "camera", True),
        ("rtsp://127.0.0.1:8554/live", "url", True),
        ("http://127.0.0.1:8080/stream.mjpg", "url", True),
        ("https://cam.example/stream", "url", True),
        ("synth://conveyor", "synth", True),
        ("synth://conveyor?fps=5&width=320&height=240&seed=3", "synth", True),
    ],
)
def test_parse_source_kinds(text, kind, live):
    spec = parse_source(text)
    assert spec.kind == kind
    assert spec.live is live


def test_parse_source_camera_and_synth_params():
    assert parse_source(3).camera == 3
    spec = parse_source("synth://conveyor?fps=5&width=320&height=240&seed=3")
    assert spec.params == {"scene": "conveyor", "fps": 5.0, "width": 320, "height": 240, "seed": 3}
    with pytest.raises(SourceError, match=r"synth://\[conveyor: Invalid IPv6 URL; expected synth://SCENE"):
        parse_source("synth://[conveyor")  # urllib's ValueError, a traceback, before


def test_parse_source_files_and_folders(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video")
    assert parse_source(str(video)).kind == "video"
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("b.png", "a.png", "notes.txt"):
        cv2.imwrite(str(folder / name), np.zeros((8, 8, 3), np.uint8)) if name.endswith(".png") else (
            folder / name).write_text("x")
    spec = parse_source(str(folder))
    assert spec.kind == "images" and not spec.live
    assert [p.name for p in spec.params["files"]] == ["a.png", "b.png"]
    single = parse_source(str(folder / "a.png"))
    assert single.kind == "images" and len(single.params["files"]) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty source"),
        ("/no/such/clip.mp4", "no such file or folder"),
        ("foo://bar", "unknown source scheme 'foo://'"),
        ("rtsp:///live", "rtsp:///live: no host"),
        # the one URL parser: a bad port, host or scheme is one line, the password never in it
        ("rtps://user:s3cret@host/x", r"rtps://user:\*\*\*@host/x: unknown source scheme 'rtps://'; did you mean 'rtsp://'"),
        ("rtsp://user:s3cret@host:99999/x", r"rtsp://user:\*\*\*@host:99999/x: bad port '99999' \(expected 1-65535\)"),
        ("rtsp://user:s3cret@[::1/x", r"rtsp://user:\*\*\*@\[::1/x: malformed IPv6 host"),
        ("rtsp://user:s3cret@[::zz]/x", r"malformed IPv6 host '\[::zz\]'"),
        ("rtsp://user:s3cret@ho st/x", r"'ho st' is not a host name or IP address"),
        ("synth://belt", "unknown synthetic scene 'belt'"),
        ("synth://conveyor?fsp=10", "did you mean 'fps'"),
        ("synth://conveyor?fps=fast", "fps='fast' is not a valid float"),
        ("synth://conveyor?width=8", "at least 32"),
    ],
)
def test_parse_source_rejects_bad_input(text, message):
    with pytest.raises(SourceError, match=message) as info:
        parse_source(text)
    assert "s3cret" not in str(info.value)


def test_a_device_or_a_pipe_is_not_a_missing_file(tmp_path):
    # --source /dev/null said "no such file or folder"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, kind in (("/dev/null", "a device"), (str(fifo), "a pipe")):
        with pytest.raises(SourceError, match=f"^{path}: {kind}, not a regular file; expected a video file, an image"):
            parse_source(path)
    with pytest.raises(SourceError, match="no such file or folder"):
        parse_source(str(tmp_path / "none.mp4"))


def test_parse_source_rejects_empty_folder(tmp_path):
    with pytest.raises(SourceError, match="holds no images"):
        parse_source(str(tmp_path))


def test_redact_url_hides_password():
    assert redact_url("rtsp://admin:s3cret@10.0.0.5:554/live") == "rtsp://admin:***@10.0.0.5:554/live"
    assert redact_url("rtsp://10.0.0.5/live") == "rtsp://10.0.0.5/live"
    assert "s3cret" not in parse_source("rtsp://admin:s3cret@127.0.0.1/x").display


@pytest.mark.parametrize(("url", "shown"), [
    ("rtsp://127.0.0.1:8554/live?user=admin&password=s3cret", "rtsp://127.0.0.1:8554/live?user=admin&password=***"),
    ("http://cam/videostream.cgi?user=admin&pwd=s3cret", "http://cam/videostream.cgi?user=admin&pwd=***"),
    ("rtsp://u:s3cret@cam/x?token=s3cret&channel=1", "rtsp://u:***@cam/x?token=***&channel=1"),
    ("https://h/s.m3u8?X-Amz-Signature=s3cret;api-key=s3cret#access_token=s3cret",
     "https://h/s.m3u8?X-Amz-Signature=***;api-key=***#access_token=***"),
    ("rtsp://cam?auth=s3cret", "rtsp://cam?auth=***"),
    ("rtsp://cam/live?channel=1&subtype=0", "rtsp://cam/live?channel=1&subtype=0"),
])
def test_credentials_in_a_query_string_are_hidden(url, shown):
    assert redact_url(url) == shown
    spec = parse_source(url)
    assert spec.display == shown and spec.url.redacted() == shown
    assert spec.url.unredacted() == url  # what the camera gets is what was given


def test_a_password_with_an_unencoded_slash_or_at_is_read_as_a_password():
    spec = parse_source("rtsp://admin:pa/ss@w0rd@10.0.0.5:554/Streaming/101")
    assert (spec.url.host, spec.url.port, spec.url.password) == ("10.0.0.5", 554, "pa/ss@w0rd")
    assert spec.display == "rtsp://admin:***@10.0.0.5:554/Streaming/101"
    # FFmpeg gets the password percent-encoded (it decodes credentials before authenticating)
    assert spec.url.unredacted() == "rtsp://admin:pa%2Fss%40w0rd@10.0.0.5:554/Streaming/101"
    # an '@' in the path of a URL that parses the standard way stays in the path
    assert parse_source("rtsp://cam:554/a@b").url.rest == "/a@b"


# -- opening ---------------------------------------------------------------------------------------------------
def test_gif_reads_every_frame(assets):
    gif = assets / "videos" / "people-detection.gif"
    source = open_source(parse_source(str(gif)))
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    source.close()
    assert source.frame_count and len(frames) == source.frame_count
    assert frames[0].shape == (270, 480, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[-1])


def test_non_video_file_is_a_source_error(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is text, not a video\n" * 50)
    with pytest.raises(SourceError, match="notes.mp4: cannot open as a video"):
        open_source(parse_source(str(bad)))


def test_image_folder_skips_unreadable_files(tmp_path, ovq_log):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((16, 24, 3), i * 50, np.uint8))
    (tmp_path / "1b.png").write_bytes(b"broken")
    source = open_source(parse_source(str(tmp_path)))
    values = []
    while (frame := source.read()) is not None:
        values.append(int(frame[0, 0, 0]))
    assert values == [0, 50, 100]
    assert source.skipped == 1
    assert any("1b.png: not a readable image" in m for m in ovq_log.messages(logging.WARNING))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="V4L2 device nodes are Linux's")
def test_missing_camera_is_a_source_error():
    index = next(i for i in range(57, 200) if not Path(f"/dev/video{i}").exists())
    with pytest.raises(SourceError, match=f"no such camera \\(/dev/video{index} does not exist\\)"):
        open_source(parse_source(str(index)))


def test_refused_url_names_the_reason():
    port = free_port()
    with pytest.raises(SourceError, match=f"connection refused by 127.0.0.1:{port}"):
        open_source(parse_source(f"rtsp://127.0.0.1:{port}/live"), timeout=1.0)


def test_silent_server_times_out_and_is_diagnosed():
    """A server that accepts the connection but never answers: opening gives up after the timeout."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(SourceError, match="accepts connections but sent no video"):
            open_source(parse_source(f"rtsp://127.0.0.1:{port}/live"), timeout=1.0)
        assert time.monotonic() - start < 8.0
        assert "accepts connections" in diagnose_url(f"http://127.0.0.1:{port}/x", timeout=1.0)


def test_mjpeg_over_http(assets):
    with MjpegServer(assets / "videos" / "one-by-one-person-detection.mp4", fps=25, max_frames=20) as server:
        source = open_source(parse_source(server.url), timeout=5.0)
        frames = [source.read() for _ in range(5)]
        source.close()
    assert all(f is not None and f.shape == (432, 768, 3) for f in frames)


def test_synth_source_is_live_and_paced():
    source = open_source(parse_source("synth://conveyor?fps=20&width=160&height=120&seed=1"))
    start = time.monotonic()
    frames = [source.read() for _ in range(6)]
    elapsed = time.monotonic() - start
    source.close()
    assert all(f is not None and f.shape == (120, 160, 3) for f in frames)
    assert elapsed >= 5 / 20 * 0.8  # paced to 20 fps: 5 frame periods after the first
    assert source.read() is None


# -- buffers ---------------------------------------------------------------------------------------------------
def _frame(i: int) -> Frame:
    return Frame(i, np.full((2, 2, 3), i, np.uint8), time.time(), time.monotonic())


def test_latest_only_buffer_keeps_newest_and_counts_replaced():
    buf = FrameBuffer(8, latest_only=True, wake=threading.Event())
    assert buf.put(_frame(0)) == 0
    assert buf.put(_frame(1)) == 1
    assert buf.put(_frame(2)) == 1
    assert buf.get().index == 2
    assert buf.get() is None
    buf.close()
    assert buf.ended


def test_bounded_buffer_blocks_until_room_and_keeps_order():
    wake = threading.Event()
    buf = FrameBuffer(2, latest_only=False, wake=wake)
    buf.put(_frame(0))
    buf.put(_frame(1))
    assert wake.is_set()
    done = threading.Event()
    threading.Thread(target=lambda: (buf.put(_frame(2)), done.set()), daemon=True).start()
    assert not done.wait(0.3)  # full: the producer waits
    assert buf.get().index == 0
    assert done.wait(2.0)
    buf.close()
    assert [buf.get().index, buf.get().index] == [1, 2]
    assert buf.get() is None and buf.ended


def test_full_bounded_buffer_takes_frames_again_once_half_was_taken():
    # the reader refills in one go instead of waking for each frame the scheduler takes
    buf = FrameBuffer(4, latest_only=False, wake=threading.Event())
    for i in range(4):
        buf.put(_frame(i))
    done = threading.Event()
    threading.Thread(target=lambda: (buf.put(_frame(4)), done.set()), daemon=True).start()
    assert buf.get().index == 0
    assert not done.wait(0.3)  # 3 of 4 still waiting: the producer still waits
    assert buf.get().index == 1
    assert done.wait(2.0)  # half taken: it goes on, and the frames keep their order
    assert [buf.get().index for _ in range(3)] == [2, 3, 4]


def test_bounded_buffer_put_gives_up_on_abort():
    buf = FrameBuffer(1, latest_only=False, wake=threading.Event())
    buf.put(_frame(0))
    abort = threading.Event()
    threading.Timer(0.2, abort.set).start()
    start = time.monotonic()
    assert buf.put(_frame(1), abort=abort) == 0
    assert 0.1 < time.monotonic() - start < 2.0


def test_file_reader_reads_every_frame_with_backpressure(assets):
    gif = assets / "videos" / "people-detection.gif"
    buf = FrameBuffer(2, latest_only=False, wake=threading.Event())
    reader = FileReader("g", open_source(parse_source(str(gif))), buf, StreamMeter("g", "gif"))
    reader.start()
    got = []
    while not buf.ended:
        frame = buf.get()
        if frame is None:
            time.sleep(0.005)
            continue
        got.append(frame.index)
        time.sleep(0.002)  # a slow consumer: the reader must wait, not drop
    reader.join(5)
    assert got == list(range(23))


def test_reconnect_policy_validates():
    with pytest.raises(ConfigError):
        ReconnectPolicy(initial_delay=0)
    with pytest.raises(ConfigError):
        ReconnectPolicy(initial_delay=5, max_delay=1)
    with pytest.raises(ConfigError):
        ReconnectPolicy(stall_timeout=0)


# -- live readers against real servers -------------------------------------------------------------------------
def _live_reader(url: str, policy: ReconnectPolicy) -> tuple[LiveReader, FrameBuffer, StreamMeter]:
    buf = FrameBuffer(1, latest_only=True, wake=threading.Event())
    meter = StreamMeter("cam", url, connected=False)
    return LiveReader("cam", parse_source(url), buf, meter, policy), buf, meter


def _wait_frame(buf: FrameBuffer, timeout: float) -> Frame | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = buf.get()
        if frame is not None:
            return frame
        time.sleep(0.02)
    return None


def test_unreachable_url_keeps_retrying_with_backoff(ovq_log):
    port = free_port()
    policy = ReconnectPolicy(initial_delay=0.2, max_delay=0.8)
    reader, buf, meter = _live_reader(f"rtsp://127.0.0.1:{port}/live", policy)
    reader.start()
    time.sleep(2.2)
    reader.stop()
    reader.join(3)
    warnings = [m for m in ovq_log.messages(logging.WARNING) if "connection refused" in m]
    assert len(warnings) >= 3
    assert "until it answers" in warnings[0]
    delays = [float(m.split("retrying in ")[1].split(" s")[0]) for m in warnings]
    assert delays[:3] == [0.2, 0.4, 0.8] and max(delays) == 0.8
    assert not buf.ended and not meter.snapshot().connected


def test_no_retry_ends_the_stream_after_a_failed_open(ovq_log):
    port = free_port()
    reader, buf, _ = _live_reader(f"rtsp://127.0.0.1:{port}/live", ReconnectPolicy(retry=False))
    reader.start()
    reader.join(10)
    assert buf.ended
    assert any("not retrying" in m for m in ovq_log.messages(logging.ERROR))


@pytest.mark.slow
@pytest.mark.services
def test_rtsp_stall_is_detected_and_reconnected(assets, ovq_log):
    """SIGSTOP the server: the connection stays open but nothing flows; the reader must notice and reopen."""
    reason = RtspServer.available()
    if reason:
        pytest.skip(reason)
    with RtspServer(assets / "videos" / "one-by-one-person-detection.mp4") as server:
        policy = ReconnectPolicy(initial_delay=0.3, max_delay=1.0, stall_timeout=1.5)
        reader, buf, meter = _live_reader(server.url, policy)
        reader.start()
        try:
            assert _wait_frame(buf, 15) is not None
            server.pause()
            paused = time.monotonic()
            stalled_at = None
            while time.monotonic() - paused < 10:
                reader.check_stall()
                if any("stalled" in m for m in ovq_log.messages(logging.WARNING)):  # watchdog or read timeout
                    stalled_at = time.monotonic()
                    break
                time.sleep(0.05)
            assert stalled_at is not None, ovq_log.messages()
            # frames buffered in the client may play out first; the stall is caught soon after they end, by the
            # watchdog (check_stall) or by the read timeout, whichever fires first
            assert stalled_at - paused < 1.5 + 4.0
            server.resume()
            resumed = time.monotonic()
            buf.get()
            while time.monotonic() - resumed < 15 and meter.snapshot().reconnects == 0:
                reader.check_stall()
                time.sleep(0.05)
            assert meter.snapshot().reconnects == 1, ovq_log.messages()
            assert _wait_frame(buf, 5) is not None
        finally:
            reader.stop()
            reader.join(3)


@pytest.mark.services
def test_a_wrong_rtsp_path_is_one_line_of_ovqs_saying_404(assets, tmp_path):
    """Server up, wrong mount: `ovq pipeline` printed FFmpeg's and OpenCV's own lines ("[rtsp @ 0x...] method DESCRIBE
    failed: 404 (Not Found)", "[ WARN:0@5.2] global cap.cpp:212 open VIDEOIO(FFMPEG): ...") among its log lines, on
    each retry, and its own line said "accepts connections but sent no video stream ... (wrong path or format?)"."""
    import subprocess

    reason = RtspServer.available()
    if reason:
        pytest.skip(reason)
    with RtspServer(assets / "videos" / "one-by-one-person-detection.mp4") as server:
        wrong = server.url.replace("/live", "/nope")
        where = f"127.0.0.1:{server.port}"
        assert diagnose_url(wrong) == f"404: no such stream path on {where} (the server is up; check the path)"
        assert "accepts connections" in diagnose_url(server.url)  # the right path: not a 404 (here FFmpeg opens it)
        config = tmp_path / "p.yaml"
        config.write_text(f"model: {assets / 'models/fastestdet/FastestDet.onnx'}\ndevice: CPU\nreconnect: false\n"
                          f"sources:\n  - {{name: cam, url: '{wrong}'}}\n")
        proc = subprocess.run([sys.executable, "-m", "ovq", "pipeline", str(config), "-q"], capture_output=True,
                              text=True, timeout=120, check=False)
    assert proc.returncode == 2
    said = f"{wrong}: 404: no such stream path on {where} (the server is up; check the path) (not retrying)"
    assert proc.stderr.strip().splitlines() == [f"ovq pipeline: error: {said}"], proc.stderr


def test_a_camera_that_wants_a_login_is_named_so(assets):
    """ovq's own DESCRIBE sends no credentials, so a 401 to it said "refused the user name and password" also when
    the URL gave none, and when the URL's were never tried by it. A real server asking for a login (basic
    authentication, as cameras do): no login in the URL, a wrong one, and the right one, which opens."""
    reason = RtspServer.available()
    if reason:
        pytest.skip(reason)
    with RtspServer(assets / "videos" / "one-by-one-person-detection.mp4", login=("cam", "s3cret")) as server:
        where = f"127.0.0.1:{server.port}"
        with_login = server.url.replace("rtsp://", "rtsp://cam:{}@")
        assert diagnose_url(server.url) == (f"401: {where} wants a user name and password (give them in the URL, "
                                            "from ${VARIABLES})")
        assert diagnose_url(with_login.format("wrong")) == (
            f"{where} wants a login, and the stream did not open with the URL's (wrong user name, password or path?)")
        source = open_source(parse_source(with_login.format("s3cret")), timeout=10)
        try:
            frame = source.read()
        finally:
            source.close()
        assert frame is not None and frame.shape == (432, 768, 3)
