"""Video sources: what a source string means, and opening it as something that yields BGR frames.

Source strings:

- ``0``, ``1``...: a camera by index (V4L2 on Linux);
- a video file (MP4, MKV, AVI, GIF...: anything FFmpeg reads), an image file, or a folder of images;
- ``rtsp://``, ``rtsps://``, ``rtmp://``, ``http://``, ``https://`` (MJPEG or any stream FFmpeg reads),
  ``udp://``, ``tcp://``, ``srt://`` URLs, opened through OpenCV's FFmpeg backend;
- ``synth://conveyor[?fps=30&width=640&height=480&seed=0]``: the synthetic conveyor camera of :mod:`ovq.data.synth`.

Cameras, URLs and ``synth://`` are *live*: the pipeline keeps only their newest frame and reconnects them when
they fail. Files and folders are read losslessly, every frame in order.

Opening never substitutes anything for a missing frame: a source either yields a real decoded frame or
``None`` (ended or failed), and a live source that cannot be opened raises :class:`SourceError`.

OpenCV opens every FFmpeg capture and writer of a process under one global lock: while one URL is being opened
(an RTSP open probes the stream for a few seconds; a silent host holds it until ``timeout``), other opens wait.
Reading frames is not affected, so running streams go on; reconnects of several dead cameras are serialised.
"""

from __future__ import annotations

import difflib
import functools
import glob
import logging
import os
import re
import socket
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import cv2
import numpy as np

from ovq.core.errors import ConfigError, DatasetError, OvqError, SourceError, unknown_key_message
from ovq.core.urls import UNOPENABLE_SOURCE, Url, is_utf8_text, parse_url, redact
from ovq.data.images import IMAGE_SUFFIXES, decode_image

logger = logging.getLogger(__name__)

# Video decoding: "auto" lets OpenCV's FFmpeg backend take any hardware decoder it was built with (VA-API on
# Intel iGPUs under Linux, D3D11/MFX on Windows) and fall back to software; "software" never tries; a named
# accelerator is required (an error when it is not there). What was selected is reported per source.
DECODE_MODES = {
    "auto": cv2.VIDEO_ACCELERATION_ANY,
    "software": cv2.VIDEO_ACCELERATION_NONE,
    "vaapi": cv2.VIDEO_ACCELERATION_VAAPI,
    "mfx": cv2.VIDEO_ACCELERATION_MFX,
    "d3d11": cv2.VIDEO_ACCELERATION_D3D11,
}
_ACCELERATION_NAMES = {v: k for k, v in DECODE_MODES.items() if k != "auto"} | {
    cv2.VIDEO_ACCELERATION_DRM: "drm"
}

