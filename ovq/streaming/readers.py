"""Reader threads between a source and the pipeline: bounded frame buffers, lossless files, live reconnects.

A file reader blocks when its buffer is full (backpressure: every frame, in order). A live reader never blocks:
its buffer holds only the newest frame and counts each frame replaced before inference took it. A live source
that fails, ends, or stalls (no frame for ``stall_timeout`` seconds) is closed and reopened with exponential
back-off, forever unless ``retry=False``; each event is logged.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ovq.core.errors import ConfigError, SourceError
from ovq.streaming.sources import FrameSource, SourceSpec, open_source
from ovq.streaming.stats import StreamMeter

logger = logging.getLogger(__name__)


@dataclass
class ReconnectPolicy:
    """How live sources are reopened: back-off from ``initial_delay`` doubling up to ``max_delay`` seconds.

    A live source that delivers no frame for ``stall_timeout`` seconds counts as lost. With ``retry=False`` a
    live source that cannot be opened at start-up raises :class:`SourceError`, and one lost later ends its
    stream instead of being reopened.
    """

    initial_delay: float = 0.5
    max_delay: float = 30.0
    stall_timeout: float = 5.0
    retry: bool = True

    def __post_init__(self) -> None:
        if not (0 < self.initial_delay <= self.max_delay):
            raise ConfigError(
                "reconnect delays must satisfy 0 < initial_delay <= max_delay, "
                f"got {self.initial_delay}, {self.max_delay}"
            )
        if self.stall_timeout <= 0:
            raise ConfigError(f"stall_timeout must be > 0 seconds, got {self.stall_timeout}")


@dataclass
class Frame:
    """A decoded frame: ``index`` counts the frames read from the source (gaps are dropped frames)."""

    index: int
    image: np.ndarray
    timestamp: float  # wall time of capture (time.time())
    t_capture: float  # time.monotonic() of capture, for latency


class FrameBuffer:
    """A bounded frame queue with an end marker; ``latest_only`` keeps just the newest frame.

    A full queue takes frames again once half of it was taken: a file's reader then decodes several frames in one
    go, not one each time the scheduler takes one: a thread that wakes costs more than its work on a shared VM
    (~1 ms of CPU for one frame's pre- and postprocessing against 0.2-0.3 back to back, 2-core EPYC Zen 5;
    benchmarks/bench_pipeline.py python_cost_us)."""

    def __init__(self, capacity: int, *, latest_only: bool, wake: threading.Event) -> None:
        self.capacity = 1 if latest_only else max(1, capacity)
        self.latest_only = latest_only
        self._items: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._wake = wake

    def put(self, frame: Frame, *, abort: threading.Event | None = None) -> int:
        """Add ``frame``; returns how many older frames it replaced (live) - files wait for room instead."""
        replaced = 0
        with self._cond:
            if self.latest_only:
                replaced = len(self._items)
                self._items.clear()
            elif len(self._items) >= self.capacity:  # full: wait until half of it was taken, then refill in one go
                while len(self._items) > self.capacity // 2 and not self._closed:
                    if abort is not None and abort.is_set():
                        return 0
                    self._cond.wait(0.1)
            if self._closed:
                return 0
            self._items.append(frame)
        self._wake.set()
        return replaced

    def get(self) -> Frame | None:
        """The oldest frame, or ``None`` when none is waiting."""
        with self._cond:
            if not self._items:
                return None
            frame = self._items.popleft()
            if len(self._items) == self.capacity // 2:  # where a reader waiting for room goes on
                self._cond.notify_all()
            return frame

    def close(self) -> None:
        """No more frames will come; frames already waiting stay readable."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._wake.set()

    def discard(self) -> int:
        """Close and drop what is waiting; returns how many frames were dropped."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            self._closed = True
            self._cond.notify_all()
        self._wake.set()
        return n

    @property
    def ended(self) -> bool:
        with self._cond:
            return self._closed and not self._items


class FileReader:
    """Reads an opened file source into ``buffer``: every frame, blocking while the buffer is full.

    With ``realtime=True`` frames are paced to the file's fps (or ``pace_fps``), as a camera would deliver them
    (use a ``latest_only`` buffer then, to drop what inference cannot keep up with); ``start_delay`` (seconds)
    shifts the first frame, so several paced files are out of phase like independent cameras.
    """

    def __init__(
        self, name: str, source: FrameSource, buffer: FrameBuffer, meter: StreamMeter, *,
        limit: int | None = None, realtime: bool = False, pace_fps: float | None = None, start_delay: float = 0.0,
    ) -> None:
        self.name = name
        self.source = source
        self.buffer = buffer
        self.meter = meter
        self.limit = limit
        self.realtime = realtime or pace_fps is not None
        self.fps = pace_fps or source.fps
        self.start_delay = start_delay
        self.expected = source.frame_count  # what the container says it holds (None: unknown)
        self.frames_read = 0
        self.ended = False  # the source ran out (rather than the limit or stop() ending the reading)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ovq-read-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def shortfall(self, spec: SourceSpec) -> tuple[str, bool] | None:
        """After the file ran out: what it failed to deliver and whether that fails the run (no frame at all), or
        ``None``. A video that ended before the frame count its container states is named with both numbers."""
        if not self.ended:
            return None
        if self.frames_read == 0:
            return f"{spec.display}: no frame could be read (an empty or damaged file)", True
        if spec.kind == "video" and self.expected and self.frames_read < self.expected:
            return (f"{spec.display}: ended after {self.frames_read} of the {self.expected} frames its container "
                    "states (a cut or damaged file)"), False
        return None

    @staticmethod
    def delivery_error(readers: list[tuple[str, Any, SourceSpec]], strict: bool) -> SourceError | None:
        """What files delivered (:meth:`shortfall`), for ``(stream name, reader, spec)``: no frame at all is the
        run's error; fewer than the container states a warning, or with ``strict`` the run's error."""
        for name, reader, spec in readers:
            short = reader.shortfall(spec) if isinstance(reader, FileReader) else None
            if short is not None and (short[1] or strict):
                return SourceError(short[0] + ("" if short[1] else "; failing the run (strict)"))
            if short is not None:
                logger.warning("%s: %s", name, short[0])
        return None

    def release(self) -> None:
        """Close the source of a reader that was never started."""
        self._stop.set()
        self.source.close()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        period = 1.0 / self.fps if self.realtime and self.fps else 0.0
        next_time = time.monotonic() + (self.start_delay if period else 0.0)
        try:
            while not self._stop.is_set() and (self.limit is None or self.frames_read < self.limit):
                if period:
                    delay = next_time - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                    next_time = max(next_time + period, time.monotonic() - period)
                image = self.source.read()
                if image is None:
                    self.ended = True
                    break
                frame = Frame(self.frames_read, image, time.time(), time.monotonic())
                self.frames_read += 1
                replaced = self.buffer.put(frame, abort=self._stop)
                if replaced:
                    self.meter.dropped(replaced)
        except Exception as exc:  # noqa: BLE001 - a decoder crash ends this stream, not the process
            self.error = exc
            self.ended = True
            logger.error("%s: reading failed after %d frames: %s", self.name, self.frames_read, exc)
        finally:
            self.source.close()
            self.buffer.close()
            logger.debug("%s: end of file after %d frames", self.name, self.frames_read)


class LiveReader:
    """Keeps the newest frame of a live source in ``buffer``; reopens the source when it fails or stalls.

    ``opener`` returns an opened source or raises :class:`SourceError`. ``check_stall`` (called periodically
    by the pipeline) abandons a worker whose read is stuck and starts a new one; the stuck worker releases its
    source whenever its read returns.
    """

    def __init__(
        self, name: str, spec: SourceSpec, buffer: FrameBuffer, meter: StreamMeter, policy: ReconnectPolicy, *,
        opener: Callable[[], FrameSource] | None = None, first: FrameSource | None = None, decode: str = "auto",
    ) -> None:
        self.name = name
        self.spec = spec
        self.buffer = buffer
        self.meter = meter
        self.policy = policy
        self.opener = opener or (lambda: open_source(spec, timeout=policy.stall_timeout, decode=decode))
        self.fps: float | None = first.fps if first is not None else None
        # the video decoding of the current (or last) connection: "software", "vaapi", ...; None before one
        self.decoder: str | None = getattr(first, "decoder", None)
        self.frames_read = 0
        self._first = first
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._generation = 0
        self._connected_at: float | None = None  # monotonic time of the current connection, None when down
        self._last_frame = time.monotonic()
        self._down_since: float | None = None
        self._ever_connected = first is not None
        self.last_failure: str | None = None  # why the source last failed to open
        self._delay = policy.initial_delay
        self._failures = 0
        self._threads: list[threading.Thread] = []

    # -- control -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._spawn(wait_first=0.0)

    def stop(self) -> None:
        self._stop.set()

    def release(self) -> None:
        """Close the source opened at start-up of a reader that was never started."""
        self._stop.set()
        first, self._first = self._first, None
        if first is not None:
            first.close()

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in list(self._threads):
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    @property
    def connected(self) -> bool:
        return self._connected_at is not None

    @staticmethod
    def stopped_before_any_frame(readers: list[tuple[str, Any]]) -> SourceError | None:
        """For a run stopped (Ctrl-C, SIGTERM) with no frame from any of ``readers`` (``(stream name, reader)``) while
        a live source had never connected: the run's error, as a file that gives no frame is. Such a run exited 0
        with "0 frames ... DISCONNECTED", a success to a service supervisor; stopped early with sources that
        had connected, it is the user's stop, not a failure."""
        if any(reader.frames_read for _, reader in readers):
            return None
        never = [(name, reader) for name, reader in readers
                 if isinstance(reader, LiveReader) and not reader._ever_connected]
        if not never:
            return None
        said = "; ".join(f"{name}: {reader.last_failure or reader.spec.display + ': not connected yet'}"
                         for name, reader in never)
        return SourceError(f"the run was stopped before any source gave a frame; never connected: {said}")

    def check_stall(self, now: float | None = None) -> bool:
        """Abandon the worker if a connected source gave no frame for ``stall_timeout`` s; True if it did."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._stop.is_set() or self._connected_at is None:
                return False
            silent = now - self._last_frame
            if silent < self.policy.stall_timeout:
                return False
            self._generation += 1
            self._connected_at = None
            self._down_since = now - silent
        self.meter.disconnected()
        if not self.policy.retry:
            logger.error("%s: %s stalled (no frame for %.1f s); not retrying", self.name, self.spec.display, silent)
            self.buffer.close()
            return True
        logger.warning(
            "%s: %s stalled (no frame for %.1f s); reconnecting in %.1f s",
            self.name, self.spec.display, silent, self._delay,
        )
        self._spawn(wait_first=self._next_delay())
        return True

    # -- internals -----------------------------------------------------------------------------------------
    def _spawn(self, wait_first: float) -> None:
        with self._lock:
            generation = self._generation
        thread = threading.Thread(
            target=self._run, args=(generation, wait_first), name=f"ovq-live-{self.name}-{generation}", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _current(self, generation: int) -> bool:
        return generation == self._generation and not self._stop.is_set()

    def _next_delay(self) -> float:
        delay = self._delay
        self._delay = min(self._delay * 2.0, self.policy.max_delay)
        return delay

    def _run(self, generation: int, wait_first: float) -> None:
        try:
            self._loop(generation, wait_first)
        except Exception:  # never let a reader die silently: log and end the stream
            logger.exception("%s: reader failed", self.name)
            self.buffer.close()

    def _loop(self, generation: int, wait_first: float) -> None:
        if wait_first and self._stop.wait(wait_first):
            return
        while self._current(generation):
            source = self._first
            self._first = None
            if source is None:
                try:
                    source = self.opener()
                except SourceError as exc:
                    self.last_failure = str(exc)
                    if not self._current(generation):
                        return
                    if not self.policy.retry:
                        logger.error("%s: %s; not retrying", self.name, exc)
                        self.buffer.close()
                        return
                    delay = self._next_delay()
                    forever = "" if self._ever_connected or self._failures else (
                        f" (and on, with back-off up to {self.policy.max_delay:.0f} s, until it answers)"
                    )
                    self._failures += 1
                    logger.warning("%s: %s; retrying in %.1f s%s", self.name, exc, delay, forever)
                    if self._stop.wait(delay):
                        return
                    continue
            if not self._read_until_lost(generation, source):
                return
            if not self.policy.retry:
                self.buffer.close()
                return
            delay = self._next_delay()
            logger.warning("%s: reconnecting to %s in %.1f s", self.name, self.spec.display, delay)
            if self._stop.wait(delay):
                return

    def _read_until_lost(self, generation: int, source: FrameSource) -> bool:
        """Read frames until the source fails; False when this worker should exit (stopped or abandoned)."""
        try:
            now = time.monotonic()
            with self._lock:
                if not self._current(generation):
                    return False
                self._connected_at = now
                self._last_frame = now
                was_down = self._down_since
                self._down_since = None
            if source.fps:
                self.fps = source.fps
            self.decoder = getattr(source, "decoder", None)
            if self._ever_connected and was_down is not None:
                self.meter.reconnected()
                logger.warning("%s: reconnected to %s after %.1f s", self.name, self.spec.display, now - was_down)
            elif not self._ever_connected:
                self.meter.connected()
                logger.info("%s: opened %s (%s decoding)", self.name, self.spec.display, self.decoder or "image")
            self._ever_connected = True
            good = 0
            while True:
                image = source.read()
                read_done = time.monotonic()
                with self._lock:
                    if not self._current(generation):
                        return False  # stopped, or abandoned as stalled: a newer worker owns the stream
                    if image is None:
                        self._connected_at = None
                        self._down_since = time.monotonic()
                        break
                    self._last_frame = time.monotonic()
                frame = Frame(self.frames_read, image, time.time(), self._last_frame)
                self.frames_read += 1
                good += 1
                if good == 10:  # a connection that delivers frames resets the back-off
                    self._delay = self.policy.initial_delay
                replaced = self.buffer.put(frame)
                if replaced:
                    self.meter.dropped(replaced)
            self.meter.disconnected()
            silent = read_done - self._last_frame
            if silent >= 0.9 * self.policy.stall_timeout:
                why = f"stalled: no frame for {silent:.1f} s"
            else:
                why = "stream ended or failed"
            logger.warning("%s: lost %s after %d frames (%s)", self.name, self.spec.display, good, why)
            return True
        finally:
            source.close()


def open_first(spec: SourceSpec, policy: ReconnectPolicy, decode: str = "auto") -> FrameSource:
    """Open a live source once at start-up (for ``retry=False``); :class:`SourceError` when it fails."""
    try:
        return open_source(spec, timeout=policy.stall_timeout, decode=decode)
    except SourceError as exc:
        raise SourceError(f"{exc} (not retrying)") from None

