"""The live view's state: the newest annotated frame of every stream, JPEG-encoded once for all viewers, and
live per-stream stats.

Threads::

    pipeline post-processor --write()--> newest result per stream --encoder thread--> JPEG + sequence number
    (stores a reference, counts;         (older ones replaced:        (at most ``fps`` per  --notify--> viewers
     never waits)                          frames skipped for display)  stream, when watched)

:meth:`LiveView.write` holds a lock for a few dictionary updates and returns: the pipeline never waits for the
encoder or for a viewer. The encoder annotates and encodes a stream's newest frame at most ``fps`` times a second,
and only while someone watches it (an MJPEG viewer connected, or a snapshot asked for in the last
``SNAPSHOT_DEMAND_S`` seconds), so a run nobody looks at pays nothing but the counting. Each encoded frame is one
``bytes`` object shared by every viewer; a viewer that is slow simply receives the newest frame when it is ready
for the next one.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from ovq.core.detections import Detections
from ovq.core.drawing import annotate
from ovq.core.errors import ConfigError
from ovq.streaming.pipeline import FrameResult
from ovq.streaming.stats import StreamStats

logger = logging.getLogger(__name__)

WINDOW_S = 3.0  # live fps and latency percentiles are over the last WINDOW_S seconds
SNAPSHOT_DEMAND_S = 5.0  # a snapshot request keeps its stream encoded this long (snapshot-polling pages)
# results kept for the window, also at thousands of fps. Older ones are dropped as results come: a 25-minute soak
# (benchmarks/bench_soak.py, tracemalloc) found the window holding its 10,000 for good, one tuple a frame, which
# every JPEG encode and /stats request scanned under the lock the pipeline's delivery thread takes
MAX_WINDOW = 10_000


@dataclass(frozen=True)
class Jpeg:
    """One encoded frame: shared, read-only, by every viewer."""

    data: bytes
    seq: int  # per stream, increasing
    frame_index: int
    encoded_at: float  # time.monotonic()


@dataclass
class _State:
    name: str
    latest: FrameResult | None = None
    fresh: bool = False  # latest not encoded yet
    last_result_at: float | None = None  # time.monotonic() of the newest result
    latest_fps: float = 0.0  # the stream's rate when the newest result came: what its frame's overlay says
    window: collections.deque = field(default_factory=lambda: collections.deque(maxlen=MAX_WINDOW))
    in_frame: dict[str, int] = field(default_factory=dict)  # detections per class in the newest frame
    totals: collections.Counter = field(default_factory=collections.Counter)  # detections per class, whole run
    jpeg: Jpeg | None = None
    next_encode: float = 0.0
    viewers: int = 0
    wanted_until: float = 0.0
    size: tuple[int, int] | None = None  # (width, height) of the newest frame


class LiveView:
    """A sink that keeps what the live view shows: see the module docstring.

    ``fps`` caps the encoded frames per stream and second; ``quality`` is the JPEG quality (1..100);
    frames wider than ``max_width`` are scaled down before encoding (encoding cost grows with the pixels);
    a stream that has not delivered a result for ``stall_s`` seconds, and has not finished, is stalled
    (:meth:`health`). Counters the pipeline keeps (dropped frames, reconnects) come from the callable given to
    :meth:`attach_stats` (``Pipeline.stream_stats``).
    """

    def __init__(self, *, fps: float = 10.0, quality: int = 80, max_width: int = 1280, stall_s: float = 10.0,
                 labels: list[str] | None = None) -> None:
        if not fps > 0:
            raise ConfigError(f"live view fps must be > 0, got {fps}")
        if not 1 <= quality <= 100:
            raise ConfigError(f"JPEG quality must be within 1..100, got {quality}")
        if not stall_s > 0:
            raise ConfigError(f"stall time must be > 0, got {stall_s}")
        self.fps = fps
        self.quality = quality
        self.max_width = max_width
        self.stall_s = stall_s
        self.labels = labels
        self.encoded = 0  # frames encoded, all streams
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[str], None]] = []
        self._stats: Callable[[], dict[str, StreamStats]] | None = None
        self._started_at = time.monotonic()

    # -- the sink side (pipeline threads) ------------------------------------------------------------------
    def start(self, streams: Sequence[str]) -> None:
        with self._lock:
            for name in streams:
                self._states.setdefault(name, _State(name))
        self._started_at = time.monotonic()
        if self._thread is None:
            self._thread = threading.Thread(target=self._encode_loop, name="ovq-live-encoder", daemon=True)
            self._thread.start()

    def write(self, result: FrameResult) -> None:
        now = time.monotonic()
        ids, counts = np.unique(result.detections.class_id, return_counts=True)
        labels = self.labels or result.labels
        in_frame = {_label(labels, int(i)): int(n) for i, n in zip(ids, counts, strict=True)}
        with self._lock:
            st = self._states.get(result.stream)
            if st is None:
                st = self._states[result.stream] = _State(result.stream)
            st.latest, st.fresh, st.last_result_at = result, True, now
            st.window.append((now, result.latency_ms))
            while now - st.window[0][0] > WINDOW_S:  # only the window's results: stats and every encode scan it
                st.window.popleft()
            # measured as the frame comes, not when it is encoded: a stream's last frame, encoded for a viewer who
            # came after the stream had finished (its window empty by then), said "0.0 FPS"
            st.latest_fps = _rate(len(st.window), st.window[0][0], now)
            st.in_frame = in_frame
            st.totals.update(in_frame)
            st.size = (result.frame.shape[1], result.frame.shape[0])
        self._wake.set()

    def close(self) -> None:
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    # -- the viewer side (the web server's thread) ---------------------------------------------------------
    @property
    def streams(self) -> list[str]:
        with self._lock:
            return list(self._states)

    def attach_stats(self, provider: Callable[[], dict[str, StreamStats]]) -> None:
        """Where the pipeline's own counters come from (``Pipeline.stream_stats``)."""
        self._stats = provider

    def add_listener(self, callback: Callable[[str], None]) -> None:
        """``callback(stream)`` is called on the encoder thread after each new JPEG of ``stream``."""
        self._listeners.append(callback)

    def latest(self, stream: str) -> Jpeg | None:
        with self._lock:
            st = self._states.get(stream)
            return None if st is None else st.jpeg

    def watch(self, stream: str, delta: int) -> None:
        """An MJPEG viewer of ``stream`` came (+1) or went (-1)."""
        with self._lock:
            self._states[stream].viewers = max(0, self._states[stream].viewers + delta)
        self._wake.set()

    def want(self, stream: str) -> bool:
        """Someone asked for a snapshot: encode ``stream`` for the next ``SNAPSHOT_DEMAND_S`` seconds.

        Returns whether a frame newer than the last JPEG is waiting (else, e.g. for a stream that ended, the
        last JPEG is as new as it gets).
        """
        with self._lock:
            st = self._states[stream]
            st.wanted_until = time.monotonic() + SNAPSHOT_DEMAND_S
            pending = st.fresh
        self._wake.set()
        return pending

    def viewers(self) -> int:
        with self._lock:
            return sum(st.viewers for st in self._states.values())

    # -- stats -----------------------------------------------------------------------------------------------
    def stats(self) -> list[dict[str, Any]]:
        """One object per stream: the pipeline's counters plus live fps, latency and detections per class."""
        pipeline = self._stats() if self._stats is not None else {}
        now = time.monotonic()
        out = []
        with self._lock:
            states = list(self._states.values())
            live = [(st, [(t, lat) for t, lat in st.window if now - t <= WINDOW_S]) for st in states]
        for st, recent in live:
            latencies = [lat for _, lat in recent]
            fps = _rate(len(recent), recent[0][0], now) if recent else 0.0
            base = pipeline.get(st.name)
            record: dict[str, Any] = base.to_dict() if base is not None else {"name": st.name}
            record.pop("seconds", None)
            age = None if st.last_result_at is None else now - st.last_result_at
            stalled = self._stalled(st, base, now)
            state = _state(st, base, stalled)
            record.update(
                state=state,
                fps=round(fps, 2),
                latency_p50_ms=_percentile(latencies, 50),
                latency_p95_ms=_percentile(latencies, 95),
                last_result_age_s=None if age is None else round(age, 3),
                stalled=stalled,
                detections=dict(st.in_frame) if state in ("live", "finished") else {},  # not what a lost camera sees
                detections_total=dict(st.totals),
                viewers=st.viewers,
                width=st.size[0] if st.size else None,
                height=st.size[1] if st.size else None,
            )
            out.append(record)
        return out

    def health(self) -> list[str]:
        """The names of the stalled streams (empty: healthy)."""
        pipeline = self._stats() if self._stats is not None else {}
        now = time.monotonic()
        with self._lock:
            return [st.name for st in self._states.values() if self._stalled(st, pipeline.get(st.name), now)]

    def _stalled(self, st: _State, base: StreamStats | None, now: float) -> bool:
        if base is not None and base.finished:
            return False
        since = st.last_result_at if st.last_result_at is not None else self._started_at
        return now - since > self.stall_s

    # -- encoder thread --------------------------------------------------------------------------------------
    def _encode_loop(self) -> None:
        while not self._closing.is_set():
            now = time.monotonic()
            due = now + 0.5
            todo = []
            with self._lock:
                for st in self._states.values():
                    if not st.fresh or not (st.viewers > 0 or st.wanted_until > now):
                        continue
                    if now < st.next_encode:
                        due = min(due, st.next_encode)
                        continue
                    st.fresh = False
                    st.next_encode = now + 1.0 / self.fps
                    todo.append((st, st.latest, st.latest_fps))
            for st, result, fps in todo:
                try:
                    jpeg = self._encode(result, st, fps)
                except Exception as exc:  # noqa: BLE001 - a frame that cannot be drawn must not end the live view
                    logger.warning("%s: live view cannot encode frame %d: %s: %s", st.name, result.frame_index,
                                   type(exc).__name__, exc)
                    continue
                with self._lock:
                    st.jpeg = jpeg
                self.encoded += 1
                for callback in self._listeners:
                    callback(st.name)
            if not todo:
                self._wake.wait(max(0.0, due - time.monotonic()))
                self._wake.clear()

    def _encode(self, result: FrameResult, st: _State, fps: float) -> Jpeg:
        frame = result.frame
        if frame.shape[1] > self.max_width:
            scale = self.max_width / frame.shape[1]
            frame = cv2.resize(frame, (self.max_width, round(frame.shape[0] * scale)), interpolation=cv2.INTER_AREA)
            result = _scaled(result, frame, scale)
        image = annotate(frame, result.detections, self.labels or result.labels,
                         overlay=f"{result.stream}  {fps:.1f} FPS")
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        seq = st.jpeg.seq + 1 if st.jpeg is not None else 1
        return Jpeg(buf.tobytes(), seq, result.frame_index, time.monotonic())


def _state(st: _State, base: StreamStats | None, stalled: bool) -> str:
    """What the page says of a stream: finished, connecting / reconnecting (its source is down and the pipeline
    dials it again: a stall with a cause), stalled, starting (no result yet) or live."""
    if base is not None and base.finished:
        return "finished"
    if base is not None and not base.connected:
        return "connecting" if st.last_result_at is None else "reconnecting"
    if stalled:
        return "stalled"
    return "starting" if st.last_result_at is None else "live"


def _rate(n: int, first: float, now: float) -> float:
    """Results per second: ``n`` results since the first (at ``first``) span n-1 intervals; decays during a stall."""
    return (n - 1) / (now - first) if n > 1 and now > first else 0.0


def _label(labels: list[str] | None, class_id: int) -> str:
    return labels[class_id] if labels and 0 <= class_id < len(labels) else str(class_id)


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def _scaled(result: FrameResult, frame: np.ndarray, scale: float) -> FrameResult:
    dets = result.detections
    return replace(result, frame=frame, detections=Detections(
        xyxy=dets.xyxy * scale, confidence=dets.confidence, class_id=dets.class_id, tracker_id=dets.tracker_id,
        data=dets.data))
