"""``ovq predict``: detections for a few images, as JSON and annotated pictures."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2

from ovq.core.drawing import annotate
from ovq.core.errors import OutputError
from ovq.core.fileio import atomic_output_dir, check_output_dir, write_json_atomic
from ovq.data.images import list_images, read_image
from ovq.data.layout import output_in_image_folder
from ovq.model.detector import Detector
from ovq.serving.remote import RemoteDetector, open_detector

logger = logging.getLogger(__name__)


def predict(
    model: str | Path | Detector | RemoteDetector,
    images: Sequence[str | Path],
    out_dir: str | Path | None = None,
    *,
    conf: float | None = None,
    iou: float | None = None,
    classes: Sequence[int | str] | None = None,
    max_det: int | None = None,
    labels: Sequence[str] | None = None,
    device: str = "CPU",
    precision: str | None = None,
) -> list[dict[str, Any]]:
    """Detect in each image; with ``out_dir`` write ``predictions.json`` and annotated images there.

    ``conf``, ``iou``, ``max_det`` override the model's defaults; ``classes`` keeps only those class ids or
    names; ``labels`` renames the model's classes. With a :class:`Detector`, only ``conf`` applies (the rest
    are the detector's own). Whether ``out_dir`` can be written (a folder, or a place to make one) is checked
    before the model loads. Into a folder an earlier ``predict`` wrote, the annotated images its
    ``predictions.json`` lists and this run does not write are removed as the new result moves in, so the folder
    holds what its ``predictions.json`` says (:func:`_earlier_images`).
    """
    files = list_images(images)
    names = _annotated_names(files)
    if out_dir is not None:
        check_output_dir(out_dir)
        if (why := output_in_image_folder(Path(out_dir), [Path(i) for i in images])) is not None:
            raise OutputError(f"{out_dir}: {why}")
        inputs = {p.resolve() for p in files}
        for name in names:
            if (Path(out_dir) / name).resolve() in inputs:
                raise OutputError(
                    f"{Path(out_dir) / name}: is an input image, and its annotated copy would replace it; "
                    "give another output folder (-o)"
                )
    detector = open_detector(model, device=device, conf=conf, iou=iou, classes=classes, max_det=max_det,
                             labels=labels, precision=precision)
    results: list[dict[str, Any]] = []
    stale = _earlier_images(Path(out_dir), files) if out_dir is not None else []
    if stale:
        logger.info("%s: the earlier run's %d annotated image(s) not made again are removed with it (%s)", out_dir,
                    len(stale), ", ".join(stale[:5]) + (", ..." if len(stale) > 5 else ""))
    with contextlib.ExitStack() as stack:
        # each annotated image goes to the folder's temporary twin as it is made (holding them all until the end took
        # 144 MB an 8000x6000 picture: 2.2 GB for 12); the folder appears only when every image and the JSON are there
        tmp = stack.enter_context(atomic_output_dir(out_dir, remove=stale)) if out_dir is not None else None
        for path, name in zip(files, names, strict=True):
            image = read_image(path)
            dets = detector(image, conf=conf)
            results.append({"file": str(path), **({"annotated": name} if tmp is not None else {}),
                            "detections": dets.to_records(detector.labels)})
            if tmp is not None and not cv2.imwrite(str(tmp / name), annotate(image, dets, detector.labels)):
                # OpenCV says no more than that (a full disk too)
                raise OutputError(f"{Path(out_dir) / name}: cannot write the image (disk full?); nothing was written")
            logger.info("%s: %d detections", path, len(dets))
        if tmp is not None:
            write_json_atomic(tmp / "predictions.json", results)
    return results


def _earlier_images(out_dir: Path, files: Sequence[Path]) -> list[str]:
    """The annotated images an earlier ``predict`` wrote into ``out_dir``, as its ``predictions.json`` lists them
    (``annotated``; before it was recorded, the name each listed ``file`` gets), that are still as it left them:
    plain files not newer than that JSON (one rewritten since is someone's, and stays), none of them an input now.
    A ``predictions.json`` ovq did not write (not a list of records with ``file``) names none."""
    listing = out_dir / "predictions.json"
    try:
        records = json.loads(listing.read_text(encoding="utf-8"))
        written = listing.stat().st_mtime
    except (OSError, ValueError):
        return []
    if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("file"), str) for r in records):
        return []
    names = [r.get("annotated") for r in records]
    if not all(isinstance(n, str) for n in names):
        names = _annotated_names([Path(r["file"]) for r in records])
    inputs = {p.resolve() for p in files}
    stale = []
    for name in names:
        path = out_dir / name
        if Path(name).name != name or not name.endswith(".jpg") or path.resolve() in inputs:
            continue
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime <= written:
                stale.append(name)
    return stale


def _annotated_names(files: Sequence[Path]) -> list[str]:
    """The annotated image's name for each input: its stem as ``.jpg``, numbered when two stems are the same."""
    names: list[str] = []
    for path in files:
        name, n = path.stem + ".jpg", 0
        while name in names:
            n += 1
            name = f"{path.stem}_{n}.jpg"
        names.append(name)
    return names
