"""Recordings a browser plays (ovq.streaming.video behind VideoSink): the codec each suffix gets with and without
PyAV, what the log says, and a real headless Chromium playing the files (and refusing MPEG-4 Part 2)."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest
from chromium import open_chromium, unavailable, wait_for
from test_sinks import count_frames, make_result

from ovq.core.errors import ConfigError
from ovq.streaming.sinks import VideoSink
from ovq.streaming.video import pyav_codec

needs_x264 = pytest.mark.skipif(pyav_codec("libx264") is None, reason="needs PyAV with libx264: pip install 'ovq[video]'")
needs_vp9 = pytest.mark.skipif(pyav_codec("libvpx-vp9") is None, reason="needs PyAV with libvpx: pip install 'ovq[video]'")


def codec_of(path) -> tuple[str, str, int, int]:
    import av

    with av.open(str(path)) as container:
        ctx = container.streams.video[0].codec_context
        return ctx.name, ctx.pix_fmt, ctx.width, ctx.height


def record(path, frames: int = 12, size=(320, 240), **kw):
    sink = VideoSink(path, fps=10.0, **kw)
    for i in range(frames):
        sink.write(make_result(index=i, size=size))
    sink.close()
    return path


@needs_x264
def test_mp4_is_h264_with_pyav_and_the_log_says_so(tmp_path, ovq_log):
    out = record(tmp_path / "out.mp4")
    assert codec_of(out) == ("h264", "yuv420p", 320, 240)
    assert count_frames(out)[:2] == (12, (320, 240))
    assert any("H.264 (PyAV, libx264)" in m for m in ovq_log.messages())
    assert not ovq_log.messages(30)  # no warning


@needs_vp9
def test_webm_is_vp9_with_pyav(tmp_path):
    out = record(tmp_path / "out.webm")
    assert codec_of(out)[:2] == ("vp9", "yuv420p")
    assert count_frames(out)[:2] == (12, (320, 240))


def test_without_pyav_mp4_is_mpeg4_part2_and_a_warning_says_browsers_do_not_play_it(tmp_path, ovq_log):
    out = record(tmp_path / "out.mp4", use_av=False)
    assert count_frames(out)[:2] == (12, (320, 240))
    if pyav_codec("mpeg4") is not None:
        assert codec_of(out)[0] == "mpeg4"
    assert any("browsers do not play MPEG-4 Part 2" in m for m in ovq_log.messages(30))


def test_without_pyav_webm_is_vp9_through_opencv_with_a_warning_that_it_is_slow(tmp_path, ovq_log):
    out = record(tmp_path / "out.webm", frames=3, size=(96, 64), use_av=False)
    assert count_frames(out)[:2] == (3, (96, 64))
    assert any("VP9 (OpenCV)" in m for m in ovq_log.messages())
    assert any("encodes slowly" in m for m in ovq_log.messages(30))


@pytest.mark.parametrize("use_av", [None, False])
def test_odd_frame_sizes_are_written_at_the_even_size_below(tmp_path, use_av):
    out = record(tmp_path / "odd.mp4", frames=4, size=(321, 241), use_av=use_av)
    assert count_frames(out)[:2] == (4, (320, 240))


def test_other_suffixes_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"out.avi: video output must end in .mp4 or .webm"):
        VideoSink(tmp_path / "out.avi")


# -- a real browser plays them -----------------------------------------------------------------------------------
@pytest.fixture
def served(tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser():
    driver = open_chromium()
    yield driver
    driver.quit()


def plays_in_chromium(browser, base: str, name: str, tmp_path) -> str:
    (tmp_path / f"{name}.html").write_text(f'<video id="v" src="{name}" muted></video>')
    browser.get(f"{base}/{name}.html")
    return wait_for(browser, "(() => { const v = document.getElementById('v'); "
                             "return v.error ? 'error ' + v.error.code : v.readyState >= 2 ? 'plays ' + v.videoWidth "
                             ": ''; })()", timeout=20)


@pytest.mark.browser
@pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))
def test_chromium_plays_the_recordings_and_not_mpeg4_part2(browser, tmp_path, served):
    record(tmp_path / "opencv.webm", frames=3, size=(96, 64), use_av=False)
    assert plays_in_chromium(browser, served, "opencv.webm", tmp_path) == "plays 96"
    record(tmp_path / "part2.mp4", use_av=False)
    assert plays_in_chromium(browser, served, "part2.mp4", tmp_path).startswith("error")
    if pyav_codec("libvpx-vp9") is not None:
        record(tmp_path / "pyav.webm")
        assert plays_in_chromium(browser, served, "pyav.webm", tmp_path) == "plays 320"
    if pyav_codec("libx264") is not None:
        record(tmp_path / "h264.mp4")
        assert plays_in_chromium(browser, served, "h264.mp4", tmp_path) == "plays 320"
