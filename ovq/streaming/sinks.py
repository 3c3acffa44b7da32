"""Where pipeline results go: annotated MP4, a window, JSON Lines (MQTT: :mod:`ovq.streaming.mqtt`).

Every sink has ``write(result)`` and ``close()`` (see :class:`ovq.streaming.pipeline.Sink`); the pipeline calls them
from one thread, in frame order per stream. An optional ``start(stream_names)`` is called once the run has
opened its model, device and sources - the file sinks open nothing before it, so a run that fails to start
leaves earlier results as they were. A sink that writes files lists what it finished in ``written``
(path -> what it holds), filled by a successful ``close()`` only: nothing broken is ever announced. When the run
fails, the pipeline calls ``abort()`` instead of ``close()`` where a sink has it: the file sinks then replace
nothing and keep what the run wrote under its temporary name, named in a warning.

Output files:

- :class:`VideoSink` (:mod:`ovq.streaming.videosink`): one annotated video per stream, renamed into place
  only once finished and checked.
- :class:`JsonlSink` writes one complete line per frame, each written through at once (``tail -f`` follows
  it), to a temporary file that replaces the target at close when the run wrote records; or appends to the
  target (``append=True``, for a service whose restarts must not replace the results so far). A failed write
  cuts the file back to its last complete record and fails the run. With ``rotate_seconds`` or ``rotate_bytes``
  it writes a series of files instead (:mod:`ovq.streaming.rolling`), ``keep`` deleting all but the newest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2

from ovq.core.drawing import annotate
from ovq.core.errors import ConfigError, OutputError, OvqError, os_error_message
from ovq.core.fileio import check_output_file, create_temp_file, is_stream, open_stream, replaced_path, vanished
from ovq.streaming.pipeline import FrameResult
from ovq.streaming.rolling import MIN_BYTES, Series, check_keep, parse_duration, period_over, sync_dir
from ovq.streaming.videosink import RateMeter, VideoSink, remove_quietly

__all__ = ["JsonlSink", "RateMeter", "VideoSink", "WindowSink", "frame_record"]

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


class JsonlSink:
    """JSON Lines: one record per frame (see :func:`frame_record`), each line written through as it comes.

    The file opens at :meth:`start` (or the first :meth:`write`): a temporary file beside ``path`` that replaces
    it at :meth:`close` when at least one record was written (a run that wrote nothing leaves ``path`` as it
    was), or, with ``append=True``, ``path`` itself, appended to. A write that fails (a full disk) cuts the file
    back to its last complete record and raises :class:`~ovq.core.errors.OutputError`; the temporary file then
    keeps the records written so far and the message names it. A pipe or a character device (``/dev/stdout``, a
    FIFO another program reads) gets each record as it comes, and is never replaced; through a symlink, the file
    it points to is replaced.

    With ``rotate_seconds`` (by the records' timestamps, at least 1) and/or ``rotate_bytes`` (at least 1000),
    ``path`` is the file in progress, written through as above (``tail -F path`` follows it across rotations),
    and each time the limit is reached it is renamed, complete, to ``path``'s name with its first record's UTC
    time (``det.jsonl`` -> ``det.20261203T063000Z.jsonl``, listed in ``written``) and a new one begun; so is the
    last one at :meth:`close` and :meth:`abort`. A file in progress that a killed run left at ``path`` is named
    the same way at :meth:`start` (cut back to its last complete line). ``keep`` then deletes all but the newest
    ``keep`` files of the series. ``append`` is refused with rotation: nothing is ever replaced then.
    """

    def __init__(
        self, path: str | Path, *, labels: list[str] | None = None, append: bool = False,
        rotate_seconds: float | None = None, rotate_bytes: int | None = None, keep: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.labels = labels
        self.append = append
        check_output_file(self.path)  # opens nothing: a run that fails to start leaves the file as it was
        self._stream = is_stream(self.path)
        self.rotate_seconds, self.rotate_bytes = _check_rotation(self.path, rotate_seconds, rotate_bytes)
        rolling = self.rotate_seconds is not None or self.rotate_bytes is not None
        check_keep(keep, rolling, self.path, "rotate_seconds or rotate_bytes")
        if rolling and (append or self._stream or self.path.is_symlink()):
            why = ("append: a rotating file adds to its series, replacing nothing" if append
                   else "a pipe or a device" if self._stream else "a symlink (the file in progress is renamed)")
            raise ConfigError(f"{self.path}: not rotated: {why}")
        self.keep = keep
        self._series = Series(self.path) if rolling else None
        self._current = False  # rotating: whether this sink's file in progress is at path
        self._file_start = 0.0  # rotating: the timestamp of its first record
        self._file_records = 0
        self._target = replaced_path(self.path)  # what close() replaces
        self.records = 0
        self.written: dict[Path, str] = {}  # path -> "N records": by close(), rotating as each file is complete
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
            if self._series is not None:
                self._name_leftover()
                self._open_current()
            elif self.append:
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
        if self._file_records and self._due(result.timestamp, len(line)):
            self._rotate()
        try:
            self._write_all(line)
        except OSError as exc:
            self._fail(exc)
        if not self._file_records:
            self._file_start = result.timestamp
        self._file_records += 1
        self.records += 1

    # -- rotation ------------------------------------------------------------------------------------------------
    def _due(self, timestamp: float, size: int) -> bool:
        """Whether the file in progress is complete before a record of ``size`` bytes at ``timestamp``."""
        if self.rotate_seconds is not None and period_over(timestamp - self._file_start, self.rotate_seconds):
            return True
        return self.rotate_bytes is not None and self._good + size > self.rotate_bytes

    def _open_current(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        self._current, self._good, self._file_records = True, os.lseek(self._fd, 0, os.SEEK_END), 0

    def _rotate(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._fail(exc)
        self._close_fd()
        self._place_current()
        try:
            self._open_current()
        except OSError as exc:
            self._error = OutputError(f"{self.path}: {os_error_message(exc)}")
            raise self._error from None

    def _place_current(self, *, leftover: bool = False) -> None:
        """Rename the complete file in progress to its name in the series (listed in ``written`` unless it is a
        ``leftover`` of an earlier run), then prune the series."""
        assert self._series is not None
        name = self._series.new_name(self._file_start)
        try:
            os.replace(self.path, name)
        except OSError as exc:
            self._error = OutputError(f"{self.path}: {os_error_message(exc)}; its {self._file_records} records "
                                      "stay in it (the next run names it)")
            raise self._error from None
        sync_dir(name.parent)
        self._current = False
        if leftover:
            logger.info("%s: the %d records a run left there (killed?) are now %s", self.path, self._file_records, name)
        else:
            self.written[name] = f"{self._file_records} records"
            logger.info("%s: wrote %s (%d records)", self.path, name, self._file_records)
        if self.keep is not None:
            for gone in self._series.prune(self.keep, protect=[name]):
                self.written.pop(gone, None)

    def _name_leftover(self) -> None:
        """Name the file in progress that a killed run left at ``path`` (cut back to its last complete line) as
        one of the series, by its first record's timestamp (its modification time when that does not read)."""
        assert self._series is not None
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            end, first, records = _whole_lines(fd)
            if end < os.fstat(fd).st_size:
                logger.warning("%s: the last line is incomplete (a run that was killed or ran out of space); "
                               "cut back to the last complete record", self.path)
                os.ftruncate(fd, end)
            os.fsync(fd)
            start = os.fstat(fd).st_mtime
            with contextlib.suppress(ValueError, TypeError, KeyError):
                start = float(json.loads(first)["timestamp"])
        finally:
            os.close(fd)
        if not records:
            self.path.unlink()
            return
        self._file_start, self._file_records, self._current = start, records, True
        self._place_current(leftover=True)

    def _fail(self, exc: OSError) -> None:
        """Cut the file back to its last complete record, close it, and raise (now and on every later call)."""
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._good)
        self._close_fd()
        where = f"{self.path}: {exc.strerror or exc} after {self.records} records"
        if self._stream:
            message = where
        elif self.append or self._series is not None:
            message = f"{where}; the file ends with the last complete record"
        elif self.records:
            message = f"{where}; {self.path} was left as it was; the records so far are in {self._tmp}"
        else:
            remove_quietly(self._tmp)
            message = f"{where}; {self.path} was left as it was"
        self._error = OutputError(message)
        raise self._error

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def abort(self) -> None:
        """The run failed: keep this run's records under the temporary name (named in a warning), replace nothing.
        Rotating, the file in progress (complete lines) is named as one of the series, which replaces nothing."""
        if self._series is not None:
            self._close_fd()
            self._end_current(warn=True)
            return
        if self._fd is None:
            return
        self._close_fd()
        if self._stream:
            return
        if self.append:
            logger.warning("%s: the run failed after appending %d records", self.path, self.records)
        elif self.records and (gone := vanished(self._tmp)):  # it named the temporary file, gone with its folder
            logger.warning("%s: the run failed; %s during the run, and this run's %d records went with it",
                           self.path, gone, self.records)
        elif self.records:
            logger.warning("%s: the run failed: left as it was; this run's %d records are in %s",
                           self.path, self.records, self._tmp)
        else:
            remove_quietly(self._tmp)

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
        if self._series is not None:
            self._end_current(warn=False)
            return
        if self.append:
            self.written[self.path] = f"{self.records} records appended"
            return
        if not self.records:
            remove_quietly(self._tmp)
            logger.info("%s: no records; left as it was", self.path)
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(self._tmp, stat.S_IMODE(os.stat(self._target).st_mode))  # keep the mode of the file replaced
            os.replace(self._tmp, self._target)
        except OSError as exc:
            gone = vanished(self._tmp)  # then its records are not "in" the temporary file it would name
            if gone:
                self._error = OutputError(f"{self.path}: {gone} during the run; this run's {self.records} records "
                                          "went with it")
            else:
                self._error = OutputError(f"{self.path}: {os_error_message(exc)}; the {self.records} records are in "
                                          f"{self._tmp}")
            raise self._error from None
        self.written[self.path] = f"{self.records} records"

    def _end_current(self, *, warn: bool) -> None:
        """Rotating, at the end of a run: name the file in progress, or remove it when it holds no record."""
        if not self._current:
            return
        if not self._file_records:
            remove_quietly(self.path)
            self._current = False
            return
        try:
            self._place_current()
        except OutputError as exc:
            if not warn:
                raise
            logger.warning("%s", exc)


def _check_rotation(path: Path, seconds: float | None, size: int | None) -> tuple[float | None, int | None]:
    if seconds is not None:
        try:
            seconds = parse_duration(seconds)
        except ConfigError as exc:
            raise ConfigError(f"{path}: rotate_seconds: {exc}") from None
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < MIN_BYTES):
        raise ConfigError(f"{path}: rotate_bytes: expected an integer >= {MIN_BYTES}, got {size!r}")
    return seconds, size


def _whole_lines(fd: int) -> tuple[int, bytes, int]:
    """For a file of lines: the offset after its last newline, its first line and how many complete lines."""
    end, chunk = 0, 1 << 20
    first, records, offset = b"", 0, 0
    while data := os.pread(fd, chunk, offset):
        if not first:
            first = data.split(b"\n", 1)[0]
        records += data.count(b"\n")
        last = data.rfind(b"\n")
        if last >= 0:
            end = offset + last + 1
        offset += len(data)
    return end, first, records


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
