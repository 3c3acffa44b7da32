"""The live view's page in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium).

An MJPEG page never finishes loading: the tests poll the page's own state (tests/chromium.py). Set ``OVQ_TEST_ARTIFACTS=DIR`` to keep the screenshots.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from chromium import open_chromium, unavailable, wait_for
from test_web import Feeder

pytestmark = [pytest.mark.browser, pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))]


@pytest.fixture
def browser():
    driver = open_chromium()
    yield driver
    driver.quit()


IMAGES = "Array.from(document.images)"
ALL_SHOWN = f"document.images.length > 0 && {IMAGES}.every(i => i.naturalWidth > 0)"
CARD_TEXT = "Array.from(document.querySelectorAll('.card')).map(c => c.innerText)"


def keep(screenshot: Path) -> None:
    where = os.environ.get("OVQ_TEST_ARTIFACTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(where) / screenshot.name)


def check_screenshot(path: Path, width: int) -> None:
    image = cv2.imread(str(path))
    assert image is not None and image.shape[1] == width
    assert image.std() > 10  # not a blank page
    keep(path)


def test_page_shows_every_stream_live_with_changing_stats(browser, tiny, tmp_path):
    """``ovq run --serve`` as a user runs it, two streams, the page opened in Chromium."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ovq", "run", str(tiny), "--source", "synth://conveyor?fps=15&width=480&height=360",
         "--source", "synth://conveyor?fps=10&width=480&height=360&seed=3", "--name", "line1", "--name", "line2",
         "--serve", f"127.0.0.1:{port}", "--serve-fps", "5", "--stats-interval", "0"],
        stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        browser.get(url)
        wait_for(browser, "document.querySelectorAll('.card').length == 2")
        wait_for(browser, ALL_SHOWN)
        srcs = browser.execute_script(f"return {IMAGES}.map(i => i.src)")
        assert srcs == [f"{url}stream/line1.mjpg", f"{url}stream/line2.mjpg"]
        assert browser.execute_script(f"return {IMAGES}.map(i => i.naturalWidth)") == [480, 480]
        first = wait_for(browser, f"{CARD_TEXT}.every(t => /frames\\s+[1-9]/.test(t)) && {CARD_TEXT}")
        time.sleep(2.5)
        second = browser.execute_script(f"return {CARD_TEXT}")
        assert all(a != b for a, b in zip(first, second, strict=True)), (first, second)  # every card updated
        assert all("live" in text and "fps" in text and "latency p95" in text for text in second)
        status = browser.execute_script("return document.getElementById('status').innerText")
        assert status.startswith("2 stream(s) · healthy")
        shot = tmp_path / "live_view_two_streams.png"
        browser.save_screenshot(str(shot))
        check_screenshot(shot, 1280)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_many_streams_poll_snapshots_so_the_page_stays_within_the_browsers_connections(browser, tmp_path):
    """Six streams: six MJPEG tiles would take every connection Chromium allows per host (and the stats requests
    would hang); the page polls snapshots instead, and every tile still shows a frame."""
    from ovq.streaming.web import LiveServer

    live = LiveServer("127.0.0.1", 0, fps=5.0, token="tok")
    names = [f"cam{i}" for i in range(6)]
    feeder = Feeder(live, streams=names, fps=15.0)
    try:
        browser.get(f"http://127.0.0.1:{live.port}/?token=tok")
        wait_for(browser, "document.querySelectorAll('.card').length == 6")
        wait_for(browser, ALL_SHOWN)
        srcs = browser.execute_script(f"return {IMAGES}.map(i => i.src)")
        assert all("/snapshot/" in src and "token=tok" in src for src in srcs)
        before = wait_for(browser, f"{CARD_TEXT}.every(t => t.includes('person')) && {CARD_TEXT}")
        time.sleep(2.0)
        after = browser.execute_script(f"return {CARD_TEXT}")
        assert before != after  # stats kept coming: the connections were not all taken
        stats = json.loads(browser.execute_script(
            "const r = new XMLHttpRequest(); r.open('GET', 'stats.json?token=tok', false); r.send(); "
            "return r.responseText"))
        assert [s["name"] for s in stats["streams"]] == names
        shot = tmp_path / "live_view_six_streams.png"
        browser.save_screenshot(str(shot))
        check_screenshot(shot, 1280)
    finally:
        feeder.stop()
        live.close()


def test_a_stream_that_ended_still_shows_its_last_frame(browser):
    """Chromium shows an MJPEG part once the next one begins: the server sends the delimiter right after each
    image, so the only frame of a stream that stopped is shown too."""
    from test_web import result

    from ovq.streaming.pipeline import FrameResult  # noqa: F401 - the type test_web.result builds
    from ovq.streaming.web import LiveServer

    live = LiveServer("127.0.0.1", 0)
    try:
        live.start(["once"])
        live.write(result("once", 3, size=(200, 100)))
        browser.get(f"http://127.0.0.1:{live.port}/")
        assert wait_for(browser, f"{ALL_SHOWN} && {IMAGES}.map(i => i.naturalWidth)") == [200]
    finally:
        live.close()


