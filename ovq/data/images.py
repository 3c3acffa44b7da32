"""Finding and reading image files."""

from __future__ import annotations

import logging
import re
import stat
import struct
import sys
import zlib
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from ovq.core.errors import DatasetError
from ovq.core.native import native_stderr

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# IHDR's colour type -> the bit depths PNG allows for it
PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
JPEG_SOI = b"\xff\xd8"
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*")
# what decoding a JPEG or TIFF prints on standard error: OpenCV's log lines ('[ERROR:0@1.9] global
# grfmt_tiff.cpp:117 TIFF_Error ' before libtiff's words) and libjpeg's warnings (jerror.h's JWRN_ messages, of which
# it prints the first); anything else there meanwhile was another thread's, and goes back to standard error
DECODER_SAID = re.compile(r"\[(?:ERROR| ?WARN| ?INFO):[^\]\n]*\] global \S+ \S+ ([^\n]*)\n?|((?:Corrupt JPEG data"
                          r"|Premature end of JPEG file|Invalid SOS parameters|Inconsistent progression sequence"
                          r"|Unknown Adobe color transform|Warning: unknown JFIF|Application transferred too many)"
                          r"[^\n]*)\n?")


def file_problem(path: Path) -> str | None:
    """Why ``path`` is not a regular file to read, or ``None`` when it is one."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a symbolic link to nothing" if path.is_symlink() else "no such file or folder"
    except OSError as exc:  # a symlink loop, a path through a file, no permission on a folder
        return exc.strerror or str(exc)
    if stat.S_ISDIR(mode):
        return "a folder, not an image file"
    if not stat.S_ISREG(mode):
        return "not a regular file (a FIFO, socket or device)"
    return None


def image_files(folder: Path, pattern: str = "*") -> list[Path]:
    """The image files in ``folder`` matching ``pattern`` (sorted); folders named like images are left out, and
    an image name that is not a regular file (a broken symlink, a FIFO) is a :class:`DatasetError` naming it,
    rather than an image quietly missing from a measurement. Hidden names below ``folder`` are not images of the
    set: macOS's ``._name.jpg`` metadata beside each image copied from a Mac, a ``.ipynb_checkpoints`` folder's
    copies (they would be scored as unlabelled images); Ultralytics' glob skips them too."""
    found = []
    for path in sorted(folder.glob(pattern)):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.is_dir():
            continue
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if problem := file_problem(path):
            raise DatasetError(f"{path}: {problem}")
        found.append(path)
    return found


