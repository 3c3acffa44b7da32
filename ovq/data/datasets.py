"""Labelled images for calibration and evaluation, from the layouts people actually have.

:func:`load_dataset` accepts

- an Ultralytics dataset YAML (``path``, ``train``/``val``/``test``, ``names``); each split is a folder, a
  ``.txt`` list of images or a list of those; labels are found by replacing ``/images/`` with ``/labels/``;
- a folder with ``images/<split>/`` and ``labels/<split>/`` (YOLO txt, ``class cx cy w h`` normalized);
  ``--split val`` also finds ``images/val2017`` when that is the only folder starting with ``val``;
- a COCO ``instances_*.json`` with its image folder (found at ``images/<split>`` beside the ``annotations``
  folder, or next to the JSON); category ids, sorted, become contiguous class indices 0..K-1;
- a plain folder of images (calibration only: ``labelled=False``).

Every box ends up as ``xyxy`` in original-image pixels. Labels are checked as they are read: a class out
of range, a malformed line or a box outside the image raises :class:`DatasetError` naming the file and
line (or annotation id). A missing label file means a background image. Image sizes come from the file
header (EXIF orientation applied, as OpenCV's decoder does), so no image is decoded here.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ovq.core.errors import ConfigError, DatasetError, SplitNotFound
from ovq.core.yamlio import read_yaml
from ovq.data.images import IMAGE_SUFFIXES, image_files
from ovq.data.layout import NOT_SPLITS
from ovq.data.yolo_labels import NAME_FILES, image_size, label_path_for, parse_yolo_labels, read_text

logger = logging.getLogger(__name__)

MAX_NAME = 200  # characters in a class name (it is drawn on frames and sent in every record)
NAMES_FROM_MODEL = "names_from_model"  # Dataset.extra: a YOLO folder naming no classes took the model's names


@dataclass
class Sample:
    """One image and its ground truth: ``xyxy`` (N, 4) float32 in original-image pixels, ``class_id`` (N,).

    ``crowd_xyxy`` (M, 4) and ``crowd_class_id`` (M,): a COCO JSON's ``iscrowd`` regions, which scoring ignores
    as COCO does (a detection inside one is neither right nor wrong); they are not boxes to find. ``coco_id``: the
    image's id in its COCO JSON (``None`` for other layouts). ``label``: its YOLO label file (there or not)."""

    image: Path
    xyxy: np.ndarray
    class_id: np.ndarray
    width: int
    height: int
    crowd_xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    crowd_class_id: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    coco_id: int | None = None
    label: Path | None = None

    def __post_init__(self) -> None:
        self.image = Path(self.image)
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        self.crowd_xyxy = np.asarray(self.crowd_xyxy, dtype=np.float32).reshape(-1, 4)
        self.crowd_class_id = np.asarray(self.crowd_class_id, dtype=np.int64).reshape(-1)
        if len(self.class_id) != len(self.xyxy) or len(self.crowd_class_id) != len(self.crowd_xyxy):
            raise ValueError(
                f"Sample {self.image}: {len(self.xyxy)} boxes but {len(self.class_id)} class ids "
                f"({len(self.crowd_xyxy)} crowd regions, {len(self.crowd_class_id)} crowd class ids)"
            )


@dataclass
class Dataset:
    """One split of a dataset. ``labelled`` is False for a plain image folder (calibration only)."""

    root: Path
    split: str
    names: list[str]
    samples: list[Sample]
    labelled: bool
    format: str = "yolo"  # yolo | yaml | coco | images
    source: Path | None = None  # what was passed (folder, YAML or JSON file)
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def boxes(self) -> int:
        return int(sum(len(s.class_id) for s in self.samples))

    def describe(self) -> str:
        kind = {"yolo": "YOLO folder", "yaml": "Ultralytics YAML", "coco": "COCO JSON", "images": "image folder"}
        return (
            f"{self.source or self.root} ({kind.get(self.format, self.format)}, split {self.split}, "
            f"{len(self)} images, {self.boxes} boxes)"
        )


