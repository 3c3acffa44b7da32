"""The images quantization works on: the calibration split, the validation split, the held-out images, each
read once.

Validation images are decoded and letterboxed once and reused for every validation NNCF asks for; accuracy is
measured only on a labelled validation split whose classes match the model and that shares no image with the
calibration split. Without a budget (``max_drop``) an unusable validation split only means no accuracy in the
report; with one it is an error. Held-out images (``holdout``: a share of the validation split, see
:mod:`ovq.quantization.holdout`; ``test_split``: a split of their own) must be labelled and share no image with
the others; they are scored once, at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from ovq.core.errors import ClassMismatch, DatasetError, SplitNotFound
from ovq.core.geometry import ResizeInfo
from ovq.data.datasets import Dataset, load_dataset
from ovq.data.images import read_image
from ovq.evaluation.accuracy import dataset_classes, fit_dataset, predict_samples
from ovq.evaluation.metrics import MapResult, coco_map
from ovq.model.detector import Detector
from ovq.quantization.holdout import hold_out
from ovq.quantization.options import QuantizeOptions

logger = logging.getLogger(__name__)


@dataclass
class QuantizeInputs:
    """Calibration tensors, and the validation split with its model inputs (``val`` is ``None`` when accuracy
    is not measured)."""

    calib: Dataset
    calib_tensors: list[np.ndarray]
    val: Dataset | None = None
    val_inputs: dict[Path, tuple[np.ndarray, ResizeInfo]] = field(default_factory=dict)  # validation and held out
    holdout: Dataset | None = None  # images nothing in quantization sees, scored once at the end
    holdout_source: str = ""  # where they came from, in words

    def score(self, compiled: ov.CompiledModel, detector: Detector, *, conf: float, progress: bool | str = False,
              per_image: bool = False, held_out: bool = False) -> MapResult:
        """COCO mAP of ``compiled`` (any compilation of the model ``detector`` describes) on the validation split,
        or with ``held_out`` on the held-out images."""
        dataset = self.holdout if held_out else self.val
        assert dataset is not None, "no labelled images to score on"
        preds = predict_samples(compiled, detector, dataset.samples, conf=conf, progress=progress,
                                preprocessed=self.val_inputs, classes=dataset_classes(dataset))
        return coco_map(dataset.samples, preds, num_classes=len(detector.labels), per_image=per_image,
                        names=detector.labels)


def read_inputs(data: Any, model: Any, detector: Detector, options: QuantizeOptions) -> QuantizeInputs:
    """Load both splits of ``data`` for ``detector``'s model, check them, and preprocess what will be used."""
    labels = detector.labels
    # calibration takes the images only: a YOLO folder naming no classes is not bounded by the model's (a person
    # detector calibrates on coco128's images whatever their labels say)
    calib = load_dataset(data, split=options.calib_split)
    val = _validation_split(data, model, labels, options, calib)
    if val is not None:
        _check_disjoint(data, calib, val, ("calibration", "validation"))
    holdout, holdout_source = None, ""
    if options.holdout is not None:
        if val is None:
            raise DatasetError(f"{data}: holdout needs a labelled validation split ('{options.val_split}') to hold "
                               "images out of")
        parts = hold_out(val, options.holdout, options.advanced.holdout_seed, data)
        val, holdout, holdout_source = parts.kept, parts.held, parts.source
    elif options.test_split is not None:
        if calib.format == "coco":
            raise DatasetError(_one_split(data, calib, "test_split needs test images"))
        holdout = _test_split(data, model, labels, options.test_split)
        _check_disjoint(data, calib, holdout, ("calibration", "test"))
        if val is not None:
            _check_disjoint(data, val, holdout, ("validation", "test"))
        holdout_source = f"split '{holdout.split}' ({len(holdout)} images), not used to calibrate or validate"
    n_calib = min(options.subset_size, len(calib))
    if len(calib) < options.subset_size:
        logger.warning(
            "calibrating on %d images from %s split '%s', fewer than subset_size %d",
            len(calib), data, calib.split, options.subset_size,
        )
    logger.info("calibration: reading %d images", n_calib)
    tensors = [detector.preprocess(read_image(s.image))[0] for s in spread_over(calib.samples, n_calib)]
    inputs = QuantizeInputs(calib=calib, calib_tensors=tensors, val=val, holdout=holdout,
                            holdout_source=holdout_source)
    scored = [*(val.samples if val is not None else []), *(holdout.samples if holdout is not None else [])]
    inputs.val_inputs = {s.image: detector.preprocess(read_image(s.image)) for s in scored}
    return inputs


