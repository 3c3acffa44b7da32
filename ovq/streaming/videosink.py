"""Annotated video files: :class:`VideoSink` (re-exported by :mod:`ovq.streaming.sinks`, with the other sinks).

Each video (H.264 MP4 or VP9 WebM a browser plays where the installed libraries allow: :mod:`ovq.streaming.video`)
is written to a hidden temporary file beside the target and renamed on :meth:`~VideoSink.close` once an MP4's
index is checked (:mod:`ovq.streaming.mp4`), so the target path only ever holds a finished, playable video.
OpenCV reports no write errors, so the sink watches the free space itself: when the disk is nearly full it
stops its files while they can still be finished (playable, kept under their temporary names, the targets
untouched) and fails the run.

With ``segment`` (seconds) each stream is a series of files instead (:mod:`ovq.streaming.rolling`): a segment
is finished, checked and renamed into place the same way once its frames span ``segment`` seconds, so a kill
loses only the segment in progress; ``keep`` deletes all but the newest segments. A segment replaces no file,
so one finished when the disk fills or the run fails goes into place too.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import queue
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2

from ovq.core.drawing import annotate
from ovq.core.errors import ConfigError, OutputError, OvqError, os_error_message
from ovq.core.fileio import check_output_file, free_bytes, is_stream, replaced_path, same_file, vanished
from ovq.streaming.mp4 import mp4_frame_count
from ovq.streaming.pipeline import FrameResult
from ovq.streaming.rolling import (
    MIN_SECONDS,
    Series,
    check_keep,
    format_duration,
    period_over,
    sync_dir,
    sync_file,
)
from ovq.streaming.video import VideoWriter, check_suffix, even_size, open_writer

logger = logging.getLogger(__name__)


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


def stream_path(path: Path, stream: str, several: bool) -> Path:
    """The file of ``stream`` (with ``segment``: the name its series is made from) of a sink writing ``path``:
    ``path`` itself, or with ``several`` streams ``path`` with the stream's name (``out.mp4`` -> ``out_s0.mp4``)."""
    return path.with_name(f"{path.stem}_{_safe_name(stream)}{path.suffix}") if several else path


def partial_path(path: Path) -> Path:
    """Where the video of ``path`` (a whole-run file, not a segment) is written until it is finished."""
    real = replaced_path(path)  # through a symlink: beside the file it points to
    return real.with_name(f".{real.stem}.partial{real.suffix}")


