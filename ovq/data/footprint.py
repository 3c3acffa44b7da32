"""What a loaded dataset is made of on disk: the files it reads and the folders that hold them.

:func:`dataset_clash` tells whether an output path would land on the dataset (``ovq eval --save-json
labels/val/x.txt`` wrote its results over a label file, exit 0, and the next run failed on it).
"""

from __future__ import annotations

import os
from pathlib import Path

from ovq.data.datasets import Dataset
from ovq.data.layout import split_targets, within
from ovq.data.yolo_labels import NAME_FILES


def _real(path: str | Path) -> str:
    return os.path.realpath(path)


def dataset_folders(dataset: Dataset) -> list[Path]:
    """The folders holding the dataset's images and label files (a YOLO folder's whole ``images/`` and
    ``labels/``, every split), each once."""
    folders: dict[str, Path] = {}
    if dataset.format == "yolo":
        for name in ("images", "labels"):
            folders.setdefault(_real(dataset.root / name), dataset.root / name)
    if dataset.format == "yaml" and dataset.source is not None:  # every split's folder, not only the one loaded
        for target in split_targets(Path(dataset.source)):
            if target.is_dir():
                folders.setdefault(_real(target), target)
    for sample in dataset.samples:
        folders.setdefault(_real(sample.image.parent), sample.image.parent)
        if sample.label is not None:
            folders.setdefault(_real(sample.label.parent), sample.label.parent)
    return list(folders.values())


def dataset_clash(dataset: Dataset, path: str | Path) -> str | None:
    """Why writing ``path`` would change ``dataset`` (which file or folder of it ``path`` is), or ``None``.

    A file the dataset reads (its YAML or COCO JSON, a ``.txt`` image list its YAML names as a split, its class
    names file, an image, a label file, also one a
    background image may get) is replaced by a write; a new file inside one of its folders (:func:`dataset_folders`)
    becomes part of it. Paths are compared after ``..`` and symlinks, whether or not ``path`` exists."""
    target = _real(path)
    files: list[tuple[str, Path]] = []
    if dataset.source is not None and Path(dataset.source).is_file():
        files.append(("the dataset file", Path(dataset.source)))
    if dataset.format == "yaml" and dataset.source is not None:  # 'train: train.txt', a list of image paths
        files += [("an image list", t) for t in split_targets(Path(dataset.source)) if t.suffix.lower() == ".txt"]
    if dataset.format == "yolo":
        files += [("the class names file", dataset.root / n) for n in NAME_FILES if (dataset.root / n).is_file()]
    for sample in dataset.samples:
        files.append(("an image", sample.image))
        if sample.label is not None:
            files.append(("a label file", sample.label))
    for what, file in files:
        if _real(file) == target:
            return f"is {what} of the dataset {dataset.source or dataset.root}"
    for folder in dataset_folders(dataset):
        real = _real(folder)
        if within(target, real):
            return f"is inside the dataset's folder {folder}"
    return None