def spread_over(samples: Sequence[Any], n: int) -> list[Any]:
    """``n`` of ``samples`` evenly spaced through them, first included (all when ``n >= len``), in order.

    The first ``n`` of a sorted set were one camera's (images/val/cam1/...) or the first seconds of a video's frames
    (frame_00001.jpg...), consecutive frames nearly alike: a calibration that saw one scene of the many deployed."""
    total = len(samples)
    if n >= total:
        return list(samples)
    return [samples[i * total // n] for i in range(n)]


def _test_split(data: Any, model: Any, labels: list[str], split: str) -> Dataset:
    test = load_dataset(data, split=split, names=labels)
    if not test.labelled:
        raise DatasetError(f"{data}: test split '{split}' has no labels; a held-out score needs labelled images")
    return fit_dataset(test, labels, model)


def _one_split(data: Any, calib: Dataset, needs: str) -> str:
    return (f"{data}: a COCO JSON holds one split ('{calib.split}'), which calibrates; {needs} of their own: give a "
            "dataset YAML or a folder with images/<split> and labels/<split>")


def _validation_split(data: Any, model: Any, labels: list[str], options: QuantizeOptions,
                      calib: Dataset) -> Dataset | None:
    budget = options.max_drop is not None
    if calib.format == "coco":  # whatever split is asked, the same file: its images cannot validate themselves
        needs = "max_drop" if budget else "holdout" if options.holdout is not None else "val_split"
        if budget or options.holdout is not None or options.val_split != QuantizeOptions.val_split:
            raise DatasetError(_one_split(data, calib, f"{needs} needs validation images"))
        logger.info("%s: a COCO JSON holds one split ('%s'), which calibrates; accuracy is not measured", data,
                    calib.split)
        return None
    try:
        val = load_dataset(data, split=options.val_split, names=labels)
    except ClassMismatch as exc:  # labels of classes the model has not: no mAP to measure (with a budget: an error)
        if budget:
            raise
        logger.warning("accuracy not measured: %s", exc)
        return None
    except SplitNotFound:
        # without a budget accuracy is measured only where the data has labelled validation images: a calibration
        # folder with no 'val' is fine, but a split the user named must be there. A split that is there but
        # corrupt is refused like any bad data (it was once quietly skipped: "0 images", every mAP n/a).
        if budget or options.val_split != QuantizeOptions.val_split:
            raise
        logger.info("%s: no '%s' split, so accuracy is not measured", data, options.val_split)
        return None
    if not val.labelled:
        if budget:
            raise DatasetError(
                f"{data}: split '{options.val_split}' has no labels; max_drop needs a labelled dataset "
                "(a metric needs labels): use a YOLO dataset or COCO JSON"
            )
        return None
    try:
        val = fit_dataset(val, labels, model)
    except DatasetError as exc:
        if budget:
            raise
        logger.warning("accuracy not measured: %s", exc)
        return None
    return val


def _check_disjoint(data: Any, used: Dataset, checked: Dataset, roles: tuple[str, str]) -> None:
    """``checked`` (validation or test images) shares no image with ``used`` (calibration or validation)."""
    used_files = {Path(s.image).resolve() for s in used.samples}
    shared = [s.image for s in checked.samples if Path(s.image).resolve() in used_files]
    if shared:
        raise DatasetError(
            f"{data}: {roles[0]} split '{used.split}' and {roles[1]} split '{checked.split}' share {len(shared)} "
            f"images (e.g. {Path(shared[0]).name}); {roles[1]} images must be ones the {roles[0]} did not use"
        )
