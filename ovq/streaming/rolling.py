"""Rolling outputs: a series of finished files named by their start time, the oldest deleted past ``keep``.

A service that runs for months must not keep one file open for the whole run: an MP4's index is written only
when the file is finished, so a kill (the watchdog, the OOM killer, a power cut) lost the whole video, and one
JSON Lines file grew until the disk was full. :class:`~ovq.streaming.videosink.VideoSink` (``segment``) and
:class:`~ovq.streaming.sinks.JsonlSink` (``rotate_seconds``, ``rotate_bytes``) write a series instead, as
DL Streamer's ``splitmuxsink`` and video recorders do. This module names and prunes the series and reads the
values a config gives (``10m``, ``100MB``).

The files of the series of ``out/cam.mp4`` are ``out/cam.<UTC start>.mp4``, the start being the timestamp of
the file's first frame (``cam.20261203T063000Z.mp4``): names sort by time, and ``cam.*.mp4`` globs the series.
A second file starting within the same second (a size limit reached quickly, a restart, the clock set back)
gets ``_1``, ``_2``... after the time (``cam.20261203T063000Z_1.mp4``), and never replaces a file. A segment in
progress is the hidden ``.cam.<UTC start>.partial.mp4``.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ovq.core.errors import ConfigError

logger = logging.getLogger(__name__)

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
MIN_SECONDS = 1.0  # names resolve seconds: a shorter period would only add _N suffixes
MIN_BYTES = 1000
_STAMP = r"(\d{8}T\d{6}Z)(?:_(\d+))?"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)", re.IGNORECASE)
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]?b)", re.IGNORECASE)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_BYTES = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3}
DURATION_HELP = "a duration (30s, 10m, 1h, or seconds)"
SIZE_HELP = "a size (500KB, 100MB, 1GB)"


def parse_duration(value: Any) -> float:
    """Seconds from ``30s``, ``10m``, ``1h``, ``1d`` or a plain number of seconds (at least :data:`MIN_SECONDS`);
    :class:`ConfigError` saying what was expected otherwise (the caller names the key or flag)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"expected {DURATION_HELP}, got {value!r}")
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise ConfigError(f"expected {DURATION_HELP}, got {value!r}")
        seconds = float(match.group(1)) * _SECONDS[match.group(2).lower()]
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds < MIN_SECONDS:
        raise ConfigError(f"expected at least {MIN_SECONDS:g} s (files are named to the second), got {value!r}")
    return seconds


def parse_rotate(value: Any) -> tuple[float | None, int | None]:
    """``(seconds, None)`` from a duration, ``(None, bytes)`` from a size (``KB``/``MB``/``GB``: powers of 1000)."""
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        try:
            return parse_duration(value), None
        except ConfigError:
            raise ConfigError(f"expected {DURATION_HELP} or {SIZE_HELP}, got {value!r}") from None
    size = round(float(match.group(1)) * _BYTES[match.group(2).lower()])
    if size < MIN_BYTES:
        raise ConfigError(f"expected at least {MIN_BYTES} bytes (1KB), got {value!r}")
    return None, size