def test_page_without_its_token_shows_why(browser):
    from ovq.streaming.web import LiveServer

    live = LiveServer("127.0.0.1", 0, token="tok")
    try:
        browser.get(f"http://127.0.0.1:{live.port}/")
        wait_for(browser, "document.body && document.body.innerText.includes('needs its token')", timeout=15)
    finally:
        live.close()


def test_the_page_reopens_its_live_tiles_when_the_server_comes_back(browser):
    """A restarted run (a service restart, a crash) ends every MJPEG connection; Chromium keeps showing the last
    frame of an ended stream and tells the page nothing, so the page reopens its tiles once the server answers
    again, and says the pipeline is unreachable meanwhile."""
    from ovq.streaming.web import LiveServer

    live = LiveServer("127.0.0.1", 0, fps=5.0)
    port = live.port
    feeder = Feeder(live, fps=15.0, size=(320, 240))
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        assert wait_for(browser, f"{ALL_SHOWN} && {IMAGES}.map(i => i.naturalWidth)") == [320]
        wait_for(browser, f"{CARD_TEXT}[0].includes('live')")
    finally:
        feeder.stop()
        live.close()
    wait_for(browser, "document.getElementById('status').innerText.startsWith('no connection')")
    assert "live" not in browser.execute_script(f"return {CARD_TEXT}")[0]  # a card no longer claims it is live
    live = LiveServer("127.0.0.1", port, fps=5.0)  # the run again, on the same port; its frames are smaller
    feeder = Feeder(live, fps=15.0, size=(200, 150))
    try:
        assert wait_for(browser, f"{IMAGES}[0].naturalWidth == 200 && {IMAGES}.map(i => i.naturalWidth)") == [200]
        wait_for(browser, f"{CARD_TEXT}[0].includes('live')")
    finally:
        feeder.stop()
        live.close()


def test_a_card_says_when_its_camera_is_being_dialled_again(browser):
    """A camera that went away: the card says the pipeline is reconnecting (not just "stalled"), then live again."""
    from ovq.streaming.stats import StreamStats
    from ovq.streaming.web import LiveServer

    live = LiveServer("127.0.0.1", 0, fps=5.0)
    pipeline = {"connected": True}
    live.attach_stats(lambda: {"s0": StreamStats(name="s0", source="rtsp://cam/1", **pipeline)})
    feeder = Feeder(live, fps=15.0)
    state = "document.querySelector('.card .state').innerText"
    try:
        browser.get(f"http://127.0.0.1:{live.port}/")
        wait_for(browser, f"document.querySelector('.card .state') && {state} == 'live'")
        feeder.stop()
        pipeline["connected"] = False
        wait_for(browser, f"{state} == 'reconnecting'")
        pipeline["connected"] = True
        feeder = Feeder(live, fps=15.0)
        wait_for(browser, f"{state} == 'live'")
    finally:
        feeder.stop()
        live.close()


def test_two_tabs_of_a_four_stream_page_both_show_every_stream_and_their_stats(browser):
    """Chromium's 6 connections per host are for the whole browser, not per tab: two tabs of four MJPEG tiles
    each left the second tab's last tiles blank and the stats of both frozen. A page whose stats request waits
    for a connection gives up its MJPEG tiles for snapshots, so every tab shows every stream."""
    from ovq.streaming.web import LiveServer

    live = LiveServer("127.0.0.1", 0, fps=5.0)
    feeder = Feeder(live, streams=[f"cam{i}" for i in range(4)], fps=10.0)
    status = "document.getElementById('status').innerText"
    try:
        browser.get(f"http://127.0.0.1:{live.port}/")
        wait_for(browser, ALL_SHOWN)
        first = browser.current_window_handle
        browser.switch_to.new_window("tab")
        browser.get(f"http://127.0.0.1:{live.port}/")
        for tab in (browser.current_window_handle, first):
            browser.switch_to.window(tab)
            wait_for(browser, f"document.images.length == 4 && {ALL_SHOWN}")
            shown = wait_for(browser, f"{status}.includes('healthy') && {status}")
            wait_for(browser, f"{status} != {json.dumps(shown)}")  # its stats still come
    finally:
        feeder.stop()
        live.close()


def test_a_base64_token_typed_into_the_address_bar_opens_the_page(browser):
    from ovq.streaming.web import LiveServer

    token = "k3+Zq/8w=="
    live = LiveServer("127.0.0.1", 0, fps=5.0, token=token)
    feeder = Feeder(live, fps=10.0)
    try:
        browser.get(f"http://127.0.0.1:{live.port}/?token={token}")
        wait_for(browser, ALL_SHOWN)
        wait_for(browser, "document.getElementById('status').innerText.includes('healthy')")
    finally:
        feeder.stop()
        live.close()