def load_dataset(
    data: str | Path,
    *,
    split: str = "val",
    names: Sequence[str] | None = None,
    images: str | Path | None = None,
) -> Dataset:
    """Load one split of ``data`` (YAML, YOLO folder, COCO JSON or plain image folder).

    ``names``: class names to use when the dataset carries none (a YOLO folder without ``classes.txt``,
    typically the model's labels); they also bound the class ids. Without any names, ids are checked only
    for being non-negative integers and named by number. ``images``: the image folder of a COCO JSON, when
    it is not found beside it. Raises :class:`DatasetError` (one line, naming file and line) on bad data.
    """
    path = Path(data)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if not str(split).strip() or "/" in str(split) or str(split) in (".", ".."):
        raise DatasetError(f"{path}: split '{split}' is not a split name (val, train, test...)")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".yaml", ".yml"):
            ds = _load_yaml(path, split, names)
        elif suffix == ".json":
            ds = _load_coco(path, split, Path(images) if images else None)
        else:
            raise DatasetError(
                f"{path}: not a dataset; expected a dataset YAML, a COCO .json, or a folder of images"
            )
    else:
        ds = _load_folder(path, split, names)
    if not ds.samples:
        raise DatasetError(f"{ds.source}: split '{ds.split}' holds no images")
    logger.info("dataset %s", ds.describe())
    return ds


# --- YOLO txt labels --------------------------------------------------------------------------------


def _yolo_samples(
    images: list[Path], label_for, num_classes: int | None, *, models: bool = False
) -> tuple[list[Sample], int, int]:
    samples: list[Sample] = []
    found = 0
    max_class = -1
    for image in images:
        width, height = image_size(image)
        label = label_for(image)
        if label is not None and label.is_file():
            found += 1
            xyxy, cls = parse_yolo_labels(label, width, height, num_classes, models=models)
            if len(cls):
                max_class = max(max_class, int(cls.max()))
        else:
            xyxy, cls = np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
        samples.append(Sample(image=image, xyxy=xyxy, class_id=cls, width=width, height=height, label=label))
    return samples, found, max_class


def _images_in(folder: Path, *, recursive: bool = False) -> list[Path]:
    return image_files(folder, "**/*" if recursive else "*")


# --- folders --------------------------------------------------------------------------------


def _find_split_dir(parent: Path, split: str) -> Path | None:
    exact = parent / split
    if exact.is_dir():
        return exact
    candidates = sorted(p for p in parent.iterdir() if p.is_dir() and p.name.startswith(split))
    if len(candidates) == 1:
        logger.info("%s: split '%s' taken from folder %s", parent, split, candidates[0].name)
        return candidates[0]
    return None


def _names_file(root: Path) -> list[str] | None:
    for name in NAME_FILES:
        path = root / name
        if path.is_file():
            names = [ln.strip() for ln in read_text(path, "class names file").splitlines()]
            while names and not names[-1]:
                names.pop()
            if not names:
                raise DatasetError(f"{path}: holds no class names")
            if "" in names:  # dropping it moved every later name onto the class before it
                raise DatasetError(f"{path}: line {names.index('') + 1} is blank: class ids follow the lines, so "
                                   "every class needs a name")
            return names
    return None


def _load_folder(root: Path, split: str, names: Sequence[str] | None) -> Dataset:
    images_root = root / "images"
    if images_root.is_dir():
        split_dir = _find_split_dir(images_root, split)
        if split_dir is None:
            if _images_in(images_root):  # images/ and labels/ without split folders
                split_dir = images_root
            else:
                splits = sorted(p.name for p in images_root.iterdir() if p.is_dir())
                raise SplitNotFound(
                    f"{root}: no split '{split}' under images/; found: {', '.join(splits) or 'none'}"
                )
        labels_dir = root / "labels" / split_dir.relative_to(images_root)
        # a split's folders (images/val/cam1/...) belong to it, as in a YAML's split; images/ itself holds the splits
        files = _images_in(split_dir, recursive=split_dir != images_root)
        own_names = _names_file(root)
        class_names = own_names if own_names is not None else (list(names) if names else None)
        if not labels_dir.is_dir():
            logger.warning("%s: no labels folder %s; images are unlabelled", root, labels_dir)
            return Dataset(root, split_dir.name, class_names or [], _unlabelled(files), False, "images", root)
        samples, _, max_class = _yolo_samples(
            files, lambda p: labels_dir / p.relative_to(split_dir).with_suffix(".txt"),
            len(class_names) if class_names else None, models=own_names is None,
        )
        if class_names is None:
            class_names = [str(i) for i in range(max_class + 1)]
        # NAMES_FROM_MODEL: its ids were taken as the model's classes (ovq.evaluation.accuracy.fit_dataset checks that)
        return Dataset(root, split_dir.name, class_names, samples, True, "yolo", root,
                       extra={NAMES_FROM_MODEL: True} if own_names is None and names else {})
    files = _images_in(root)
    if not files:
        if (root / "annotations").is_dir():
            jsons = sorted((root / "annotations").glob("instances_*.json"))
            hint = f"; for COCO JSON pass the file, e.g. {jsons[0]}" if jsons else ""
        else:
            hint = ""
        raise DatasetError(
            f"{root}: no images here and no images/<split>/ folder; expected a YOLO dataset folder, "
            f"a dataset YAML, a COCO JSON or a folder of images{hint}"
        )
    return Dataset(root, split, list(names or []), _unlabelled(files), False, "images", root)


