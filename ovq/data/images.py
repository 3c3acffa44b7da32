"""Finding and reading image files."""

from __future__ import annotations

import stat
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from ovq.core.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


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


def read_image(path: str | Path) -> np.ndarray:
    """A BGR uint8 image; :class:`DatasetError` naming the file when it cannot be decoded."""
    path = Path(path)
    try:
        data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    except OSError as exc:  # no permission, an I/O error: the image's problem, not the output's
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if data is None:
        raise DatasetError(f"{path}: no such image file")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DatasetError(f"{path}: not a readable image")
    return image
