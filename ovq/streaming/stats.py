"""Per-stream run statistics: frames, FPS, end-to-end latency percentiles, dropped frames, reconnects.

Latencies go into a fixed log-spaced histogram (2 % wide bins from 0.01 ms to about 3 hours), so a stream that
runs for months keeps constant memory and its percentiles stay within 2 % of the exact value.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ovq.runtime import steal

_MIN_MS = 0.01
_RATIO = 1.02
_BINS = math.ceil(math.log(1e7 / _MIN_MS) / math.log(_RATIO)) + 1


class LatencyHistogram:
    """Counts of latencies (ms) in log-spaced bins; percentiles report the bin's geometric middle."""

    def __init__(self) -> None:
        self.counts = np.zeros(_BINS, np.int64)
        self.total = 0

    def add(self, ms: float) -> None:
        index = 0 if ms <= _MIN_MS else min(_BINS - 1, int(math.log(ms / _MIN_MS) / math.log(_RATIO)) + 1)
        self.counts[index] += 1
        self.total += 1

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0..100) in ms, or ``None`` without samples."""
        if self.total == 0:
            return None
        rank = max(1, math.ceil(q / 100.0 * self.total))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        if index == 0:
            return _MIN_MS
        low = _MIN_MS * _RATIO ** (index - 1)
        return low * math.sqrt(_RATIO)


@dataclass
class StreamStats:
    """What one stream did: counts for the whole run, rates and latencies over ``seconds``."""

    name: str
    source: str
    frames: int = 0  # results delivered to the sinks
    dropped: int = 0  # live frames replaced by a newer one before inference could take them
    reconnects: int = 0
    errors: int = 0  # frames whose inference failed
    seconds: float = 0.0
    fps: float = 0.0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    connected: bool = True
    finished: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("fps", "seconds", "latency_p50_ms", "latency_p95_ms"):
            if d[key] is not None:
                d[key] = round(d[key], 3)
        return d

    def line(self) -> str:
        """One log line: ``s0: 29.8 fps, latency p50 31 ms p95 44 ms, dropped 3, reconnects 0``."""
        if self.latency_p50_ms is None:
            latency = "latency n/a"
        else:
            latency = f"latency p50 {self.latency_p50_ms:.0f} ms p95 {self.latency_p95_ms:.0f} ms"
        state = "" if self.connected or self.finished else ", DISCONNECTED"
        errors = f", errors {self.errors}" if self.errors else ""
        return (
            f"{self.name}: {self.fps:.1f} fps, {latency}, frames {self.frames}, dropped {self.dropped}, "
            f"reconnects {self.reconnects}{errors}{state}"
        )


class StreamMeter:
    """Thread-safe accumulator for one stream; ``snapshot`` gives whole-run or since-last-interval stats."""

    def __init__(self, name: str, source: str, *, connected: bool = True) -> None:
        self.name = name
        self.source = source
        self._lock = threading.Lock()
        self._start: float | None = None
        self._end: float | None = None
        self._frames = 0
        self._dropped = 0
        self._reconnects = 0
        self._errors = 0
        self._connected = connected
        self._finished = False
        self._hist = LatencyHistogram()
        self._interval_hist = LatencyHistogram()
        self._interval_frames = 0
        self._interval_start = time.monotonic()

    def started(self, now: float | None = None) -> None:
        with self._lock:
            if self._start is None:
                self._start = time.monotonic() if now is None else now

    def result(self, latency_ms: float) -> None:
        with self._lock:
            now = time.monotonic()
            if self._start is None:
                self._start = now
            self._end = now
            self._frames += 1
            self._interval_frames += 1
            self._hist.add(latency_ms)
            self._interval_hist.add(latency_ms)

    def dropped(self, n: int = 1) -> None:
        with self._lock:
            self._dropped += n

    def reconnected(self) -> None:
        with self._lock:
            self._reconnects += 1
            self._connected = True

    def connected(self) -> None:
        with self._lock:
            self._connected = True

    def disconnected(self) -> None:
        with self._lock:
            self._connected = False

    def error(self) -> None:
        with self._lock:
            self._errors += 1

    def finished(self) -> None:
        with self._lock:
            self._finished = True

    @property
    def frames(self) -> int:
        with self._lock:
            return self._frames

    def snapshot(self) -> StreamStats:
        """Stats over the whole run (FPS from the first to the last result)."""
        with self._lock:
            seconds = 0.0 if self._start is None or self._end is None else self._end - self._start
            # n results span n-1 intervals; a single result has no rate
            fps = (self._frames - 1) / seconds if self._frames > 1 and seconds > 0 else 0.0
            return self._stats(self._hist, fps, seconds)

    def interval(self) -> StreamStats:
        """Stats since the previous call (for the periodic log line), then start a new interval."""
        with self._lock:
            now = time.monotonic()
            seconds = now - self._interval_start
            fps = self._interval_frames / seconds if seconds > 0 else 0.0
            stats = self._stats(self._interval_hist, fps, seconds)
            self._interval_hist = LatencyHistogram()
            self._interval_frames = 0
            self._interval_start = now
            return stats

    def _stats(self, hist: LatencyHistogram, fps: float, seconds: float) -> StreamStats:
        return StreamStats(
            name=self.name, source=self.source, frames=self._frames, dropped=self._dropped,
            reconnects=self._reconnects, errors=self._errors, seconds=seconds, fps=fps,
            latency_p50_ms=hist.percentile(50), latency_p95_ms=hist.percentile(95),
            connected=self._connected, finished=self._finished,
        )


@dataclass
class RunSummary:
    """The result of :meth:`ovq.Pipeline.run`: per-stream stats and the wall time of the run."""

    streams: dict[str, StreamStats]
    seconds: float
    model: str = ""
    device: str = ""
    inference_precision: str = ""
    nireq: int = 0
    stopped: bool = False  # True when stop() (or a signal) ended the run before the sources did
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.streams.values())

    @property
    def fps(self) -> float:
        """All streams together: results per second of the run's wall time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "device": self.device,
            "inference_precision": self.inference_precision,
            "nireq": self.nireq,
            "seconds": round(self.seconds, 3),
            "frames": self.frames,
            "fps": round(self.fps, 3),
            "stopped": self.stopped,
            "streams": {name: s.to_dict() for name, s in self.streams.items()},
            **self.extra,
        }

    def lines(self) -> list[str]:
        head = (
            f"{self.frames} frames from {len(self.streams)} stream(s) in {self.seconds:.1f} s "
            f"({self.fps:.1f} fps) on {self.device}, inference precision {self.inference_precision}"
        )
        if "resize" in self.extra:
            head += f", resize in {self.extra['resize']}"
        if self.extra.get("nms") == "graph":
            head += ", NMS in graph"
        decoders = sorted({d for d in (self.extra.get("decode") or {}).values() if d})
        if decoders:
            head += f", {'/'.join(decoders)} video decoding"
        warn = steal.warning(self.extra.get("steal_percent"), "fps and latency are what the VM got from a busy host")
        return [head] + [s.line() for s in self.streams.values()] + ([f"warning: {warn}"] if warn else [])