def list_images(paths: Iterable[str | Path]) -> list[Path]:
    """Image files named directly or found (sorted, not recursively) in the named folders."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise DatasetError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif problem := file_problem(path):
            raise DatasetError(f"{path}: {problem}")
        else:
            out.append(path)
    return out


def png_problem(data: np.ndarray | bytes) -> str | None:
    """Why PNG bytes do not hold together (cut short, a critical chunk failing its CRC, a header PNG does not
    allow), or ``None`` when they do (or are not a PNG).

    libpng prints its own ``libpng error: ...`` line to standard error before a decode fails, and OpenCV its
    ``[ERROR:0@...]`` lines, above ovq's one line: so a broken file is told apart here, without decoding it and
    with no stream touched. The CRCs take 0.2 ms for a 770 KB PNG whose decode takes 10 ms; inflating the image
    data to check it too would cost nearly a decode (8.6 ms), so a file whose image data is bad under right CRCs
    (written wrong, not damaged later) still reaches libpng."""
    view = memoryview(data).cast("B")
    if bytes(view[:8]) != PNG_SIGNATURE:
        return None
    pos, first, seen_data = 8, True, False
    while True:
        if pos + 8 > len(view):
            return f"cut short: the file ends after {len(view)} bytes, before the PNG's end (IEND)"
        length, kind = struct.unpack(">I4s", view[pos : pos + 8])
        name = kind.decode("latin-1")
        if length > 0x7FFFFFFF or not kind.isalpha():
            return f"broken PNG chunk at byte {pos} ({name!r}, length {length})"
        if pos + 12 + length > len(view):
            return f"cut short: PNG chunk {name} runs past the end of the file ({len(view)} bytes)"
        (crc,) = struct.unpack(">I", view[pos + 8 + length : pos + 12 + length])
        critical = kind[:1].isupper()  # libpng drops an ancillary chunk that fails its CRC, with a warning
        if critical and zlib.crc32(view[pos + 4 : pos + 8 + length]) != crc:
            return f"PNG chunk {name} fails its CRC check (the file is damaged)"
        if first and (kind != b"IHDR" or length != 13):
            return f"the PNG does not start with its header (IHDR) but with {name}"
        if first:
            width, height, depth, colour, compression, filtering, interlace = struct.unpack(
                ">IIBBBBB", view[pos + 8 : pos + 21])
            if not (0 < width <= 0x7FFFFFFF and 0 < height <= 0x7FFFFFFF) or depth not in PNG_DEPTHS.get(colour, ()) \
                    or compression or filtering or interlace > 1:
                return (f"a PNG header PNG does not allow ({width}x{height}, bit depth {depth}, colour type {colour}, "
                        f"interlace {interlace})")
        first = False
        seen_data |= kind == b"IDAT"
        if kind == b"IEND":
            return None if seen_data else "the PNG holds no image data (IDAT)"
        pos += 12 + length


def bmp_problem(data: np.ndarray | bytes) -> str | None:
    """Why BMP bytes are cut short (an uncompressed BMP's rows, padding included, past the end of the file: OpenCV
    refuses it after printing '[ERROR:0@...] ... imdecode_ ...: Unexpected end of input stream'), or ``None``."""
    view = memoryview(data).cast("B")
    if bytes(view[:2]) != b"BM":
        return None
    if len(view) < 18 or len(view) < 14 + struct.unpack("<I", view[14:18])[0]:
        return f"cut short: the file ends inside the BMP's header ({len(view)} bytes)"
    offset, header = struct.unpack("<II", view[10:18])
    if header < 40:  # an OS/2 header: left to OpenCV
        return None
    width, height, _, bits, compression = struct.unpack("<iiHHI", view[18:34])
    if compression not in (0, 3) or not bits:  # RLE and embedded JPEG/PNG have no fixed size
        return None
    need = offset + (bits * abs(width) + 31) // 32 * 4 * abs(height)
    return f"cut short: its pixels need {need} bytes, the file has {len(view)}" if len(view) < need else None


def jpeg_problem(data: np.ndarray | bytes) -> str | None:
    """Why JPEG bytes are cut short (the file ends inside the headers, or before the end marker after the image
    data), or ``None``: the reason for a JPEG OpenCV refused without saying why. The headers are walked to the first
    scan, and the end marker (EOI) looked for after it: it cannot occur inside the entropy-coded data, where a 0xFF
    byte is always followed by 0 or a restart marker. Asked only once OpenCV refused: it decodes some JPEGs that
    lost their end marker alone (2 of the 10 tried, whose last bits needed nothing more)."""
    view = memoryview(data).cast("B")
    if bytes(view[:2]) != JPEG_SOI:
        return None
    pos = 2
    while True:
        while pos + 1 < len(view) and view[pos] == view[pos + 1] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos + 4 > len(view):
            return f"cut short: the file ends inside the JPEG's header ({len(view)} bytes)"
        marker = view[pos + 1]
        if view[pos] != 0xFF or marker in (0x00, 0xD9):  # stray bytes, an early end: left to libjpeg
            return None
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        pos += 2 + struct.unpack(">H", view[pos + 2 : pos + 4])[0]
        if marker == 0xDA:  # the first scan: its entropy-coded data follows its header
            break
    if bytes(view).rfind(b"\xff\xd9", pos) < 0:
        return f"cut short: the file ends after {len(view)} bytes, before the JPEG's end (EOI)"
    return None


def tiff_problem(data: np.ndarray | bytes) -> str | None:
    """Why TIFF bytes are cut short before the end of the first directory (IFD), or ``None``: the reason for a TIFF
    OpenCV refused, plainer than libtiff's ('TIFFFetchDirectory: : Seek error accessing TIFF directory'). Writers put
    the directory after the pixels (OpenCV, libtiff), so most cut files have lost it. Only the directory's own
    entries are asked for (libtiff reads a file whose next-directory pointer was cut off); BigTIFF is left alone."""
    view = memoryview(data).cast("B")
    if bytes(view[:4]) not in TIFF_SIGNATURES:
        return None
    order = "<" if view[0] == ord("I") else ">"
    if len(view) < 8:
        return f"cut short: the file ends inside the TIFF's header ({len(view)} bytes)"
    (ifd,) = struct.unpack(order + "I", view[4:8])
    if ifd + 2 > len(view) or ifd + 2 + 12 * struct.unpack(order + "H", view[ifd : ifd + 2])[0] > len(view):
        return f"cut short: the TIFF's directory (IFD) at byte {ifd} runs past the end of the file ({len(view)} bytes)"
    return _tiff_data_problem(view, order, ifd)


TIFF_DATA_TAGS = ((273, 279, "strips"), (324, 325, "tiles"))  # (offsets, byte counts) of the image's pieces
TIFF_TYPE_SIZES = {1: ("B", 1), 3: ("H", 2), 4: ("I", 4)}  # BYTE, SHORT, LONG: the types those tags take


def _tiff_data_problem(view: memoryview, order: str, ifd: int) -> str | None:
    """Why a TIFF whose directory is whole (written before its pixels, as Pillow and cameras do) is cut short in
    its image data: a strip or tile, or their table, runs past the end of the file; libtiff said 'TIFFFillStrip:
    Read error at scanline 4294967295; got 8860 bytes, expected 14400'. ``None`` when they all fit."""
    (count,) = struct.unpack(order + "H", view[ifd : ifd + 2])
    tags: dict[int, list[int]] = {}
    for i in range(count):
        tag, kind, n = struct.unpack(order + "HHI", view[ifd + 2 + 12 * i : ifd + 10 + 12 * i])
        if kind not in TIFF_TYPE_SIZES or not any(tag in pair[:2] for pair in TIFF_DATA_TAGS):
            continue
        code, size = TIFF_TYPE_SIZES[kind]
        at = ifd + 10 + 12 * i  # the value itself when it fits in 4 bytes, else where it is
        if n * size > 4:
            (at,) = struct.unpack(order + "I", view[at : at + 4])
        if at + n * size > len(view):
            return (f"cut short: the TIFF's table of image {'tiles' if tag in (324, 325) else 'strips'} at byte {at} "
                    f"runs past the end of the file ({len(view)} bytes)")
        tags[tag] = list(struct.unpack(f"{order}{n}{code}", view[at : at + n * size]))
    for offsets, sizes, what in TIFF_DATA_TAGS:
        pieces = list(zip(tags.get(offsets, []), tags.get(sizes, []), strict=False))
        end = max((start + length for start, length in pieces), default=0)
        if end > len(view):
            return (f"cut short: the file ends at byte {len(view)}, inside the TIFF's image data (its {what} run to "
                    f"byte {end})")
    return None


