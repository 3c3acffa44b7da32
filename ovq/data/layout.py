"""Which files make up a dataset on disk, and when they last changed (to tell whether work built on it is stale).

The layouts are those :func:`ovq.data.datasets.load_dataset` reads: a folder, an Ultralytics ``data.yaml``
(whose ``path:`` names the folder), or a COCO JSON (in an ``annotations/`` folder or beside its images).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ovq.core.errors import ConfigError
from ovq.core.yamlio import read_yaml
from ovq.data.images import IMAGE_SUFFIXES

DATA_SUFFIXES = (*IMAGE_SUFFIXES, ".txt")  # what a dataset's folder holds that load_dataset reads


def dataset_root(data: Path) -> Path:
    """The folder whose files make up a dataset given as a folder, a YOLO ``data.yaml`` or a COCO JSON.

    A YAML's ``path:`` (relative to the YAML) when it has one, else the YAML's folder; the folder above
    ``annotations/`` for a COCO JSON in one, else the JSON's folder. A YAML that cannot be read counts as
    having no ``path:``: loading the dataset reports that problem, this only decides what to watch.
    """
    if data.is_dir():
        return data
    if data.suffix.lower() in (".yaml", ".yml"):
        try:
            doc = read_yaml(data)
        except ConfigError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("path"), str) and doc["path"].strip():
            root = Path(os.path.normpath(data.parent / Path(doc["path"]).expanduser()))
            if root.is_dir():
                return root
        return data.parent
    if data.parent.name == "annotations":
        return data.parent.parent
    return data.parent


def newest_mtime(path: Path, *, skip: Path | None = None) -> float:
    """The newest modification time of a file, or of a folder and anything under it but ``skip`` (an output folder
    kept inside a dataset's: its report, written after its model, made the model look older than the data).

    Folder times count too: removing an image from a dataset changes only its folder's time.
    """
    newest = path.stat().st_mtime
    if path.is_file():
        return newest
    skipped = os.path.realpath(skip) if skip is not None else None
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(root, d)) != skipped]
        for name in (*dirs, *files):
            try:
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
            except OSError:  # removed while walking: it no longer counts
                continue
    return newest


def data_fingerprint(data: Path, *, skip: Path | None = None) -> str:
    """A digest of the dataset's files as they are named, sized and dated (their contents are not read): the data
    file itself and every image and ``.txt`` (labels, image lists, class names) below its :func:`dataset_root`, by
    path relative to it, except those under ``skip`` (an output folder kept inside the dataset). Other files there
    are not the dataset's: a pipeline's JSON Lines or video written beside a ``data.yaml`` made every start quantize
    again. A copy made with its times (``cp -p``, a move) reads the same; an image or label added, removed, renamed
    or rewritten, or another dataset, reads otherwise.

    Symlinked folders are followed (a dataset's ``images -> /mnt/...``), each real folder once."""
    root = dataset_root(data)
    skipped = os.path.realpath(skip) if skip is not None else None
    entries: list[str] = []

    def add(path: str, name: str) -> None:
        try:
            info = os.stat(path)
        except OSError:  # removed while walking, or a dangling link: it is no file of the dataset
            return
        entries.append(f"{name}\0{info.st_size}\0{info.st_mtime_ns}")

    if data.is_file():
        add(str(data), f"<data>/{data.name}")
    seen: set[tuple[int, int]] = set()
    for top, dirs, files in os.walk(root, followlinks=True):
        try:
            info = os.stat(top)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in seen or os.path.realpath(top) == skipped:
            dirs[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        rel = os.path.relpath(top, root)
        for name in files:
            if name.lower().endswith(DATA_SUFFIXES):
                add(os.path.join(top, name), os.path.normpath(os.path.join(rel, name)))
    digest = hashlib.sha256()
    for entry in sorted(entries):
        digest.update(entry.encode("utf-8", "surrogateescape") + b"\n")
    return f"{len(entries)} files, sha256:{digest.hexdigest()[:16]}"


def output_in_dataset(output: Path, data: Path, *, named: str = "") -> str | None:
    """Why a folder ``output`` cannot hold a quantized model made from the dataset ``data``: it is the dataset's
    folder or one holding it (``.``, ``/``: the model and its report went in among the data), or inside its
    ``images/`` or ``labels/`` (its sensitivity plot became a calibration image of the next run). ``None`` when
    neither, or when ``data`` is not there (whoever loads it says so). ``named``: where ``data`` was given, said
    after it (``quantize.data``)."""
    if not data.exists():
        return None
    real = os.path.realpath(output)
    root = dataset_root(data)
    for folder in (data if data.is_dir() else None, root):
        if folder is not None and _within(os.path.realpath(folder), real):
            what = "is the folder of" if os.path.realpath(folder) == real else "holds"
            return (f"{what} the dataset {data}{f' ({named})' if named else ''}: the INT8 model and its report would go in among the data; give a "
                    "folder outside it")
    for folder in (root / "images", root / "labels"):
        if _within(real, os.path.realpath(folder)):
            return (f"is inside the dataset's {folder.name} folder {folder}: its files would be read as data; give a "
                    "folder outside it")
    return None


def _within(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or below it (both real paths)."""
    return os.path.commonpath([path, folder]) == folder
