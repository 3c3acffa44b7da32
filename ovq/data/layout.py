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
from ovq.data.yolo_labels import label_path_for

DATA_SUFFIXES = (*IMAGE_SUFFIXES, ".txt")  # what a dataset's folder holds that load_dataset reads
# keys of an Ultralytics data.yaml that name no split (every other key naming folders or files is one)
NOT_SPLITS = frozenset({"path", "names", "nc", "download", "yaml_file", "channels", "kpt_shape", "flip_idx"})


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


def split_targets(data: Path) -> list[Path]:
    """What the splits of a YOLO ``data.yaml`` name (folders, ``.txt`` image lists, images), resolved as
    :func:`ovq.data.datasets.load_dataset` resolves them (relative to its ``path:``, else to the YAML's folder),
    there or not; ``[]`` for other data or a YAML that cannot be read (loading it reports that)."""
    if data.is_dir() or data.suffix.lower() not in (".yaml", ".yml"):
        return []
    try:
        doc = read_yaml(data)
    except ConfigError:
        return []
    if not isinstance(doc, dict):
        return []
    root = dataset_root(data)
    targets: list[Path] = []
    for key, value in doc.items():
        if not isinstance(key, str) or key in NOT_SPLITS:
            continue
        for entry in value if isinstance(value, list) else [value]:
            if isinstance(entry, str) and entry.strip():
                targets.append(Path(os.path.normpath(root / Path(entry))))  # an absolute entry stays itself
    return targets


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

    What a ``data.yaml``'s splits name outside that folder (``train: /mnt/a/images/train``, a ``.txt`` list of
    images kept elsewhere) counts too, by its absolute path: the folder and its ``labels/`` twin, the list, the
    images it lists and their label files (changed images there were reused without a word).

    Symlinked folders are followed (a dataset's ``images -> /mnt/...``), each real folder once."""
    root = dataset_root(data)
    skipped = os.path.realpath(skip) if skip is not None else None
    entries: list[str] = []
    seen: set[tuple[int, int]] = set()

    def add(path: str, name: str) -> None:
        try:
            info = os.stat(path)
        except OSError:  # removed while walking, or a dangling link: it is no file of the dataset
            return
        entries.append(f"{name}\0{info.st_size}\0{info.st_mtime_ns}")

    def walk(top_folder: Path, named: Path | None) -> None:
        """Every data file below ``top_folder``, named relative to it (``named`` None) or by ``named``/path."""
        for top, dirs, files in os.walk(top_folder, followlinks=True):
            try:
                info = os.stat(top)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) in seen or os.path.realpath(top) == skipped:
                dirs[:] = []
                continue
            seen.add((info.st_dev, info.st_ino))
            rel = os.path.relpath(top, top_folder)
            for name in files:
                if name.lower().endswith(DATA_SUFFIXES):
                    where = os.path.join(rel, name) if named is None else os.path.join(named, rel, name)
                    add(os.path.join(top, name), os.path.normpath(where))

    if data.is_file():
        add(str(data), f"<data>/{data.name}")
    walk(root, None)
    real_root = os.path.realpath(root)
    outside: set[str] = set()

    def add_outside(file: Path) -> None:
        real = os.path.realpath(file)
        if not within(real, real_root) and real not in outside:
            outside.add(real)
            add(str(file), str(file))

    for target in split_targets(data):
        if target.is_dir():
            if not within(os.path.realpath(target), real_root):
                walk(target, target)
                labels = label_path_for(target / "x").parent
                if labels != target and labels.is_dir():
                    walk(labels, labels)
        elif target.is_file():
            add_outside(target)
            listed = [target] if target.suffix.lower() in IMAGE_SUFFIXES else _listed_images(target)
            for image in listed:
                add_outside(image)
                add_outside(label_path_for(image))
    digest = hashlib.sha256()
    for entry in sorted(entries):
        digest.update(entry.encode("utf-8", "surrogateescape") + b"\n")
    return f"{len(entries)} files, sha256:{digest.hexdigest()[:16]}"


def _listed_images(listing: Path) -> list[Path]:
    """The images a ``.txt`` split lists (one a line, relative to the list's folder), none if it cannot be read."""
    if listing.suffix.lower() != ".txt":
        return []
    try:
        lines = listing.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except OSError:
        return []
    return [listing.parent / line.strip() for line in lines if line.strip()]


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
        if folder is not None and within(os.path.realpath(folder), real):
            what = "is the folder of" if os.path.realpath(folder) == real else "holds"
            return (f"{what} the dataset {data}{f' ({named})' if named else ''}: the INT8 model and its report would go in among the data; give a "
                    "folder outside it")
    for folder in (root / "images", root / "labels"):
        if within(real, os.path.realpath(folder)):
            return (f"is inside the dataset's {folder.name} folder {folder}: its files would be read as data; give a "
                    "folder outside it")
    return None


def output_in_image_folder(output: Path, inputs: list[Path]) -> str | None:
    """Why a folder ``output`` cannot take annotated copies of images: it is inside a dataset's ``images/`` or
    ``labels/`` (a folder holding both: the copies became images of the dataset, read by the next eval or
    quantize), or inside an input folder that is itself in an ``images/`` folder (the input is a dataset's split).
    ``None`` for other folders: a plain folder of photos may hold its own ``out/``."""
    real = Path(os.path.realpath(output))
    for folder in (real, *real.parents):
        if folder.name in ("images", "labels") and (folder.parent / "images").is_dir() and (
                folder.parent / "labels").is_dir():
            return (f"is inside the dataset's {folder.name} folder {folder}: the annotated images would be read as its "
                    "data; give a folder outside it")
    for given in inputs:
        top = os.path.realpath(given)
        if os.path.isdir(top) and within(str(real), top) and any(
                f.name == "images" for f in (Path(top), *Path(top).parents)):
            return (f"is inside the input folder {given}, in a dataset's images folder: the annotated images would be "
                    "read as its data; give a folder outside it")
    return None


def within(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or below it (both real paths)."""
    return os.path.commonpath([path, folder]) == folder
