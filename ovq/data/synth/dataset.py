"""Conveyor scenes written as an Ultralytics YOLO dataset (train / val / calib splits and a ``data.yaml``)."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from ovq.core.fileio import make_temp_dir
from ovq.data.synth import scene
from ovq.data.synth.parts import CLASSES

logger = logging.getLogger(__name__)

SPLIT_SEED_OFFSETS = {"train": 0, "val": 1, "calib": 2}


def write_yolo_dataset(
    out_dir: str | Path,
    *,
    n_train: int,
    n_val: int,
    n_calib: int,
    seed: int = 0,
    width: int = 320,
    height: int = 320,
    jpeg_quality: int = 92,
) -> Path:
    """Write an Ultralytics YOLO dataset of conveyor scenes to ``out_dir`` and return ``out_dir/data.yaml``.

    Layout: ``images/{train,val,calib}/*.jpg``, ``labels/{split}/*.txt`` (``class cx cy w h``, normalized)
    and ``data.yaml``. Each split draws from its own seed sequence (``SeedSequence([seed, split])``), so
    images never repeat across splits. The dataset is built in a temporary folder next to ``out_dir`` and
    moved into place at the end; an existing ``out_dir`` is replaced only then.
    """
    counts = {"train": n_train, "val": n_val, "calib": n_calib}
    for split, n in counts.items():
        if n < 0:
            raise ValueError(f"n_{split} must be >= 0, got {n}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out_dir.parent, f".{out_dir.name}.tmp-")  # not mkdtemp: the dataset follows the umask
    try:
        start = time.monotonic()
        for split, n in counts.items():
            rng = np.random.default_rng(np.random.SeedSequence([seed, SPLIT_SEED_OFFSETS[split]]))
            _write_split(tmp, split, n, rng, width=width, height=height, jpeg_quality=jpeg_quality)
        names = "\n".join(f"  {i}: {name}" for i, name in enumerate(CLASSES))
        (tmp / "data.yaml").write_text(
            f"# conveyor scenes made by ovq.data.synth (seed {seed}, {width}x{height})\n"
            f"path: {out_dir.resolve()}\ntrain: images/train\nval: images/val\ncalib: images/calib\n"
            f"names:\n{names}\n",
            encoding="utf-8",
        )
        _replace_dir(tmp, out_dir)
        logger.info("wrote %d images to %s in %.1f s", sum(counts.values()), out_dir, time.monotonic() - start)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "data.yaml"


def _write_split(
    root: Path, split: str, n: int, rng: np.random.Generator, *, width: int, height: int, jpeg_quality: int
) -> None:
    img_dir = root / "images" / split
    lbl_dir = root / "labels" / split
    img_dir.mkdir(parents=True)
    lbl_dir.mkdir(parents=True)
    for i in range(n):
        image, xyxy, class_id = scene.render_scene(rng, width=width, height=height)
        stem = f"{split}_{i:06d}"
        if not cv2.imwrite(str(img_dir / f"{stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
            raise OSError(f"could not write {img_dir / stem}.jpg")
        (lbl_dir / f"{stem}.txt").write_text(_yolo_lines(xyxy, class_id, width, height), encoding="utf-8")


def _yolo_lines(xyxy: np.ndarray, class_id: np.ndarray, width: int, height: int) -> str:
    lines = []
    for (x1, y1, x2, y2), c in zip(xyxy.tolist(), class_id.tolist(), strict=True):
        lines.append(
            f"{c} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} "
            f"{(y2 - y1) / height:.6f}"
        )
    return "\n".join(lines) + ("\n" if lines else "")


def _replace_dir(new: Path, out_dir: Path) -> None:
    """Put the finished folder ``new`` at ``out_dir``; an existing ``out_dir`` is moved aside first, then removed."""
    if not out_dir.exists():
        os.replace(new, out_dir)
        return
    trash = make_temp_dir(out_dir.parent, f".{out_dir.name}.old-")
    os.replace(out_dir, trash / "old")
    os.replace(new, out_dir)
    shutil.rmtree(trash, ignore_errors=True)
