"""Where pipeline results go: annotated MP4, a window, JSON Lines, MQTT.

Every sink has ``write(result)`` and ``close()`` (see :class:`ovq.streaming.pipeline.Sink`); the pipeline calls them
from one thread, in frame order per stream. An optional ``start(stream_names)`` is called before the first
frame, so a sink can lay out one output per stream.

Output files:

- :class:`VideoSink` writes each video (H.264 MP4 or VP9 WebM a browser plays where the installed libraries allow:
  :mod:`ovq.streaming.video`) to a hidden temporary file beside the target and renames it on :meth:`~VideoSink.close`, so the target path only ever holds a finished, playable
  video. An MP4 is only readable once its index is written at close anyway: a hard kill (SIGKILL, power
  loss) leaves an unreadable file either way, and this way it is a hidden ``.NAME.partial.mp4``, not the
  target. SIGINT/SIGTERM through ``ovq run`` close it properly.
- :class:`JsonlSink` writes its file in place, one complete line per frame, flushed as it goes: it is a log
  that can be followed while the pipeline runs (``tail -f``) and that keeps every finished line after a
  hard kill; a temporary file would lose all of it.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import cv2

from ovq.core.drawing import annotate
from ovq.core.errors import ConfigError, DependencyError, OvqError
from ovq.streaming.pipeline import FrameResult
from ovq.streaming.video import VideoWriter, check_suffix, even_size, open_writer

logger = logging.getLogger(__name__)


def frame_record(result: FrameResult, labels: list[str] | None = None) -> dict[str, Any]:
    """The JSON record of one frame (JSON Lines and MQTT payloads)."""
    h, w = result.frame.shape[:2]
    return {
        "stream": result.stream,
        "source": result.source,
        "frame_index": result.frame_index,
        "timestamp": round(result.timestamp, 6),
        "latency_ms": round(result.latency_ms, 3),
        "width": w,
        "height": h,
        "detections": result.detections.to_records(labels or result.labels),
    }


class RateMeter:
    """Frames per second over the last ``window`` seconds (for overlays)."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._times: collections.deque[float] = collections.deque()

    def tick(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        while len(self._times) > 2 and now - self._times[0] > self.window:
            self._times.popleft()
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "stream"


@dataclass
class _Writer:
    path: Path
    tmp: Path
    writer: VideoWriter
    size: tuple[int, int]  # (width, height)
    rate: RateMeter
    frames: int = 0


class VideoSink:
    """Annotated video (boxes, labels, track IDs, stream name and FPS overlay), one file per stream.

    ``.mp4`` is H.264 and ``.webm`` VP9 when PyAV is installed (``ovq[video]``); without it ``.webm`` is still VP9
    (OpenCV, slow) and ``.mp4`` MPEG-4 Part 2, which browsers do not play (:mod:`ovq.streaming.video`). The log
    says which codec each file got. ``use_av=False`` forces OpenCV.

    With a single stream the file is ``path``; with several, ``path`` gets the stream name as a suffix
    (``out.mp4`` -> ``out_s0.mp4``, ``out_s1.mp4``). ``fps`` is the frame rate written into the file (default:
    the source's, else 25). Frames of another size than the first are resized to it.

    Annotation and encoding run on a thread of the sink's own behind a queue of ``queue_size`` results, so the
    pipeline never waits on the encoder - nor on OpenCV's FFmpeg lock, which holds a new writer back while any
    other stream of the process is opening (an RTSP open can take seconds). When that queue is full,
    :meth:`write` waits (backpressure, no frame is lost).
    """

    def __init__(
        self, path: str | Path, *, labels: list[str] | None = None, fps: float | None = None, queue_size: int = 64,
        use_av: bool | None = None,
    ) -> None:
        self.path = Path(path)
        check_suffix(self.path)
        self.use_av = use_av
        if fps is not None and fps <= 0:
            raise ConfigError(f"{self.path}: fps must be > 0, got {fps}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.labels = labels
        self.fps = fps
        self._streams: list[str] | None = None
        self._writers: dict[str, _Writer] = {}
        self._queue: queue.Queue[FrameResult | None] = queue.Queue(maxsize=max(1, queue_size))
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.written: dict[str, Path] = {}  # stream -> finished file, filled by close()

    def start(self, streams: Sequence[str]) -> None:
        self._streams = list(streams)

    def path_for(self, stream: str) -> Path:
        several = self._streams is not None and len(self._streams) > 1
        if several or (self._writers and stream not in self._writers):
            return self.path.with_name(f"{self.path.stem}_{_safe_name(stream)}{self.path.suffix}")
        return self.path

    def write(self, result: FrameResult) -> None:
        if self._error is not None:
            raise self._error
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ovq-video-sink", daemon=True)
            self._thread.start()
        self._queue.put(result)

    def _run(self) -> None:
        while True:
            result = self._queue.get()
            if result is None:
                return
            if self._error is not None:
                continue  # keep draining so write() never blocks on a dead encoder
            try:
                self._encode(result)
            except BaseException as exc:  # noqa: BLE001 - raised by the next write() or close()
                self._error = exc
                logger.error("%s: video writing failed: %s", result.stream, exc)

    def _encode(self, result: FrameResult) -> None:
        w = self._writers.get(result.stream) or self._open(result)
        rate = w.rate.tick()
        overlay = f"{result.stream}  {rate:.1f} FPS"
        image = annotate(result.frame, result.detections, self.labels or result.labels, overlay=overlay)
        if (image.shape[1], image.shape[0]) != w.size:
            image = cv2.resize(image, w.size, interpolation=cv2.INTER_AREA)
        w.writer.write(image)
        w.frames += 1

    def _open(self, result: FrameResult) -> _Writer:
        path = self.path_for(result.stream)
        tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
        h, w = result.frame.shape[:2]
        w, h = even_size(w, h)
        fps = self.fps or result.fps or 25.0
        writer = open_writer(tmp, path.suffix, (w, h), fps, use_av=self.use_av)
        logger.info("%s: writing %s (%dx%d, %.1f fps, %s)", result.stream, path, w, h, fps, writer.codec)
        if writer.note:
            logger.warning("%s: %s", path, writer.note)
        state = _Writer(path=path, tmp=tmp, writer=writer, size=(w, h), rate=RateMeter())
        self._writers[result.stream] = state
        return state

    def close(self) -> None:
        """Finish every file (encode what is queued, write the MP4 index) and move it into place."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        errors = [str(self._error)] if self._error is not None else []
        for stream, w in self._writers.items():
            try:
                w.writer.release()
                os.replace(w.tmp, w.path)
                self.written[stream] = w.path
                logger.info("%s: wrote %s (%d frames)", stream, w.path, w.frames)
            except (OSError, OvqError) as exc:
                errors.append(f"{w.path}: {exc}")
        self._writers.clear()
        if errors:
            raise OvqError("; ".join(errors))


class JsonlSink:
    """JSON Lines: one record per frame (see :func:`frame_record`), written and flushed as it comes."""

    def __init__(self, path: str | Path, *, labels: list[str] | None = None) -> None:
        self.path = Path(path)
        self.labels = labels
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fh: IO[str] | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise OvqError(f"{self.path}: cannot write: {exc.strerror}") from None
        self.records = 0

    def write(self, result: FrameResult) -> None:
        if self._fh is None:
            raise OvqError(f"{self.path}: sink is closed")
        self._fh.write(json.dumps(frame_record(result, self.labels), separators=(",", ":")) + "\n")
        self._fh.flush()
        self.records += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def mqtt_settings(url: str | None = None) -> dict[str, Any]:
    """Broker host, port, TLS and credentials from ``url`` or ``$OVQ_MQTT_URL`` plus the credential variables.

    ``$OVQ_MQTT_USERNAME`` / ``$OVQ_MQTT_PASSWORD`` win over credentials embedded in the URL.
    """
    url = url or os.environ.get("OVQ_MQTT_URL")
    if not url:
        raise ConfigError("no MQTT broker: pass a URL (mqtt://HOST[:PORT]) or set OVQ_MQTT_URL")
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    scheme = parts.scheme.lower()
    if scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(f"MQTT URL scheme '{scheme}://' is not supported; use mqtt:// or mqtts://")
    if not parts.hostname:
        raise ConfigError("MQTT URL has no host; expected mqtt://HOST[:PORT]")
    tls = scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ConfigError(f"MQTT URL has a bad port: {parts.netloc.rpartition('@')[2]}") from None
    username = os.environ.get("OVQ_MQTT_USERNAME") or (unquote(parts.username) if parts.username else None)
    password = os.environ.get("OVQ_MQTT_PASSWORD") or (unquote(parts.password) if parts.password else None)
    return {"host": parts.hostname, "port": port, "tls": tls, "username": username, "password": password}


class MqttSink:
    """One MQTT message per frame, JSON (see :func:`frame_record`), on topic ``{topic_prefix}/{stream}``.

    The broker comes from ``url`` or ``$OVQ_MQTT_URL``; credentials from ``$OVQ_MQTT_USERNAME`` and
    ``$OVQ_MQTT_PASSWORD`` (or embedded in ``$OVQ_MQTT_URL``). paho-mqtt's network thread connects in the
    background and reconnects with back-off (1 to 30 s) whenever the broker goes away; messages published while
    disconnected are dropped and counted (``unsent``) rather than piling up in memory.
    """

    def __init__(
        self, url: str | None = None, *, topic_prefix: str = "ovq", labels: list[str] | None = None, qos: int = 0,
        client_id: str | None = None,
    ) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise DependencyError("the MQTT sink needs paho-mqtt: pip install 'ovq[mqtt]'") from None
        if qos not in (0, 1):
            raise ConfigError(f"MQTT qos must be 0 or 1, got {qos}")
        settings = mqtt_settings(url)
        self.host, self.port = settings["host"], settings["port"]
        self.topic_prefix = topic_prefix.rstrip("/")
        self.labels = labels
        self.qos = qos
        self.sent = 0
        self.unsent = 0
        self._connected = threading.Event()
        self._last: Any = None
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"ovq-{os.getpid()}-{secrets.token_hex(3)}",
            reconnect_on_failure=True,
        )
        if settings["username"]:
            client.username_pw_set(settings["username"], settings["password"])
        if settings["tls"]:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        self._was_connected = False
        self._closing = False
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            logger.warning("MQTT broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        self._connected.set()
        if self._was_connected:
            logger.warning("MQTT: reconnected to %s:%d", self.host, self.port)
        else:
            logger.info("MQTT: connected to %s:%d", self.host, self.port)
        self._was_connected = True

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._closing:
            logger.warning("MQTT: lost the broker %s:%d (%s); reconnecting", self.host, self.port, reason)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def topic(self, stream: str) -> str:
        return f"{self.topic_prefix}/{stream}"

    def write(self, result: FrameResult) -> None:
        if not self._connected.is_set():
            self.unsent += 1
            if self.unsent == 1 or self.unsent % 100 == 0:
                logger.warning("MQTT: not connected to %s:%d; %d message(s) dropped", self.host, self.port, self.unsent)
            return
        payload = json.dumps(frame_record(result, self.labels), separators=(",", ":"))
        info = self._client.publish(self.topic(result.stream), payload, qos=self.qos)
        if info.rc == 0:
            self.sent += 1
            self._last = info
        else:
            self.unsent += 1

    def close(self, timeout: float = 5.0) -> None:
        self._closing = True
        last = self._last
        if last is not None and self._connected.is_set():
            try:
                last.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                logger.warning("MQTT: last message not confirmed: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        if self.unsent:
            logger.warning("MQTT: %d of %d message(s) were not sent", self.unsent, self.unsent + self.sent)


class WindowSink:
    """Shows each stream annotated in its own window; ``q`` or Esc calls ``on_quit`` (e.g. ``pipeline.stop``).

    Every GUI call (creating, drawing, closing windows, polling keys) runs on one thread of the sink's own, as
    OpenCV's Qt backend requires. :meth:`write` never waits for the screen: each window shows the newest result
    of its stream, and results that arrive faster than the screen refreshes are skipped (for display only).
    """

    def __init__(self, *, labels: list[str] | None = None, on_quit: Callable[[], None] | None = None) -> None:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise ConfigError("cannot show windows: no display (DISPLAY is not set)")
        self.labels = labels
        self.on_quit = on_quit
        self.shown = 0
        self._latest: dict[str, FrameResult] = {}
        self._lock = threading.Lock()
        self._new = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def write(self, result: FrameResult) -> None:
        if self._error is not None:
            raise self._error
        with self._lock:
            self._latest[result.stream] = result
        self._new.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ovq-window", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        rates: dict[str, RateMeter] = {}
        try:
            while True:
                self._new.wait(0.03)
                self._new.clear()
                with self._lock:
                    latest, self._latest = self._latest, {}
                for stream, result in latest.items():
                    title = f"ovq {stream}"
                    if stream not in rates:
                        rates[stream] = RateMeter()
                        cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE)
                    image = annotate(result.frame, result.detections, self.labels or result.labels,
                                     overlay=f"{stream}  {rates[stream].tick():.1f} FPS")
                    cv2.imshow(title, image)
                    self.shown += 1
                key = cv2.waitKey(1) & 0xFF
                if key in (ord("q"), 27) and self.on_quit is not None:
                    self.on_quit()
                if self._closing.is_set():
                    break
        except cv2.error as exc:
            self._error = OvqError(f"cannot show a window: {str(exc).strip().splitlines()[-1]}")
            logger.error("%s", self._error)
        finally:
            if rates:
                cv2.destroyAllWindows()
                cv2.waitKey(1)

    def close(self) -> None:
        self._closing.set()
        self._new.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