def format_duration(seconds: float) -> str:
    """``600`` -> ``10m``: what :func:`parse_duration` reads back."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def format_size(size: int) -> str:
    """``100_000_000`` -> ``100MB``: what :func:`parse_rotate` reads back."""
    for unit, factor in (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def check_keep(keep: int | None, rolling: bool, where: Path, what: str) -> None:
    """:class:`ConfigError` for a ``keep`` that is not a positive integer, or given without rolling files."""
    if keep is None:
        return
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ConfigError(f"{where}: keep must be an integer >= 1, got {keep!r}")
    if not rolling:
        raise ConfigError(f"{where}: keep={keep} keeps the newest files of a series; give {what} too")


def period_over(elapsed: float, limit: float) -> bool:
    """Whether a file whose first frame came ``elapsed`` seconds before this frame is complete: ``limit`` has
    passed, or the clock was set back by more than ``limit``. A little back is not a new file: the streams of one
    JSON Lines file arrive a little out of order (a slower stream's frame, captured earlier, written later)."""
    return not -limit <= elapsed < limit


def stamp(timestamp: float) -> str:
    """The UTC time of ``timestamp`` as a file name holds it: ``20261203T063000Z``."""
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime(STAMP_FORMAT)


def segment_glob(path: Path) -> str | None:
    """``out/cam.*.mp4`` when ``path`` is a file of a series (a name with a start time), else ``None``."""
    match = re.fullmatch(rf"(.+)\.{_STAMP}(\.[^.]*)?", path.name)
    if match is None:
        return None
    return str(path.with_name(f"{match.group(1)}.*{match.group(4) or ''}"))


@dataclass(frozen=True)
class _Entry:
    key: tuple[str, int]  # (start time, _N): the order of the series
    path: Path
    partial: bool


class Series:
    """The files of the series of ``path`` (``out/cam.mp4``): ``out/cam.<UTC start>[_N].mp4``, and with
    ``partials``, segments in progress ``out/.cam.<UTC start>[_N].partial.mp4`` (a killed run leaves one)."""

    def __init__(self, path: Path, *, partials: bool = False) -> None:
        self.folder = path.parent
        self.stem, self.suffix = path.stem, path.suffix
        stem, suffix = re.escape(self.stem), re.escape(self.suffix)
        self._final = re.compile(rf"{stem}\.{_STAMP}{suffix}")
        self._partial = re.compile(rf"\.{stem}\.{_STAMP}\.partial{suffix}") if partials else None

    @property
    def glob(self) -> str:
        return str(self.folder / f"{self.stem}.*{self.suffix}")

    def new_name(self, timestamp: float) -> Path:
        """The name of a file starting at ``timestamp``, after every file of the series that starts in the same
        second (``_N`` one past theirs, never a name one had that ``keep`` deleted: the order is the series')."""
        when = stamp(timestamp)
        taken = [e.key[1] for e in self._entries() if e.key[0] == when]
        n = max(taken) + 1 if taken else 0
        while True:  # a name of another kind in the way (a folder, a symlink) is skipped, never replaced
            path = self.folder / f"{self.stem}.{when}{f'_{n}' if n else ''}{self.suffix}"
            if not os.path.lexists(path) and not os.path.lexists(self.partial_of(path)):
                return path
            n += 1

    def partial_of(self, path: Path) -> Path:
        """Where the segment that becomes ``path`` is written until it is finished."""
        return path.with_name(f".{path.stem}.partial{path.suffix}")

    def _entries(self) -> list[_Entry]:
        found: list[_Entry] = []
        if not self.folder.is_dir():
            return found
        with os.scandir(self.folder) as scan:
            for entry in scan:
                if not entry.is_file(follow_symlinks=False):
                    continue
                match, partial = self._final.fullmatch(entry.name), False
                if match is None and self._partial is not None:
                    match, partial = self._partial.fullmatch(entry.name), True
                if match is not None:
                    found.append(_Entry((match.group(1), int(match.group(2) or 0)), Path(entry.path), partial))
        return sorted(found, key=lambda e: e.key)

    def holds(self, path: str | Path) -> bool:
        """Whether ``path`` (through symlinks: the file :meth:`prune` would delete) is a file of the series."""
        real = Path(os.path.realpath(path))
        if real.parent != Path(os.path.realpath(self.folder)):
            return False
        return bool(self._final.fullmatch(real.name) or (self._partial and self._partial.fullmatch(real.name)))

    def finished(self) -> list[Path]:
        """The finished files of the series, oldest first."""
        return [e.path for e in self._entries() if not e.partial]

    def prune(self, keep: int, *, protect: Iterable[Path] = ()) -> list[Path]:
        """Delete all but the newest ``keep`` finished files, and segments in progress older than the oldest
        file kept (left by a run that was killed); returns what was deleted. Each deletion is logged; one that
        fails (permissions) is a warning. Only names of this series are touched, never ``protect``."""
        entries = self._entries()
        finished = [e for e in entries if not e.partial]
        if len(finished) <= keep:
            return []
        oldest_kept = finished[-keep].key
        protected = {Path(p) for p in protect}
        deleted = []
        for e in entries:
            if e.key >= oldest_kept or e.path in protected:
                continue
            try:
                e.path.unlink()
            except OSError as exc:
                logger.warning("%s: could not delete it (keeping the newest %d of %s): %s", e.path, keep, self.glob,
                               exc.strerror or exc)
                continue
            deleted.append(e.path)
            if e.partial:
                logger.info("%s: deleted: a segment a killed run left unfinished, older than the newest %d of %s",
                            e.path, keep, self.glob)
            else:
                logger.info("%s: deleted (keeping the newest %d of %s)", e.path, keep, self.glob)
        return deleted


def sync_file(path: Path) -> None:
    """Write ``path``'s data to the disk before it is renamed into place (a power cut keeps it whole)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a power cut after it keeps the new name); best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
