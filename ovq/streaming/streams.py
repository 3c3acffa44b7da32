"""A pipeline's streams: what it keeps per source, and opening them all before anything runs.

:func:`open_streams` opens files (and live sources when not retrying) at once, so bad input fails before the model
runs, and gives each stream its frame buffer and reader thread (not started): a file's reader is lossless, a live
source's keeps the newest frame and reconnects (:mod:`~ovq.streaming.readers`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from ovq.streaming.readers import FileReader, FrameBuffer, LiveReader, ReconnectPolicy, open_first
from ovq.streaming.sources import SourceSpec, decode_threads, open_source
from ovq.streaming.stats import StreamMeter

logger = logging.getLogger(__name__)

FILE_BUFFER = 8  # decoded frames a file reader may run ahead


@dataclass
class Stream:
    """One source of a pipeline: its reader, buffer, meter, tracker, and the frames in flight or waiting."""

    index: int
    name: str
    spec: SourceSpec
    meter: StreamMeter
    buffer: FrameBuffer | None = None
    size: tuple[int, int] | None = None  # (height, width) the source said it sends
    decoder: str | None = None  # video decoding in use ("software", "vaapi", ...), None when not a video
    reader: FileReader | LiveReader | None = None
    tracker: Any = None
    fps: float | None = None
    submitted: int = 0
    next_seq: int = 0
    pending: dict[int, Any] = field(default_factory=dict)  # frame results waiting to be delivered in order
    done: bool = False


@dataclass(frozen=True)
class Opening:
    """How :func:`open_streams` opens them: the pipeline's settings that concern sources."""

    reconnect: ReconnectPolicy
    decode: str
    wake: threading.Event  # set when a frame arrives or a source ends
    realtime_files: bool = False
    pace_fps: float | None = None
    max_frames: int | None = None
    track: bool = False


def open_streams(streams: list[Stream], how: Opening) -> None:
    """Give every stream its buffer and reader, opening files (and live sources not retried) now; on failure
    close what was opened and raise (a :class:`~ovq.core.errors.SourceError` naming the source)."""
    opened = []
    try:
        threads = decode_threads(len(streams))
        for st in streams:
            live = st.spec.live or how.realtime_files
            st.buffer = FrameBuffer(FILE_BUFFER, latest_only=live, wake=how.wake)
            if st.spec.live:
                first = open_first(st.spec, how.reconnect, how.decode) if not how.reconnect.retry else None
                if first is not None:
                    opened.append(first)
                    st.meter.connected()
                    logger.info("%s: opened %s (%s decoding)", st.name, st.spec.display,
                                getattr(first, "decoder", None) or "image")
                st.reader = LiveReader(st.name, st.spec, st.buffer, st.meter, how.reconnect, first=first,
                                       decode=how.decode)
                st.fps = first.fps if first is not None else st.spec.params.get("fps")
                st.size = getattr(first, "size", None)
            else:
                source = open_source(st.spec, decode_threads=threads, decode=how.decode)
                opened.append(source)
                st.fps = how.pace_fps or source.fps
                st.size = getattr(source, "size", None)
                phase = st.index / len(streams) / st.fps if how.realtime_files and st.fps else 0.0
                st.reader = FileReader(
                    st.name, source, st.buffer, st.meter, limit=how.max_frames, realtime=how.realtime_files,
                    pace_fps=how.pace_fps, start_delay=phase,
                )
                count = source.frame_count
                if how.max_frames is not None:
                    count = min(count or how.max_frames, how.max_frames)
                st.decoder = getattr(source, "decoder", None)
                logger.info(
                    "%s: opened %s (%s frames, %s decoding%s)", st.name, st.spec.display, count or "?",
                    st.decoder or "image", f", {threads} thread(s)" if st.decoder == "software" else "",
                )
            if how.track:
                from ovq.streaming.tracking import ByteTracker

                st.tracker = ByteTracker(frame_rate=st.fps or 30.0)
    except BaseException:
        for source in opened:
            source.close()
        raise
