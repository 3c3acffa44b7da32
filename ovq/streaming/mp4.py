"""Is an MP4 file finished? Its index (the ``moov`` box) is there and lists the frames that were written.

OpenCV's ``VideoWriter`` reports no write error: on a full disk it goes on "writing" and leaves a file cut short
with no index, which no player opens. So :class:`~ovq.streaming.sinks.VideoSink` checks each file it finished by
reading its box structure here - a few reads of box headers, without opening the video through OpenCV (whose
FFmpeg lock a camera being opened elsewhere in the process can hold for seconds).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl")  # the path from the top level down to 'stsz'


def _boxes(fh: BinaryIO, start: int, end: int):
    """(type, payload start, box end) of each box in [start, end); stops at a box that does not fit."""
    pos = start
    while pos + 8 <= end:
        fh.seek(pos)
        size, kind = struct.unpack(">I4s", fh.read(8))
        header = 8
        if size == 1:  # 64-bit size follows
            size = struct.unpack(">Q", fh.read(8))[0]
            header = 16
        elif size == 0:  # to the end of the file
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"box '{kind.decode('latin-1')}' at {pos} runs past the end of the file")
        yield kind, pos + header, pos + size
        pos += size


def _frame_count(fh: BinaryIO, start: int, end: int, depth: int = 0) -> int | None:
    """Frames listed by the first video track's sample-size table under [start, end), or None."""
    for kind, body, stop in _boxes(fh, start, end):
        if depth == len(_CONTAINERS):
            if kind == b"stsz":
                fh.seek(body + 8)  # version/flags (4), default sample size (4)
                return struct.unpack(">I", fh.read(4))[0]
            continue
        if kind == _CONTAINERS[depth]:
            found = _frame_count(fh, body, stop, depth + 1)
            if found is not None:
                return found
    return None


def mp4_frame_count(path: str | Path) -> int | None:
    """How many frames the finished MP4 at ``path`` lists in its index; ``None`` when it has no complete index
    (cut short, or not an MP4)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            top = {kind for kind, _, _ in _boxes(fh, 0, size)}
            if b"moov" not in top:
                return None
            return _frame_count(fh, 0, size)
    except (OSError, ValueError, struct.error):
        return None
