"""Video decoding: hardware acceleration selected and reported, decoder threads sized for the cores."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ovq.core.errors import ConfigError, SourceError
from ovq.streaming.pipeline import Pipeline
from ovq.streaming.sources import check_decode, decode_threads, open_source, parse_source


def test_decode_auto_reports_what_opencv_chose(assets):
    source = open_source(parse_source(str(assets / "videos/one-by-one-person-detection.mp4")), decode="auto")
    try:
        assert source.read() is not None
        if not Path("/dev/dri").exists():  # no GPU device node: nothing to accelerate with, software it is
            assert source.decoder == "software"
        else:
            assert source.decoder in ("software", "vaapi", "drm", "mfx")
    finally:
        source.close()
    software = open_source(parse_source(str(assets / "videos/one-by-one-person-detection.mp4")), decode="software")
    assert software.decoder == "software"
    software.close()


@pytest.mark.skipif(Path("/dev/dri").exists(), reason="this machine has a GPU device node; VA-API may work here")
def test_asking_for_vaapi_without_a_gpu_is_a_clear_source_error(assets):
    video = assets / "videos/one-by-one-person-detection.mp4"
    with pytest.raises(SourceError, match="vaapi hardware decoding"):
        open_source(parse_source(str(video)), decode="vaapi")


def test_an_unknown_decode_mode_suggests_the_close_one():
    with pytest.raises(ConfigError, match="decode 'vapi': expected one of auto, software, vaapi.*did you mean 'vaapi'"):
        check_decode("vapi")


def test_decoder_threads_share_the_cores():
    assert decode_threads(1, cores=2) == 2
    assert decode_threads(4, cores=2) == 1
    assert decode_threads(1, cores=32) == 4
    assert decode_threads(3, cores=12) == 4 and decode_threads(6, cores=12) == 2


def test_the_pipeline_reports_each_streams_decoder(assets, tiny):
    from ovq.model.detector import Detector

    video = str(assets / "videos/one-by-one-person-detection.mp4")
    summary = Pipeline(Detector(tiny), [video, video], max_frames=2, stats_interval=0, decode="software").run()
    assert summary.extra["decode"] == {"s0": "software", "s1": "software"}
    with pytest.raises(ConfigError, match="decode 'gpu'"):
        Pipeline(Detector(tiny), [video], decode="gpu")


@pytest.mark.services
@pytest.mark.parametrize("retry", [True, False])
def test_a_live_stream_takes_the_decode_mode_and_reports_its_decoder(assets, tiny, retry):
    """An RTSP camera was opened with OpenCV's defaults whatever --decode said, and its decoder was not reported."""
    from services import RtspServer

    from ovq.model.detector import Detector
    from ovq.streaming.readers import ReconnectPolicy

    reason = RtspServer.available()
    if reason:
        pytest.skip(reason)
    with RtspServer(assets / "videos/one-by-one-person-detection.mp4") as camera:
        summary = Pipeline(Detector(tiny), [camera.url], max_frames=3, stats_interval=0, decode="software",
                           reconnect=ReconnectPolicy(retry=retry)).run()
    assert summary.frames == 3
    assert summary.extra["decode"] == {"s0": "software"}


@pytest.mark.skipif(Path("/dev/dri").exists(), reason="this machine has a GPU device node; VA-API may work here")
def test_a_hardware_decoder_the_machine_lacks_is_refused_before_a_live_stream_retries_it(tiny):
    """A live source that fails to open is retried forever (a camera may come back): `--decode vaapi` on an RTSP
    camera retried every 30 s, for a decoder this machine cannot have. Now one line before anything runs."""
    from ovq.cli import main

    url = "rtsp://127.0.0.1:9/live"
    with pytest.raises(ConfigError, match=r"decode vaapi: this machine has no GPU render node \(/dev/dri/renderD\*\); use auto or software"):
        Pipeline(tiny, [url], decode="vaapi")
    with pytest.raises(ConfigError, match="decode d3d11: D3D11 video decoding is Windows only"):
        Pipeline(tiny, [url], decode="d3d11")
    assert main(["run", str(tiny), "--source", url, "--decode", "mfx", "-q"]) == 2
    # below that check, the live reader opens with the mode it was given (it used OpenCV's defaults whatever it was)
    from ovq.streaming.readers import FrameBuffer, LiveReader, ReconnectPolicy
    from ovq.streaming.stats import StreamMeter

    reader = LiveReader("cam", parse_source(url), FrameBuffer(1, latest_only=True, wake=threading.Event()),
                        StreamMeter("cam", url, connected=False),
                        ReconnectPolicy(stall_timeout=1.0), decode="vaapi")
    with pytest.raises(SourceError, match="cannot open with vaapi hardware decoding"):
        reader.opener()