def _unlabelled(files: list[Path]) -> list[Sample]:
    samples = []
    for f in files:
        width, height = image_size(f)
        samples.append(
            Sample(image=f, xyxy=np.zeros((0, 4), np.float32), class_id=np.zeros((0,), np.int64), width=width, height=height)
        )
    return samples


# --- Ultralytics YAML --------------------------------------------------------------------------------


def _load_yaml(path: Path, split: str, fallback_names: Sequence[str] | None) -> Dataset:
    try:
        doc = read_yaml(path)  # bounded: no alias bombs, no deep nesting, no huge values
    except ConfigError as exc:
        raise DatasetError(str(exc)) from None
    if not isinstance(doc, dict):
        raise DatasetError(f"{path}: expected a mapping with path, train, val and names")
    names = _yaml_names(path, doc)
    base = _yaml_text(path, doc, "path")
    try:
        root = path.parent if not base else (Path(base) if Path(base).is_absolute() else path.parent / base)
        if not root.is_dir():
            raise DatasetError(f"{path}: path: dataset folder '{base}' not found at {root}")
    except OSError as exc:
        raise DatasetError(f"{path}: path: {_shorten(base)}: {exc.strerror or exc}") from None
    if split in doc and not isinstance(doc[split], (str, list)) and doc[split] is not None:
        raise DatasetError(f"{path}: {split}: expected a folder, a .txt list or a list of them, got "
                           f"{type(doc[split]).__name__}")
    if split not in doc or doc[split] in (None, "", []):
        # every key naming folders or files is a split (calib: images/calib, as ovq.data.synth writes one)
        splits = sorted((k for k, v in doc.items() if isinstance(k, str) and k not in NOT_SPLITS and v and all(
            isinstance(e, str) and e.strip() for e in (v if isinstance(v, list) else [v]))),
            key=lambda k: ("train", "val", "test", k).index(k))
        raise SplitNotFound(f"{path}: no split '{split}'; the file names: {', '.join(splits) or 'none'}")
    listed = isinstance(doc[split], list)
    entries = [(f"{split}[{i}]" if listed else split, e) for i, e in enumerate(doc[split] if listed else [doc[split]])]
    for key, entry in entries:
        if not isinstance(entry, str) or not entry.strip():
            raise DatasetError(f"{path}: {key}: expected a folder or file name, got {_shorten(repr(entry))}")
    files: list[Path] = []
    for key, entry in entries:
        try:
            files.extend(_split_files(path, key, root, entry))
        except OSError as exc:  # a name too long, a symlink loop, no permission: one line naming the entry
            raise DatasetError(f"{path}: {key}: {_shorten(entry)}: {exc.strerror or exc}") from None
    samples, found, _ = _yolo_samples(files, label_path_for, len(names))
    labelled = found > 0
    if not labelled:
        logger.warning("%s: no label files found for split '%s' (looked beside /labels/); unlabelled", path, split)
    return Dataset(root, split, names, samples, labelled, "yaml", path)


def _split_files(path: Path, key: str, root: Path, entry: str) -> list[Path]:
    """The images one entry of a split names: a folder (searched recursively), a .txt list, or an image."""
    target = Path(entry)
    target = target if target.is_absolute() else root / target
    if target.is_dir():
        found = _images_in(target, recursive=True)
        if not found:
            raise DatasetError(f"{path}: {key}: folder {target} holds no images")
        return found
    if target.is_file() and target.suffix.lower() == ".txt":
        return _image_list(target)
    if target.is_file() and target.suffix.lower() in IMAGE_SUFFIXES:
        return [target]
    raise DatasetError(f"{path}: {key}: '{_shorten(entry)}' not found at {_shorten(str(target))}")


def _shorten(text: str | None, limit: int = 80) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else f"{text[:limit - 20]}...({len(text)} characters)"


