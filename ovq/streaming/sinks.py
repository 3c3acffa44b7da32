"""Where pipeline results go: annotated MP4, a window, JSON Lines (MQTT: :mod:`ovq.streaming.mqtt`).

Every sink has ``write(result)`` and ``close()`` (see :class:`ovq.streaming.pipeline.Sink`); the pipeline calls them
from one thread, in frame order per stream. An optional ``start(stream_names)`` is called once the run has
opened its model, device and sources - the file sinks open nothing before it, so a run that fails to start
leaves earlier results as they were. A sink that writes files lists what it finished in ``written``
(path -> what it holds), filled by a successful ``close()`` only: nothing broken is ever announced. When the run
fails, the pipeline calls ``abort()`` instead of ``close()`` where a sink has it: the file sinks then replace
nothing and keep what the run wrote under its temporary name, named in a warning.

Output files:

- :class:`VideoSink` writes each video (H.264 MP4 or VP9 WebM a browser plays where the installed libraries
  allow: :mod:`ovq.streaming.video`) to a hidden temporary file beside the target and renames it on
  :meth:`~VideoSink.close` once an MP4's index is checked (:mod:`ovq.streaming.mp4`), so the target path only
  ever holds a finished, playable video. OpenCV reports no write errors, so the sink watches the free space
  itself: when the disk is nearly full it stops its files while they can still be finished (playable, kept
  under their temporary names, the targets untouched) and fails the run.
- :class:`JsonlSink` writes one complete line per frame, each written through at once (``tail -f`` follows
  it), to a temporary file that replaces the target at close when the run wrote records; or appends to the
  target (``append=True``, for a service whose restarts must not replace the results so far). A failed write
  cuts the file back to its last complete record and fails the run.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import queue
import re
import stat
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from ovq.core.drawing import annotate
from ovq.core.errors import ConfigError, OutputError, OvqError, os_error_message
from ovq.core.fileio import check_output_file, create_temp_file, free_bytes, is_stream, open_stream, replaced_path
from ovq.streaming.mp4 import mp4_frame_count
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


# Free space a video file must leave on its disk: OpenCV reports no write error, so the sink stops its files
# while they can still be finished - the index (~20 bytes a frame, written at close) and FFmpeg's buffers fit
# in what is left. 1 MB plus 32 bytes a frame: a 2 MB tmpfs ended in a playable file of the frames so far.
VIDEO_RESERVE_BYTES = 1_000_000
VIDEO_RESERVE_PER_FRAME = 32


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
    :meth:`write` waits (backpressure, no frame is lost). A write error (the disk filling up) is raised by the
    next :meth:`write` or by :meth:`close` as :class:`~ovq.core.errors.OutputError`.
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
        check_output_file(self.path)  # opens nothing: a run that fails to start leaves the folder as it was
        if is_stream(self.path):
            raise ConfigError(f"{self.path}: a pipe or a device; a video file is written to a file (its index comes "
                              "last)")
        self.labels = labels
        self.fps = fps
        self._streams: list[str] | None = None
        self._writers: dict[str, _Writer] = {}
        self._queue: queue.Queue[FrameResult | None] = queue.Queue(maxsize=max(1, queue_size))
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.written: dict[Path, str] = {}  # finished file -> "N frames", filled by close()

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
                logger.debug("%s: video writing failed: %s", result.stream, exc)

    def _encode(self, result: FrameResult) -> None:
        w = self._writers.get(result.stream) or self._open(result)
        free = free_bytes(w.tmp.parent)
        if free < VIDEO_RESERVE_BYTES + VIDEO_RESERVE_PER_FRAME * sum(x.frames for x in self._writers.values()):
            self._stop_all(f"only {free / 1e6:.1f} MB left on the device")
        rate = w.rate.tick()
        overlay = f"{result.stream}  {rate:.1f} FPS"
        image = annotate(result.frame, result.detections, self.labels or result.labels, overlay=overlay)
        if (image.shape[1], image.shape[0]) != w.size:
            image = cv2.resize(image, w.size, interpolation=cv2.INTER_AREA)
        w.writer.write(image)
        w.frames += 1

    def _open(self, result: FrameResult) -> _Writer:
        path = self.path_for(result.stream)
        real = replaced_path(path)  # through a symlink: the file it points to
        tmp = real.with_name(f".{real.stem}.partial{real.suffix}")
        h, w = result.frame.shape[:2]
        w, h = even_size(w, h)
        fps = self.fps or result.fps or 25.0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{path}: {os_error_message(exc)}") from None
        writer = open_writer(tmp, path.suffix, (w, h), fps, use_av=self.use_av)
        logger.info("%s: writing %s (%dx%d, %.1f fps, %s)", result.stream, path, w, h, fps, writer.codec)
        if writer.note:
            logger.warning("%s: %s", path, writer.note)
        state = _Writer(path=path, tmp=tmp, writer=writer, size=(w, h), rate=RateMeter())
        self._writers[result.stream] = state
        return state

    def _stop_all(self, why: str) -> None:
        """Finish every file now, while there is room for its index, keep each under its temporary name (the
        target stays as it was), and raise the error that fails the run."""
        kept = []
        for w in self._writers.values():
            if _finish(w) == w.frames:
                kept.append(f"the {w.frames} frames of {w.path.name} so far are in {w.tmp}")
            else:
                _remove(w.tmp)
        self._writers.clear()
        raise OutputError(f"{self.path}: stopped: {why}; the video file(s) were not replaced"
                          + (f"; {'; '.join(kept)}" if kept else ""))

    def close(self) -> None:
        """Finish every file (encode what is queued, write the MP4 index), check it, and move it into place.

        A file whose index is missing or short (the disk filled up) is removed, the target left as it was, and
        :class:`~ovq.core.errors.OutputError` raised. After an error in :meth:`write`, closing raises nothing new.
        """
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        failed = self._error is not None
        errors = []
        for stream, w in self._writers.items():
            listed = _finish(w)
            if listed != w.frames:
                _remove(w.tmp)
                errors.append(f"{w.path}: the encoder could not finish the file ({listed or 0} of {w.frames} frames "
                              "in its index: a full disk?); left as it was")
                continue
            try:
                os.replace(w.tmp, replaced_path(w.path))
            except OSError as exc:
                _remove(w.tmp)
                errors.append(f"{w.path}: {os_error_message(exc)}")
                continue
            self.written[w.path] = f"{w.frames} frames"
            logger.info("%s: wrote %s (%d frames)", stream, w.path, w.frames)
        self._writers.clear()
        if errors and not failed:
            self._error = OutputError("; ".join(errors))
            raise self._error

    def abort(self) -> None:
        """The run failed: finish what can be finished, keep it under its temporary name, replace nothing."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        for w in self._writers.values():
            if _finish(w) == w.frames and w.frames:
                logger.warning("%s: the run failed: left as it was; this run's %d frames are in %s",
                               w.path, w.frames, w.tmp)
            else:
                _remove(w.tmp)
        self._writers.clear()


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _frames_listed(w: _Writer) -> int | None:
    """Frames the finished file holds by its index: an MP4's is read (:mod:`ovq.streaming.mp4`); a WebM has no
    index to check (its writer, PyAV or OpenCV, reports errors itself), so it is taken as written when not empty."""
    if w.path.suffix.lower() == ".webm":
        try:
            return w.frames if w.tmp.stat().st_size > 0 else None
        except OSError:
            return None
    return mp4_frame_count(w.tmp)