def png_chunk(path: Path, kind: bytes) -> bytes | None:
    """The data of the first ``kind`` chunk (``b"eXIf"``) of the PNG file at ``path``, found by skipping from chunk
    header to chunk header (nothing decoded); ``None`` when it has none or is not a PNG."""
    with open(path, "rb") as f:
        if f.read(8) != PNG_SIGNATURE:
            return None
        while len(head := f.read(8)) == 8:
            length, name = struct.unpack(">I4s", head)
            if name == kind:
                data = f.read(length)
                return data if len(data) == length else None
            if name == b"IEND":
                return None
            f.seek(length + 4, 1)
    return None


def decode_image(data: np.ndarray, where: object) -> np.ndarray:
    """The BGR uint8 image encoded in ``data`` (a file's bytes); :class:`DatasetError` naming ``where`` when it is
    not one, saying why when the bytes tell (:func:`png_problem`, :func:`bmp_problem`, :func:`jpeg_problem`,
    :func:`tiff_problem`) or the decoder did.

    libjpeg and libtiff print their own lines on standard error (libjpeg's 'Corrupt JPEG data: premature end of data
    segment' for damaged image data it still decodes, libtiff's through OpenCV's '[ERROR:0@...]'), which no check of
    the bytes can foresee (damage inside the entropy-coded data shows only to the decoder): a JPEG or TIFF is decoded
    with them kept off the terminal (:func:`~ovq.core.native.native_stderr`, 0.02 ms against 3 ms for a COCO image's
    decode). What they said is the reason of a refusal the bytes do not explain, or one warning naming the file when
    the image decoded: it is used as decoded, as libjpeg (and Ultralytics) do."""
    problem = next((why for check in (png_problem, bmp_problem) if (why := check(data))), None) \
        if data.size else None
    if problem:
        raise DatasetError(f"{where}: not a readable image: {problem}")
    if not data.size:
        raise DatasetError(f"{where}: not a readable image")
    said = [""]
    if bytes(data[:2]) == JPEG_SOI or bytes(data[:4]) in TIFF_SIGNATURES:
        with native_stderr() as said:
            image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    else:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    told, others = _decoder_said(said[0])
    if others.strip():
        sys.stderr.write(others)
        sys.stderr.flush()
    if image is None:
        why = jpeg_problem(data) or tiff_problem(data) or told
        raise DatasetError(f"{where}: not a readable image" + (f": {why}" if why else ""))
    if told:
        logger.warning("%s: decoded with a warning from the decoder: %s", where, told)
    return image


def _decoder_said(text: str) -> tuple[str, str]:
    """What the decoder said in ``text`` (what standard error got while it ran): its error's words, else its
    warning's (``""`` when it said nothing); and the rest of ``text``, another thread's."""
    errors, warnings = [], []
    for said in DECODER_SAID.finditer(text):
        (errors if said[0].startswith("[ERROR") else warnings).append((said[1] or said[2]).strip())
    return next(iter(errors + warnings), ""), DECODER_SAID.sub("", text)


def read_image(path: str | Path) -> np.ndarray:
    """A BGR uint8 image; :class:`DatasetError` naming the file when it cannot be decoded."""
    path = Path(path)
    problem = file_problem(path)  # a folder or /dev/null was "no such image file", though it is there
    if problem:
        raise DatasetError(f"{path}: {problem}")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:  # no permission, an I/O error: the image's problem, not the output's
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return decode_image(data, path)