def _yaml_text(path: Path, doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise DatasetError(f"{path}: {key}: expected a string, got {_shorten(repr(value))}")
    return value


def _yaml_names(path: Path, doc: dict[str, Any]) -> list[str]:
    raw = doc.get("names")
    if isinstance(raw, dict):
        try:
            keys = sorted(int(k) for k in raw)
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: names: keys must be class indices 0..N-1") from None
        if keys != list(range(len(keys))):
            raise DatasetError(f"{path}: names: indices must be 0..{len(keys) - 1} without gaps")
        values = [raw[k] if k in raw else raw[str(k)] for k in keys]
    elif isinstance(raw, list) and raw:
        values = raw
    else:
        raise DatasetError(f"{path}: missing 'names' (a list, or a mapping index -> name)")
    for i, name in enumerate(values):
        if isinstance(name, bool) or not isinstance(name, (str, int, float)) or not str(name).strip():
            raise DatasetError(f"{path}: names[{i}]: expected a class name, got {_shorten(repr(name))}")
        if len(str(name)) > MAX_NAME:
            raise DatasetError(f"{path}: names[{i}]: a class name of {len(str(name))} characters (at most {MAX_NAME})")
    names = [str(x) for x in values]
    nc = doc.get("nc")
    if nc is not None:
        if isinstance(nc, bool) or not isinstance(nc, int) or nc < 1:
            raise DatasetError(f"{path}: nc: expected the number of classes (an integer >= 1), got {_shorten(repr(nc))}")
        if nc != len(names):
            raise DatasetError(f"{path}: nc: {nc}, but 'names' lists {len(names)} classes")
    return names


def _image_list(listing: Path) -> list[Path]:
    files = []
    for lineno, line in enumerate(read_text(listing, "image list").splitlines(), start=1):
        entry = line.strip()
        if not entry:
            continue
        p = Path(entry)
        p = p if p.is_absolute() else listing.parent / p
        if not p.is_file():
            raise DatasetError(f"{listing}:{lineno}: image '{entry}' not found")
        files.append(p)
    return files


# --- COCO JSON --------------------------------------------------------------------------------

_INSTANCES = re.compile(r"^instances_(.+)$")


def _load_coco(path: Path, split: str, images_dir: Path | None) -> Dataset:
    try:
        doc = json.loads(read_text(path, "COCO JSON"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations", "categories")):
        raise DatasetError(f"{path}: not a COCO instances file (needs 'images', 'annotations' and 'categories' lists)")
    match = _INSTANCES.match(path.stem)
    split_name = match.group(1) if match else split
    cat_ids, names = _coco_categories(path, doc["categories"])
    cat_index = {cat: i for i, cat in enumerate(cat_ids)}
    images: dict[int, dict[str, Any]] = {}
    for img in doc["images"]:
        try:
            image_id, file_name = _coco_id(img["id"]), str(img["file_name"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{path}: image entry {str(img)[:80]} needs an integer 'id' and a 'file_name'") from None
        if image_id in images and str(images[image_id]["file_name"]) != file_name:
            raise DatasetError(f"{path}: image id {image_id} is listed twice ({_shorten(images[image_id]['file_name'])} "
                               f"and {_shorten(file_name)}); its annotations would go to one of them")
        images[image_id] = img
    folder = images_dir or _coco_image_folder(path, split_name, [str(i["file_name"]) for i in images.values()][:3])
    if not folder.is_dir():
        raise DatasetError(f"{path}: image folder {folder} not found")
    boxes: dict[int, list[tuple[float, float, float, float]]] = {k: [] for k in images}
    classes: dict[int, list[int]] = {k: [] for k in images}
    crowd: dict[int, list[tuple[int, tuple[float, float, float, float]]]] = {k: [] for k in images}
    skipped_empty = 0
    for ann in doc["annotations"]:
        aid = ann.get("id", "?") if isinstance(ann, dict) else "?"
        where = f"{path}: annotation id {aid}"
        try:
            image_id = _coco_id(ann["image_id"])
            category = _coco_id(ann["category_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{where}: needs an integer 'image_id' and 'category_id' and a 4-number 'bbox'") from None
        if image_id not in images:
            raise DatasetError(f"{where}: image_id {image_id} is not among the images")
        if category not in cat_index:
            raise DatasetError(f"{where}: category_id {category} is not among the categories")
        if not all(math.isfinite(v) for v in (x, y, w, h)):  # NaN passes every bound check below
            raise DatasetError(f"{where}: bbox [{x:g}, {y:g}, {w:g}, {h:g}] holds a number that is not finite")
        if w < 0 or h < 0:
            raise DatasetError(f"{where}: bbox [{x:g}, {y:g}, {w:g}, {h:g}] has a negative width or height")
        if w == 0 or h == 0:
            skipped_empty += 1
            continue
        img = images[image_id]
        iw, ih = float(img.get("width", 0) or 0), float(img.get("height", 0) or 0)
        tol = 1.0  # a pixel of slack for rounding
        if x < -tol or y < -tol or (iw and x + w > iw + tol) or (ih and y + h > ih + tol):
            raise DatasetError(f"{where}: bbox [{x:g}, {y:g}, {w:g}, {h:g}] is outside the {iw:g}x{ih:g} image")
        crowd_flag = ann.get("iscrowd", 0)
        if crowd_flag not in (0, 1):  # "0" (a string) was taken as crowd
            raise DatasetError(f"{where}: iscrowd {crowd_flag!r}: expected 0 or 1")
        if crowd_flag:  # not an object to find, but a region where detections are not counted (COCO)
            crowd[image_id].append((cat_index[category], (x, y, x + w, y + h)))
            continue
        boxes[image_id].append((x, y, x + w, y + h))
        classes[image_id].append(cat_index[category])
    n_crowd = sum(len(v) for v in crowd.values())
    if n_crowd or skipped_empty:
        logger.info("%s: %d crowd regions (ignored in scoring, as COCO does), %d zero-size annotations skipped",
                    path, n_crowd, skipped_empty)
    samples = []
    for image_id, img in sorted(images.items(), key=lambda kv: str(kv[1]["file_name"])):
        file = folder / str(img["file_name"])
        if not file.is_file():
            raise DatasetError(f"{path}: image {img['file_name']} (id {image_id}) not found in {folder}")
        width, height = int(img.get("width") or 0), int(img.get("height") or 0)
        if width <= 0 or height <= 0:
            width, height = image_size(file)
        xyxy = _clipped(boxes[image_id], width, height)
        crowd_xyxy = _clipped([box for _, box in crowd[image_id]], width, height)
        samples.append(Sample(file, xyxy, np.asarray(classes[image_id], np.int64), width, height, crowd_xyxy,
                              np.asarray([k for k, _ in crowd[image_id]], np.int64), image_id))
    return Dataset(folder, split_name, names, samples, True, "coco", path, extra={"category_ids": cat_ids})


def _coco_id(value: Any) -> int:
    """An id of a COCO JSON: an integer (``3``, ``3.0`` or ``"3"``); ``ValueError`` for ``3.5`` or ``true``, which
    ``int()`` would quietly make ``3`` and ``1`` (another category, another image)."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value)


def _coco_categories(path: Path, categories: list[Any]) -> tuple[list[int], list[str]]:
    """Category ids, sorted, and their names. An id listed twice with the same name counts once; with another name
    it is an error (each id becomes a class index, and a second entry would shift every class after it)."""
    by_id: dict[int, str] = {}
    for cat in categories:
        try:
            cat_id = _coco_id(cat["id"])
            name = str(cat.get("name", cat["id"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DatasetError(f"{path}: every category needs an integer 'id'") from None
        if cat_id in by_id and by_id[cat_id] != name:
            raise DatasetError(f"{path}: category id {cat_id} is listed twice, as '{_shorten(by_id[cat_id])}' and "
                               f"'{_shorten(name)}'")
        by_id[cat_id] = name
    if not by_id:
        raise DatasetError(f"{path}: no categories")
    ids = sorted(by_id)
    return ids, [by_id[i] for i in ids]


def _clipped(boxes: list[tuple[float, float, float, float]], width: int, height: int) -> np.ndarray:
    xyxy = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
    return xyxy


def _coco_image_folder(path: Path, split: str, first_files: list[str]) -> Path:
    parent = path.parent
    candidates = [parent.parent / "images" / split, parent / "images" / split, parent.parent / split, parent / split,
                  parent / "images", parent]
    for folder in candidates:
        if folder.is_dir() and any((folder / f).is_file() for f in first_files):
            return folder
    # a JSON in the working folder ('x.json') has '.' for its parent's parent too: each folder once, all of them
    looked = ", ".join(dict.fromkeys(str(c) for c in candidates))
    raise DatasetError(f"{path}: cannot find its images (looked in {looked}); pass the image folder (--images, or images=)")
