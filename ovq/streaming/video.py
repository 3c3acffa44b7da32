"""Video files a browser plays: the encoder behind :class:`~ovq.streaming.sinks.VideoSink`, chosen by suffix.

======== ======================================= ===================================================
suffix   with PyAV (``pip install 'ovq[video]'``)  without (OpenCV's wheel only)
======== ======================================= ===================================================
``.mp4`` H.264 (libx264), yuv420p, ``+faststart``  MPEG-4 Part 2 (``mp4v``): players play it, browsers don't
``.webm`` VP9 (libvpx, realtime settings)          VP9 (``VP90``): browsers play it, but it encodes slowly
======== ======================================= ===================================================

Why: OpenCV's wheel opens no H.264 writer (``avc1``/``H264``/``X264`` fail), and its VP9 writer uses libvpx's
default (good, slow) settings that OpenCV does not let a caller change. Measured on 100 frames of the 768x432
sample video, AMD EPYC Zen 3 (2 cores shared, load average 16): OpenCV ``mp4v`` 124 fps, OpenCV ``VP90`` 2-3 fps,
PyAV libx264 ``veryfast`` 75 fps, PyAV libvpx-vp9 ``realtime``/``cpu-used 8`` 56 fps; the H.264 file was half the
size of the ``mp4v`` one. PyAV's wheel bundles libx264, which is GPL-2.0: that is why it is an optional extra.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from ovq.core.errors import ConfigError, OvqError

SUFFIXES = (".mp4", ".m4v", ".mov", ".webm")
_AV_SETTINGS = {  # suffix -> (container format, codec, options)
    ".mp4": ("mp4", "libx264", {"preset": "veryfast", "crf": "23", "movflags": "+faststart"}),
    ".m4v": ("mp4", "libx264", {"preset": "veryfast", "crf": "23", "movflags": "+faststart"}),
    ".mov": ("mov", "libx264", {"preset": "veryfast", "crf": "23"}),
    ".webm": ("webm", "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "row-mt": "1", "crf": "32", "b": "0"}),
}
_CV_FOURCC = {".webm": "VP90"}  # everything else: mp4v


class VideoWriter(Protocol):
    codec: str  # what the log and the user are told
    note: str | None  # a warning worth logging about this choice

    def write(self, image: np.ndarray) -> None: ...

    def release(self) -> None: ...


def check_suffix(path: Path) -> None:
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"{path}: video output must end in .mp4 or .webm (also .m4v, .mov)")


def even_size(width: int, height: int) -> tuple[int, int]:
    """H.264 and VP9 in 4:2:0 need even sides: the size frames are written at."""
    return max(2, width - width % 2), max(2, height - height % 2)


def open_writer(tmp: Path, suffix: str, size: tuple[int, int], fps: float, *, use_av: bool | None = None) -> VideoWriter:
    """A writer for ``tmp`` in the format ``suffix`` names, PyAV when installed (``use_av=None``), else OpenCV."""
    suffix = suffix.lower()
    if use_av is None:
        use_av = pyav_codec(_AV_SETTINGS[suffix][1]) is not None
    if use_av:
        return _AvWriter(tmp, suffix, size, fps)
    return _CvWriter(tmp, suffix, size, fps)


def pyav_codec(name: str) -> Any:
    """PyAV's encoder ``name``, or ``None`` when PyAV or the encoder is missing."""
    try:
        import av
    except ImportError:
        return None
    try:
        return av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - PyAV raises its own UnknownCodecError (a ValueError subclass in some versions)
        return None


class _AvWriter:
    def __init__(self, tmp: Path, suffix: str, size: tuple[int, int], fps: float) -> None:
        import av

        fmt, codec, options = _AV_SETTINGS[suffix]
        container_options = {k: v for k, v in options.items() if k == "movflags"}
        try:
            self._container = av.open(str(tmp), mode="w", format=fmt, options=container_options)
        except OSError as exc:
            raise OvqError(f"{tmp}: cannot write: {exc.strerror or exc}") from None
        self._stream = self._container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        self._stream.width, self._stream.height = size
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {k: v for k, v in options.items() if k != "movflags"}
        self.codec = {"libx264": "H.264 (PyAV, libx264)", "libvpx-vp9": "VP9 (PyAV, libvpx)"}[codec]
        self.note = None

    def write(self, image: np.ndarray) -> None:
        import av

        for packet in self._stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
            self._container.mux(packet)

    def release(self) -> None:
        import av

        try:
            for packet in self._stream.encode():  # flush the encoder's delayed frames
                self._container.mux(packet)
        except av.FFmpegError as exc:
            raise OvqError(f"cannot finish the {self.codec} video: {exc}") from None
        finally:
            self._container.close()


class _CvWriter:
    def __init__(self, tmp: Path, suffix: str, size: tuple[int, int], fps: float) -> None:
        fourcc = _CV_FOURCC.get(suffix, "mp4v")
        self._writer = cv2.VideoWriter(str(tmp), cv2.CAP_FFMPEG, cv2.VideoWriter.fourcc(*fourcc), float(fps), size)
        if not self._writer.isOpened():
            raise OvqError(f"{tmp}: cannot open for writing a {fourcc} video of {size[0]}x{size[1]} at {fps} fps")
        if fourcc == "VP90":
            self.codec = "VP9 (OpenCV)"
            self.note = ("VP9 through OpenCV encodes slowly (2-3 fps at 768x432 here) and holds the pipeline back; "
                         "pip install 'ovq[video]' encodes it about 20x faster with PyAV")
        else:
            self.codec = "MPEG-4 Part 2 (OpenCV mp4v)"
            self.note = ("browsers do not play MPEG-4 Part 2: write .webm, or pip install 'ovq[video]' for H.264 "
                         "(PyAV; its libx264 is GPL)")

    def write(self, image: np.ndarray) -> None:
        self._writer.write(image)

    def release(self) -> None:
        self._writer.release()
