"""YOLO label files and image sizes: reading and checking one file at a time (for :mod:`ovq.data.datasets`)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from ovq.core.errors import ClassMismatch, DatasetError
from ovq.data.images import decode_image, png_chunk

NAME_FILES = ("classes.txt", "names.txt")  # one class name a line, beside images/ and labels/
BOX_TOLERANCE = 1e-3  # normalized coordinates may overshoot 0..1 by this much (rounding); then clipped


def read_text(path: Path, what: str) -> str:
    """The text of one of a dataset's files (``what`` it is, for the message): UTF-8, with or without the byte-order
    mark Windows editors put first; :class:`DatasetError` naming the file when it cannot be read or is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: {what} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None


def parse_yolo_labels(label: Path, width: int, height: int, num_classes: int | None, *,
                      models: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (xyxy pixels) and class ids of one YOLO label file; :class:`DatasetError` naming file:line.

    ``models``: ``num_classes`` is the model's class count, the dataset naming none: a class past it is a
    :class:`ClassMismatch` (data that is not the model's, e.g. coco128's labels for a person detector)."""
    text = read_text(label, "label file")
    boxes: list[tuple[float, float, float, float]] = []
    classes: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{label}:{lineno}"
        if len(fields) < 5 or (len(fields) > 5 and (len(fields) - 1) % 2):
            raise DatasetError(
                f"{where}: malformed line '{line.strip()[:60]}': expected 'class cx cy w h' "
                "(or 'class x1 y1 x2 y2 ...' for a polygon)"
            )
        try:
            cls_value = float(fields[0])
            values = [float(v) for v in fields[1:]]
        except ValueError:
            raise DatasetError(f"{where}: malformed line '{line.strip()[:60]}': not all fields are numbers") from None
        if not all(math.isfinite(v) for v in (cls_value, *values)):
            raise DatasetError(f"{where}: malformed line '{line.strip()[:60]}': non-finite number")
        if cls_value != int(cls_value) or cls_value < 0:
            raise DatasetError(f"{where}: class '{fields[0]}' is not a non-negative integer")
        cls = int(cls_value)
        if num_classes is not None and cls >= num_classes:
            said = f"{where}: class {cls} is out of range 0..{num_classes - 1} ({num_classes} names"
            if models:
                raise ClassMismatch(f"{said}, the model's: the dataset names none in {' or '.join(NAME_FILES)})")
            raise DatasetError(f"{said})")
        if len(values) == 4:
            cx, cy, w, h = values
            if min(values) < 0 or max(values) > 1:
                raise DatasetError(f"{where}: box {' '.join(fields[1:])} is outside 0..1 (normalized cx cy w h expected)")
            x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        else:
            xs, ys = values[0::2], values[1::2]
            if min(values) < 0 or max(values) > 1:
                raise DatasetError(f"{where}: polygon point outside 0..1 (normalized coordinates expected)")
            x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
        if x1 < -BOX_TOLERANCE or y1 < -BOX_TOLERANCE or x2 > 1 + BOX_TOLERANCE or y2 > 1 + BOX_TOLERANCE:
            raise DatasetError(
                f"{where}: box {' '.join(fields[1:5])} reaches outside the image "
                f"(x {x1:.4f}..{x2:.4f}, y {y1:.4f}..{y2:.4f}; 0..1 expected)"
            )
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            raise DatasetError(f"{where}: box {' '.join(fields[1:5])} has zero width or height")
        x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2))
        boxes.append((x1 * width, y1 * height, x2 * width, y2 * height))
        classes.append(cls)
    xyxy = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return xyxy, np.asarray(classes, dtype=np.int64)


def label_path_for(image: Path) -> Path:
    """Ultralytics' convention: the last ``/images/`` of the path becomes ``/labels/``, suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _orientation(im, path: Path, exif_type) -> int:
    """The EXIF orientation OpenCV applies to the image ``im`` (opened by Pillow from ``path``) when it decodes it.

    Not ``getexif()`` for a PNG: Pillow decodes the whole image to look for an eXIf chunk after the image data
    (a 4K PNG: 143 ms a size, most of OpenCV's 200 ms decode, for every image of a dataset before any inference);
    OpenCV reads one there too, so the chunks are walked instead."""
    if im.format == "PNG":
        data = im.info.get("exif")  # an eXIf chunk before the image data, as Pillow's open reads
        if data is None and (chunk := png_chunk(path, b"eXIf")) is not None:
            data = b"Exif\x00\x00" + chunk
        if not data:
            return 1
        exif = exif_type()
        exif.load(data)
        return exif.get(0x0112, 1)
    return im.getexif().get(0x0112, 1) if im.format in ("JPEG", "MPO", "TIFF", "WEBP") else 1


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as OpenCV will decode it (EXIF rotation applied), read from the header when possible."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        Image = None
    if Image is not None:
        try:
            with warnings.catch_warnings():
                # Pillow's guard against decoding a huge image (a warning above 89 M pixels, an error above 179 M):
                # only the header is read here, and OpenCV, which decodes it, has its own limit (1 G pixels)
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                # and its 'Corrupt EXIF data' about a damaged header (a cut TIFF): OpenCV's decode says what is wrong
                warnings.simplefilter("ignore", UserWarning)
                with Image.open(path) as im:
                    width, height = im.size
                    if im.format == "TIFF":  # Pillow's TIFF size is already turned by the orientation; the tags not
                        width, height = im.tag_v2.get(256, width), im.tag_v2.get(257, height)
                    orientation = _orientation(im, path, Image.Exif)
            if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: OpenCV applies it when decoding
                width, height = height, width
            return int(width), int(height)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError, ImportError):
            # ImportError: Ultralytics, once imported, patches Image.open to try an optional HEIF plugin
            pass
    image = decode_image(np.fromfile(str(path), dtype=np.uint8), path) if path.is_file() else None
    if image is None:
        raise DatasetError(f"{path}: not a readable image")
    return int(image.shape[1]), int(image.shape[0])