def _finish(w: _Writer) -> int | None:
    """Finish ``w``'s file; the frames it holds, or None when it could not be finished."""
    try:
        w.writer.release()
    except OvqError as exc:
        logger.warning("%s: %s", w.path, exc)
        return None
    return _frames_listed(w)


class JsonlSink:
    """JSON Lines: one record per frame (see :func:`frame_record`), each line written through as it comes.

    The file opens at :meth:`start` (or the first :meth:`write`): a temporary file beside ``path`` that replaces
    it at :meth:`close` when at least one record was written (a run that wrote nothing leaves ``path`` as it
    was), or, with ``append=True``, ``path`` itself, appended to. A write that fails (a full disk) cuts the file
    back to its last complete record and raises :class:`~ovq.core.errors.OutputError`; the temporary file then
    keeps the records written so far and the message names it. A pipe or a character device (``/dev/stdout``, a
    FIFO another program reads) gets each record as it comes, and is never replaced; through a symlink, the file
    it points to is replaced.
    """

    def __init__(self, path: str | Path, *, labels: list[str] | None = None, append: bool = False) -> None:
        self.path = Path(path)
        self.labels = labels
        self.append = append
        check_output_file(self.path)  # opens nothing: a run that fails to start leaves the file as it was
        self._stream = is_stream(self.path)
        self._target = replaced_path(self.path)  # what close() replaces
        self.records = 0
        self.written: dict[Path, str] = {}  # filled by close(): path -> "N records"
        self._fd: int | None = None
        self._tmp: Path | None = None  # the temporary file (not in append mode)
        self._good = 0  # file offset after the last complete record
        self._error: OutputError | None = None

    def start(self, streams: Sequence[str] = ()) -> None:
        if self._fd is not None or self._error is not None:
            return
        try:
            if self._stream:  # records go through as they come; a FIFO needs its reader already there
                self._fd = open_stream(self.path, append=self.append)
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.append:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)  # read: its last byte
                self._good = os.lseek(self._fd, 0, os.SEEK_END)
                if self._good and os.pread(self._fd, 1, self._good - 1) != b"\n":
                    logger.warning("%s: the last line is incomplete (a run that was killed or ran out of space); "
                                   "new records start on the next line", self.path)
                    self._write_all(b"\n")
            else:
                self._fd, self._tmp = create_temp_file(self._target.parent, f".{self._target.name}.partial-")
        except OSError as exc:
            self._close_fd()
            raise OutputError(f"{self.path}: {os_error_message(exc)}") from None

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._good += len(data)

    def write(self, result: FrameResult) -> None:
        if self._error is not None:
            raise self._error
        if self._fd is None:
            self.start()
        line = (json.dumps(frame_record(result, self.labels), separators=(",", ":")) + "\n").encode()
        try:
            self._write_all(line)
        except OSError as exc:
            self._fail(exc)
        self.records += 1

    def _fail(self, exc: OSError) -> None:
        """Cut the file back to its last complete record, close it, and raise (now and on every later call)."""
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._good)
        self._close_fd()
        where = f"{self.path}: {exc.strerror or exc} after {self.records} records"
        if self._stream:
            message = where
        elif self.append:
            message = f"{where}; the file ends with the last complete record"
        elif self.records:
            message = f"{where}; {self.path} was left as it was; the records so far are in {self._tmp}"
        else:
            _remove(self._tmp)
            message = f"{where}; {self.path} was left as it was"
        self._error = OutputError(message)
        raise self._error

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def abort(self) -> None:
        """The run failed: keep this run's records under the temporary name (named in a warning), replace nothing."""
        if self._fd is None:
            return
        self._close_fd()
        if self._stream:
            return
        if self.append:
            logger.warning("%s: the run failed after appending %d records", self.path, self.records)
        elif self.records:
            logger.warning("%s: the run failed: left as it was; this run's %d records are in %s",
                           self.path, self.records, self._tmp)
        else:
            _remove(self._tmp)

    def close(self) -> None:
        """Replace ``path`` with this run's records (when there are any); after a failure, nothing more."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if self._stream:  # nothing to sync or replace (fsync fails on a pipe or a terminal)
            os.close(fd)
            self.written[self.path] = f"{self.records} records"
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            self._fd = fd
            self._fail(exc)
        os.close(fd)
        if self.append:
            self.written[self.path] = f"{self.records} records appended"
            return
        if not self.records:
            _remove(self._tmp)
            logger.info("%s: no records; left as it was", self.path)
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(self._tmp, stat.S_IMODE(os.stat(self._target).st_mode))  # keep the mode of the file replaced
            os.replace(self._tmp, self._target)
        except OSError as exc:
            self._error = OutputError(f"{self.path}: {os_error_message(exc)}; the {self.records} records are in "
                                      f"{self._tmp}")
            raise self._error from None
        self.written[self.path] = f"{self.records} records"


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
