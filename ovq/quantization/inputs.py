"""The images quantization works on: the calibration split, the validation split, each read once.

Validation images are decoded and letterboxed once and reused for every validation NNCF asks for; accuracy is
measured only on a labelled validation split whose classes match the model and that shares no image with the
calibration split. Without a budget (``max_drop``) an unusable validation split only means no accuracy in the
report; with one it is an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from ovq.core.errors import DatasetError
from ovq.core.geometry import ResizeInfo
from ovq.data.datasets import Dataset, load_dataset
from ovq.data.images import read_image
from ovq.evaluation.accuracy import check_dataset, predict_samples
from ovq.evaluation.metrics import MapResult, coco_map
from ovq.model.detector import Detector
from ovq.quantization.options import QuantizeOptions

logger = logging.getLogger(__name__)


@dataclass
class QuantizeInputs:
    """Calibration tensors, and the validation split with its model inputs (``val`` is ``None`` when accuracy
    is not measured)."""

    calib: Dataset
    calib_tensors: list[np.ndarray]
    val: Dataset | None = None
    val_inputs: dict[Path, tuple[np.ndarray, ResizeInfo]] = field(default_factory=dict)

    def score(self, compiled: ov.CompiledModel, detector: Detector, *, conf: float, progress: bool | str = False,
              per_image: bool = False) -> MapResult:
        """COCO mAP of ``compiled`` (any compilation of the model ``detector`` describes) on the validation split."""
        assert self.val is not None, "no validation split to score on"
        preds = predict_samples(compiled, detector, self.val.samples, conf=conf, progress=progress,
                                preprocessed=self.val_inputs)
        return coco_map(self.val.samples, preds, num_classes=len(detector.labels), per_image=per_image)


def read_inputs(data: Any, model: Any, detector: Detector, options: QuantizeOptions) -> QuantizeInputs:
    """Load both splits of ``data`` for ``detector``'s model, check them, and preprocess what will be used."""
    labels = detector.labels
    calib = load_dataset(data, split=options.calib_split, names=labels)
    val = _validation_split(data, model, labels, options)
    if val is not None:
        _check_disjoint(data, calib, val)
    n_calib = min(options.subset_size, len(calib))
    if len(calib) < options.subset_size:
        logger.warning(
            "calibrating on %d images from %s split '%s', fewer than subset_size %d",
            len(calib), data, calib.split, options.subset_size,
        )
    logger.info("calibration: reading %d images", n_calib)
    tensors = [detector.preprocess(read_image(s.image))[0] for s in calib.samples[:n_calib]]
    inputs = QuantizeInputs(calib=calib, calib_tensors=tensors, val=val)
    if val is not None:
        inputs.val_inputs = {s.image: detector.preprocess(read_image(s.image)) for s in val.samples}
    return inputs


def _validation_split(data: Any, model: Any, labels: list[str], options: QuantizeOptions) -> Dataset | None:
    budget = options.max_drop is not None
    try:
        val = load_dataset(data, split=options.val_split, names=labels)
    except DatasetError:
        if budget:
            raise
        return None
    if not val.labelled:
        if budget:
            raise DatasetError(
                f"{data}: split '{options.val_split}' has no labels; max_drop needs a labelled dataset "
                "(a metric needs labels): use a YOLO dataset or COCO JSON"
            )
        return None
    try:
        check_dataset(val, labels, model)
    except DatasetError as exc:
        if budget:
            raise
        logger.warning("accuracy not measured: %s", exc)
        return None
    return val


def _check_disjoint(data: Any, calib: Dataset, val: Dataset) -> None:
    calib_files = {Path(s.image).resolve() for s in calib.samples}
    shared = [s.image for s in val.samples if Path(s.image).resolve() in calib_files]
    if shared:
        raise DatasetError(
            f"{data}: calibration split '{calib.split}' and validation split '{val.split}' share "
            f"{len(shared)} images (e.g. {Path(shared[0]).name}); validate on images not used to calibrate"
        )
