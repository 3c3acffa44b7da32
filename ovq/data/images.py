"""Finding and reading image files."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from ovq.core.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(paths: Iterable[str | Path]) -> list[Path]:
    """Image files named directly or found (sorted, not recursively) in the named folders."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(x for x in path.iterdir() if x.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DatasetError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise DatasetError(f"{path}: no such file or folder")
    return out


def read_image(path: str | Path) -> np.ndarray:
    """A BGR uint8 image; :class:`DatasetError` naming the file when it cannot be decoded."""
    path = Path(path)
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None:
        raise DatasetError(f"{path}: no such image file")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DatasetError(f"{path}: not a readable image")
    return image