@dataclass
class _Writer:
    path: Path
    tmp: Path
    writer: VideoWriter
    size: tuple[int, int]  # (width, height)
    rate: RateMeter
    start: float = 0.0  # the first frame's timestamp: a segment's start
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

    ``segment`` (seconds, at least 1) cuts each stream's video into files of that length by the frames'
    timestamps (their capture time), each named by its first frame's UTC time: ``out.mp4`` ->
    ``out.20261203T063000Z.mp4`` (``out_s0.20261203T063000Z.mp4`` with several streams). Each is finished and
    renamed into place when the next begins, and listed in ``written`` then. ``keep`` deletes all but the newest
    ``keep`` segments of each stream's series after each one is finished (:meth:`~ovq.streaming.rolling.Series.prune`).

    Annotation and encoding run on a thread of the sink's own behind a queue of ``queue_size`` results, so the
    pipeline never waits on the encoder - nor on OpenCV's FFmpeg lock, which holds a new writer back while any
    other stream of the process is opening (an RTSP open can take seconds). When that queue is full,
    :meth:`write` waits (backpressure, no frame is lost). A write error (the disk filling up) is raised by the
    next :meth:`write` or by :meth:`close` as :class:`~ovq.core.errors.OutputError`.
    """

    def __init__(
        self, path: str | Path, *, labels: list[str] | None = None, fps: float | None = None, queue_size: int = 64,
        use_av: bool | None = None, segment: float | None = None, keep: int | None = None,
    ) -> None:
        self.path = Path(path)
        check_suffix(self.path)
        self.use_av = use_av
        if fps is not None and not (math.isfinite(fps) and fps > 0):  # NaN passes a plain "<= 0" check
            raise ConfigError(f"{self.path}: fps must be a finite number > 0, got {fps}")
        if segment is not None and (isinstance(segment, bool) or not isinstance(segment, (int, float))
                                    or not (math.isfinite(segment) and segment >= MIN_SECONDS)):
            raise ConfigError(f"{self.path}: segment must be a number of seconds >= {MIN_SECONDS:g}, got {segment!r}")
        check_keep(keep, segment is not None, self.path, "segment")
        self.segment = None if segment is None else float(segment)
        self.keep = keep
        check_output_file(self.path)  # opens nothing: a run that fails to start leaves the folder as it was
        if is_stream(self.path):
            raise ConfigError(f"{self.path}: a pipe or a device; a video file is written to a file (its index comes "
                              "last)")
        self.labels = labels
        self.fps = fps
        self._streams: list[str] | None = None
        self._writers: dict[str, _Writer] = {}
        self._bases: dict[str, Path] = {}  # stream -> its file (or its series' name), fixed at its first frame
        self._noted: set[str] = set()  # streams whose codec note was logged
        self._queue: queue.Queue[FrameResult | None] = queue.Queue(maxsize=max(1, queue_size))
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._reported = False  # whether _error reached the pipeline (raised by write() or close())
        self.written: dict[Path, str] = {}  # finished file -> "N frames": by close(), or as each segment finishes

    def start(self, streams: Sequence[str]) -> None:
        self._streams = list(streams)

    def path_for(self, stream: str) -> Path:
        """The stream's file (with ``segment``: the name its series is made from)."""
        if stream in self._bases:
            return self._bases[stream]
        several = self._streams is not None and len(self._streams) > 1
        return stream_path(self.path, stream, several or bool(self._bases))

    @staticmethod
    def endangers(path: str | Path, streams: Sequence[str], file: str | Path, *, segment: float | None = None,
                  keep: int | None = None) -> tuple[str, bool] | None:
        """Whether a sink writing ``path`` for ``streams`` would write over or delete the existing ``file`` by a name
        it derives from ``path`` (not ``path`` itself, which the caller compares): ``(which file of the sink it is,
        in words; whether ``keep`` would delete it)``, else None. A segment replaces no file, so only ``keep`` can
        reach one of its series."""
        several = len(streams) > 1
        for stream in streams:
            base = stream_path(Path(path), stream, several)
            if segment is not None:
                series = Series(base, partials=True)
                if keep is not None and series.holds(file):
                    return f"a file of its series {series.glob}", True
            elif several and same_file(base, file):
                return f"stream {stream}'s file of it", False
            elif same_file(partial_path(base), file):
                return f"where {base} is written until it is finished", False
        return None

    def write(self, result: FrameResult) -> None:
        if self._error is not None:
            self._reported = True
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
                w = self._writers.get(result.stream)
                gone = vanished(w.tmp) if w is not None and isinstance(exc, OSError) else None
                if gone:  # it said "left as it was" and the system's words about a folder nobody named
                    self._error = OutputError(f"{w.path}: {gone} during the run; this run's video went with it")
                else:
                    self._error = exc if isinstance(exc, OvqError) else OutputError(
                        f"{self.path_for(result.stream)}: video writing failed: {exc}; left as it was")
                logger.debug("%s: video writing failed: %s", result.stream, exc)

    def _encode(self, result: FrameResult) -> None:
        w = self._writers.get(result.stream)
        if w is not None and self.segment is not None and period_over(result.timestamp - w.start, self.segment):
            del self._writers[result.stream]
            error = self._place(result.stream, w)
            if error is not None:
                raise OutputError(error)
            w = self._open(result, w.rate)
        w = w or self._open(result)
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

    def _open(self, result: FrameResult, rate: RateMeter | None = None) -> _Writer:
        stream = result.stream
        first = stream not in self._bases
        base = self._bases.setdefault(stream, self.path_for(stream))
        h, w = result.frame.shape[:2]
        w, h = even_size(w, h)
        fps = self.fps or result.fps or 25.0
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{base}: {os_error_message(exc)}") from None
        if self.segment is None:
            path = base
            tmp = partial_path(path)
        else:
            series = Series(base, partials=True)
            path = series.new_name(result.timestamp)
            tmp = series.partial_of(path)
        writer = open_writer(tmp, path.suffix, (w, h), fps, use_av=self.use_av)
        every = f"; a new file every {format_duration(self.segment)}" if self.segment is not None else ""
        logger.log(logging.INFO if first else logging.DEBUG, "%s: writing %s (%dx%d, %.1f fps, %s)%s",
                   stream, path, w, h, fps, writer.codec, every)
        if writer.note and stream not in self._noted:
            self._noted.add(stream)
            logger.warning("%s: %s", path, writer.note)
        state = _Writer(path=path, tmp=tmp, writer=writer, size=(w, h), rate=rate or RateMeter(),
                        start=result.timestamp)
        self._writers[stream] = state
        return state

    def _place(self, stream: str, w: _Writer) -> str | None:
        """Finish ``w``'s file, check its index and rename it into place (then prune the series, with ``keep``);
        the error, or None. A file that cannot be finished is removed, and what it would have replaced is left."""
        listed = _finish(w)
        if not w.frames or listed != w.frames:
            remove_quietly(w.tmp)
            if not w.frames:
                return None
            return (f"{w.path}: the encoder could not finish the file ({listed or 0} of {w.frames} frames in its "
                    "index: a full disk?); " + ("left as it was" if self.segment is None else "not kept"))
        target = replaced_path(w.path)
        try:
            sync_file(w.tmp)  # the frames on the disk before the name: a power cut leaves no empty segment
            os.replace(w.tmp, target)
        except OSError as exc:
            remove_quietly(w.tmp)
            return f"{w.path}: {os_error_message(exc)}"
        sync_dir(target.parent)
        self.written[w.path] = f"{w.frames} frames"
        logger.info("%s: wrote %s (%d frames)", stream, w.path, w.frames)
        if self.keep is not None:
            for gone in Series(self.path_for(stream), partials=True).prune(self.keep, protect=[w.path]):
                self.written.pop(gone, None)
        return None

    def _stop_all(self, why: str) -> None:
        """Finish every file now, while there is room for its index, keep each under its temporary name (the
        target stays as it was; a segment, which replaces nothing, goes into place), and raise the error that
        fails the run."""
        kept = []
        for stream, w in self._writers.items():
            if self.segment is not None:
                error = self._place(stream, w)
                kept.append(error or f"the segment in progress was finished as {w.path} ({w.frames} frames)")
            elif _finish(w) == w.frames:
                kept.append(f"the {w.frames} frames of {w.path.name} so far are in {w.tmp}")
            else:
                remove_quietly(w.tmp)
        self._writers.clear()
        if self.segment is not None:
            raise OutputError(f"{self.path}: stopped: {why}" + "".join(f"; {k}" for k in kept))
        raise OutputError(f"{self.path}: stopped: {why}; the video file(s) were not replaced"
                          + (f"; {'; '.join(kept)}" if kept else ""))

    def close(self) -> None:
        """Finish every file (encode what is queued, write the MP4 index), check it, and move it into place
        (the data synced to the disk first).

        A file whose index is missing or short (the disk filled up) is removed, the target left as it was, and
        :class:`~ovq.core.errors.OutputError` raised. An encoder error that :meth:`write` has not raised yet (it
        came after the last frame was queued: a disk that filled on a 2-frame run) is raised here, the other
        files kept as :meth:`abort` keeps them; one :meth:`write` raised already is not raised again.
        """
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None and not self._reported:
            self.abort()
            self._reported = True
            raise self._error
        failed = self._error is not None
        errors = [e for e in (self._place(stream, w) for stream, w in self._writers.items()) if e is not None]
        self._writers.clear()
        if errors and not failed:
            self._error = OutputError("; ".join(errors))
            self._reported = True
            raise self._error

    def abort(self) -> None:
        """The run failed: finish what can be finished, keep it under its temporary name, replace nothing (a
        finished segment replaces nothing: it goes into place)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        for stream, w in self._writers.items():
            if self.segment is not None:
                error = self._place(stream, w)
                if error is not None:
                    logger.warning("%s", error)
            elif _finish(w) == w.frames and w.frames:
                logger.warning("%s: the run failed: left as it was; this run's %d frames are in %s",
                               w.path, w.frames, w.tmp)
            else:
                remove_quietly(w.tmp)
        self._writers.clear()


def remove_quietly(path: Path) -> None:
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
    except (OvqError, OSError) as exc:
        gone = vanished(w.tmp)
        if gone is not None:  # removed during the run (rm -rf out): the run's error says so, once
            logger.debug("%s: cannot finish the file: %s", w.path, gone)
        else:
            logger.warning("%s: %s", w.path, os_error_message(exc) if isinstance(exc, OSError) else exc)
        return None
    return _frames_listed(w)