def stream_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a stream's name (it names files and MQTT topics), or ``None``.

    Not its first character: a ``-`` (a name like an option: ``--name -cam`` is read as the flag's value, and the
    shell commands that handle its files and topics take it as an option) or a ``.`` (``..`` and ``.x`` read as a
    folder above and a hidden file)."""
    if name[:1] in ("-", ".") and re.fullmatch(r"[\w.-]+", name):
        return (f"stream name '{name}': starts with '{name[0]}'; start it with a letter, digit or '_' (it names files "
                "and MQTT topics, and is typed in shells)")
    if re.fullmatch(r"[\w.-]+", name):
        return None
    return f"stream name '{name}': use letters, digits, '_', '.' and '-' (it names files and MQTT topics)"


URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
SYNTH_SCENES = ("conveyor",)
_SYNTH_PARAMS = {"fps": float, "width": int, "height": int, "seed": int}


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source string. ``kind`` is one of ``camera``, ``url``, ``synth``, ``video``, ``images``."""

    text: str
    kind: str
    camera: int | None = None
    path: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)
    url: Url | None = None  # for kind "url": the parsed URL (ovq.core.urls)

    @property
    def live(self) -> bool:
        return self.kind in ("camera", "url", "synth")

    @functools.cached_property  # read for every frame's result: the redaction's regexes run once
    def display(self) -> str:
        """The source string with any password in a URL replaced by ``***`` (for logs and records)."""
        return self.url.redacted() if self.url is not None else redact(self.text)


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (:func:`ovq.core.urls.redact`)."""
    return redact(url)


def parse_source(text: str | int | Path) -> SourceSpec:
    """What a source string names. Raises :class:`SourceError` for a missing file, an unknown scheme, a URL
    without a valid host or port (the password never shown)."""
    if isinstance(text, int):
        text = str(text)
    text = str(text).strip()
    if not text:
        raise SourceError("empty source string")
    if not is_utf8_text(text):  # not shown: a URL's password, or bytes no terminal shows as they are
        raise SourceError(f"not UTF-8 text; {UNOPENABLE_SOURCE}")
    if re.fullmatch(r"\d{1,3}", text):
        return SourceSpec(text=text, kind="camera", camera=int(text))
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme == "synth":
        return _parse_synth(text)
    if scheme and scheme != "file":
        url = parse_url(text, schemes=(*URL_SCHEMES, "synth", "file"), error=SourceError, what="source")
        return SourceSpec(text=text, kind="url", url=url)
    try:
        return _parse_path(Path(text[len("file://"):] if scheme == "file" else text).expanduser(), text)
    except OSError as exc:  # a name too long, a symlink loop, no permission
        raise SourceError(f"{text}: {exc.strerror or exc}") from None


def _parse_path(path: Path, text: str) -> SourceSpec:
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise SourceError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return SourceSpec(text=text, kind="images", path=path, params={"files": tuple(images)})
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return SourceSpec(text=text, kind="images", path=path, params={"files": (path,)})
        return SourceSpec(text=text, kind="video", path=path)
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise SourceError(f"{path}: no such file or folder") from None
    camera = re.fullmatch(r"/dev/video(\d+)", str(path))
    if camera:
        raise SourceError(f"{path}: a camera device; give the camera by its index: {camera.group(1)}")
    # /dev/null was "no such file or folder", which it is not
    kind = "a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    raise SourceError(f"{path}: {kind}, not a regular file; expected a video file, an image or a folder of images")


def _parse_synth(text: str) -> SourceSpec:
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # synth://[x: urllib's "Invalid IPv6 URL"
        raise SourceError(f"{text}: {exc}; expected synth://SCENE?fps=N&width=W&height=H") from None
    scene = (parts.netloc + parts.path).strip("/")
    if scene not in SYNTH_SCENES:
        raise SourceError(f"{text}: unknown synthetic scene '{scene}'; expected one of: {', '.join(SYNTH_SCENES)}")
    params: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _SYNTH_PARAMS:
            raise SourceError(unknown_key_message(key, _SYNTH_PARAMS, where=text))
        try:
            params[key] = _SYNTH_PARAMS[key](value)
        except ValueError:
            raise SourceError(f"{text}: {key}={value!r} is not a valid {_SYNTH_PARAMS[key].__name__}") from None
    if params.get("fps", 1.0) <= 0 or params.get("width", 32) < 32 or params.get("height", 32) < 32:
        raise SourceError(f"{text}: fps must be > 0 and width, height at least 32")
    return SourceSpec(text=text, kind="synth", params={"scene": scene, **params})


_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "http": 80, "https": 443}


def diagnose_url(url: str | Url, *, timeout: float = 2.0) -> str:
    """Why a URL gave no video, as far as a plain TCP connection can tell."""
    if isinstance(url, str):
        try:
            url = parse_url(url)
        except OvqError as exc:  # "...: bad port '99999' (expected 1-65535)": the part after the URL
            return str(exc).rpartition(": ")[2]
    port = url.port or _DEFAULT_PORTS.get(url.scheme)
    if url.scheme not in _DEFAULT_PORTS or port is None:
        return "cannot open the stream"
    where = f"{url.host}:{port}"
    try:
        with socket.create_connection((url.host, port), timeout=timeout) as conn:
            answer = _rtsp_status(conn, url, port) if url.scheme == "rtsp" else None
    except socket.gaierror:
        return f"cannot resolve host '{url.host}'"
    except ConnectionRefusedError:
        return f"connection refused by {where} (no server listening)"
    except TimeoutError:
        return f"no answer from {where} within {timeout:.0f} s"
    except OSError as exc:
        return f"cannot connect to {where}: {exc.strerror or exc}"
    if answer is not None and answer[0] == 404:
        return f"404: no such stream path on {where} (the server is up; check the path)"
    if answer is not None and answer[0] == 401:  # to ovq's DESCRIBE, which sends no credentials
        if url.username is None:
            return f"401: {where} wants a user name and password (give them in the URL, from ${{VARIABLES}})"
        return f"{where} wants a login, and the stream did not open with the URL's (wrong user name, password or path?)"
    if answer is not None and answer[0] != 200:
        return f"{where} answered {answer[0]} {answer[1]}".rstrip()
    return f"{where} accepts connections but sent no video stream FFmpeg could open (wrong path or format?)"


def _rtsp_status(conn: socket.socket, url: Url, port: int) -> tuple[int, str] | None:
    """The RTSP server's answer to a DESCRIBE of ``url`` (no credentials sent): ``(404, "Not Found")``; ``None``
    when it does not answer as an RTSP server. FFmpeg says it only on its own log, as a line of its own on standard
    error (``[rtsp @ 0x...] method DESCRIBE failed: 404 (Not Found)``)."""
    host = f"[{url.host}]" if ":" in url.host else url.host
    request = (f"DESCRIBE rtsp://{host}:{port}{url.rest or '/'} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n"
               "User-Agent: ovq\r\n\r\n")
    try:
        conn.sendall(request.encode("utf-8", errors="replace"))
        head = conn.recv(512).decode("latin-1").split("\r\n", 1)[0]
    except OSError:
        return None
    match = re.fullmatch(r"RTSP/1\.\d (\d{3}) ?(.*)", head)
    return (int(match.group(1)), match.group(2).strip()) if match else None


class FrameSource(Protocol):
    """An opened source: ``read()`` gives the next BGR frame or ``None`` when it ended or failed."""

    fps: float | None
    frame_count: int | None
    size: tuple[int, int] | None  # (height, width) of every frame when the source says so, else None

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


class CaptureSource:
    """A video file, camera or URL read with ``cv2.VideoCapture`` (FFmpeg backend for files and URLs).

    ``timeout`` (seconds) bounds both opening and each read of a URL, so a dead or silent server makes
    ``read()`` return ``None`` instead of blocking.
    """

    def __init__(
        self, spec: SourceSpec, *, timeout: float = 5.0, decode_threads: int | None = None, decode: str = "auto"
    ) -> None:
        self.spec = spec
        accel = check_decode(decode)
        ms = int(max(timeout, 0.1) * 1000)
        if spec.kind == "camera":
            if sys.platform.startswith("linux"):
                if not Path(f"/dev/video{spec.camera}").exists():
                    raise SourceError(f"{spec.text}: no such camera (/dev/video{spec.camera} does not exist)")
                cap = cv2.VideoCapture(spec.camera, cv2.CAP_V4L2)
            else:
                cap = cv2.VideoCapture(spec.camera)
        else:
            target = str(spec.path) if spec.kind == "video" else spec.url.unredacted() if spec.url else spec.text
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            params += [cv2.CAP_PROP_HW_ACCELERATION, accel]
            if decode_threads:
                params += [cv2.CAP_PROP_N_THREADS, int(decode_threads)]
            cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            if decode not in ("auto", "software") and spec.kind != "camera":
                raise SourceError(
                    f"{spec.display}: cannot open with {decode} hardware decoding (not on this machine, or not in "
                    "this OpenCV build); use decode 'auto' or 'software'"
                )
            if spec.kind == "url":
                what = diagnose_url(spec.url or spec.text, timeout=min(timeout, 2.0))
            elif spec.kind == "camera":
                what = "cannot open camera"
            else:
                what = "cannot open as a video (not a video file, or a format FFmpeg cannot read)"
            raise SourceError(f"{spec.display}: {what}")
        if spec.kind == "camera":
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap
        used = int(cap.get(cv2.CAP_PROP_HW_ACCELERATION) or 0) if spec.kind != "camera" else 0
        self.decoder = _ACCELERATION_NAMES.get(used, f"accelerated ({used})") if used > 0 else "software"
        self.decode_threads = decode_threads
        if decode not in ("auto", "software") and self.decoder != decode:
            cap.release()
            raise SourceError(f"{spec.display}: {decode} hardware decoding was asked for, OpenCV chose {self.decoder}")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps: float | None = float(fps) if fps and 0 < fps < 1000 else None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if spec.kind == "video" else 0
        self.frame_count: int | None = count if count > 0 else None
        h, w = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        self.size: tuple[int, int] | None = (h, w) if h > 0 and w > 0 else None  # what the stream says it sends

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        if not ok or frame is None or frame.size == 0:
            return None
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        return frame

    def close(self) -> None:
        self._cap.release()


class ImageSource:
    """Image files in order; a file that cannot be decoded is logged and skipped."""

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self._files: tuple[Path, ...] = spec.params["files"]
        self._next = 0
        self.fps: float | None = None
        self.frame_count: int | None = len(self._files)
        self.size: tuple[int, int] | None = None  # images may differ in size
        self.skipped = 0

    def read(self) -> np.ndarray | None:
        while self._next < len(self._files):
            path = self._files[self._next]
            self._next += 1
            try:
                return decode_image(np.fromfile(str(path), dtype=np.uint8), path)
            except DatasetError as exc:
                self.skipped += 1
                logger.warning("%s, skipped", exc)
        return None

    def close(self) -> None:
        self._next = len(self._files)


class SynthSource:
    """The synthetic conveyor camera (:class:`ovq.data.synth.ConveyorStream`), paced to its fps."""

    def __init__(self, spec: SourceSpec) -> None:
        try:
            from ovq.data.synth import ConveyorStream
        except ImportError as exc:  # the module is optional in a trimmed install
            raise SourceError(f"{spec.text}: synthetic sources need ovq.data.synth ({exc})") from None
        p = spec.params
        self._stream = ConveyorStream(
            width=p.get("width", 640), height=p.get("height", 480), fps=p.get("fps", 30.0), seed=p.get("seed", 0),
            realtime=True,
        )
        self.fps: float | None = float(p.get("fps", 30.0))
        self.frame_count: int | None = None
        self.size: tuple[int, int] | None = (p.get("height", 480), p.get("width", 640))

    def read(self) -> np.ndarray | None:
        return self._stream.read()

    def close(self) -> None:
        self._stream.close()


def check_decode(decode: str, *, on_this_machine: bool = False) -> int:
    """OpenCV's acceleration constant for a decode mode; :class:`ConfigError` for an unknown one, and with
    ``on_this_machine`` for a hardware decoder this machine cannot have (:func:`missing_hardware_decoder`)."""
    if decode not in DECODE_MODES:
        close = difflib.get_close_matches(str(decode), list(DECODE_MODES), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"decode '{decode}': expected one of {', '.join(DECODE_MODES)}{hint}")
    if on_this_machine and (problem := missing_decoder_said(decode)):
        raise ConfigError(f"decode {problem}")
    return DECODE_MODES[decode]


def missing_decoder_said(decode: str) -> str | None:
    """Why this machine cannot decode with ``decode`` (a known mode), said after its option's name (``--decode``,
    ``decode``): ``"vaapi: this machine has no ...; use auto or software"``; ``None`` when it can."""
    why = missing_hardware_decoder(decode)
    return f"{decode}: {why}; use auto or software" if why else None


def missing_hardware_decoder(decode: str) -> str | None:
    """Why ``decode`` cannot work on this machine whatever the source, or ``None`` when it may.

    Checked before a run: a live source's failed open is retried (a camera may come back), and a decoder the
    machine lacks would be retried forever. VA-API and oneVPL (mfx) on Linux need a GPU render node.
    """
    if decode in ("auto", "software"):
        return None
    if decode == "d3d11" and sys.platform != "win32":
        return "D3D11 video decoding is Windows only"
    if decode in ("vaapi", "mfx") and sys.platform.startswith("linux") and not glob.glob("/dev/dri/renderD*"):
        return "this machine has no GPU render node (/dev/dri/renderD*)"
    return None


def decode_threads(streams: int, cores: int | None = None) -> int:
    """FFmpeg decoder threads per stream when ``streams`` decode at once: the cores shared out, 1 to 4 each.

    FFmpeg's default (one thread per core for every capture) oversubscribes the cores as soon as several
    streams run, and each extra frame thread holds one more decoded frame of latency.
    """
    cores = cores or os.cpu_count() or 1
    return max(1, min(4, cores // max(1, streams)))


def open_source(
    spec: SourceSpec, *, timeout: float = 5.0, decode_threads: int | None = None, decode: str = "auto"
) -> FrameSource:
    """Open ``spec``; :class:`SourceError` naming the source when it cannot be opened.

    ``decode`` (:data:`DECODE_MODES`) selects hardware video decoding; a video source reports what it got in
    ``decoder`` ("software", "vaapi", ...)."""
    if spec.kind == "images":
        return ImageSource(spec)
    if spec.kind == "synth":
        return SynthSource(spec)
    return CaptureSource(spec, timeout=timeout, decode_threads=decode_threads, decode=decode)
