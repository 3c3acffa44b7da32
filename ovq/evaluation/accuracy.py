"""``ovq eval``: COCO mAP of a model on a labelled dataset, with asynchronous inference.

:func:`predict_samples` runs an ``AsyncInferQueue`` over any compiled model (the detector's, or the one
NNCF compiles while it validates) with image decoding and postprocessing on worker threads, so all
three overlap; :func:`ovq.evaluation.metrics.coco_map` scores the results with pycocotools.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from ovq.core.detections import Detections
from ovq.core.errors import ClassMismatch, ConfigError, DatasetError
from ovq.core.fileio import check_output_file, is_stream, write_text_atomic
from ovq.core.geometry import ResizeInfo
from ovq.core.urls import is_serving_url
from ovq.data.datasets import NAMES_FROM_MODEL, Dataset, Sample, load_dataset
from ovq.data.footprint import dataset_clash
from ovq.data.images import read_image
from ovq.data.yolo_labels import NAME_FILES
from ovq.evaluation.metrics import MAX_DETS, MapResult, coco_map, top_k
from ovq.model.decoders.base import check_thresholds
from ovq.model.detector import Detector, load
from ovq.runtime.inference import InferQueue
from ovq.serving.remote import RemoteDetector, open_detector

logger = logging.getLogger(__name__)

DEFAULT_CONF = 0.001  # COCO evaluation keeps nearly everything; the 100 best per image are scored

__all__ = [
    "DEFAULT_CONF",
    "EvalResult",
    "MapResult",
    "coco_map",
    "coco_results",
    "evaluate",
    "predict_samples",
]


@dataclass
class EvalResult:
    """What ``ovq eval`` measured. ``precision`` is the inference precision the device actually used."""

    map50_95: float
    map50: float
    per_class: dict[str, float]
    images: int
    seconds: float
    device: str
    precision: str
    model: str
    data: str
    split: str
    boxes: int = 0
    conf: float = DEFAULT_CONF
    extra: dict[str, Any] = field(default_factory=dict)


def progress_bar(total: int, progress: bool | str, unit: str = "img"):
    """A tqdm bar on stderr, off when ``progress`` is False or stderr is not a terminal."""
    from tqdm import tqdm

    desc = progress if isinstance(progress, str) else None
    enabled = bool(progress) and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, leave=False)


def predict_samples(
    compiled: ov.CompiledModel,
    detector: Detector,
    samples: Sequence[Sample],
    *,
    conf: float = DEFAULT_CONF,
    progress: bool | str = True,
    jobs: int = 0,
    preprocessed: Mapping[Path, tuple[np.ndarray, ResizeInfo]] | None = None,
    classes: Sequence[int] | None = None,
) -> list[Detections]:
    """Detections for every sample, in sample order, running ``compiled`` asynchronously.

    ``detector`` supplies preprocessing and decoding; ``compiled`` may be a different compilation of the
    same graph (e.g. NNCF's). ``jobs=0`` uses the device's optimal number of infer requests. Images are
    decoded ahead on a worker thread and outputs decoded on another while the device infers.
    A decoded image whose size differs from the sample's raises :class:`DatasetError`.
    ``preprocessed`` maps image paths to model inputs already made (``detector.preprocess``), so a caller
    that validates the same images many times (accuracy control) decodes them once. ``classes``: keep only these
    class ids (the ones a dataset matched by name labels, :func:`dataset_classes`).
    """
    samples = list(samples)
    results: list[Detections | None] = [None] * len(samples)
    if not samples:
        return []
    n_outputs = len(compiled.outputs)
    errors: list[BaseException] = []
    pending: list[Future] = []
    lock = threading.Lock()
    bar = progress_bar(len(samples), progress)

    def load_one(index: int):
        sample = samples[index]
        if preprocessed is not None and sample.image in preprocessed:
            return preprocessed[sample.image]
        image = read_image(sample.image)
        if image.shape[1] != sample.width or image.shape[0] != sample.height:
            raise DatasetError(
                f"{sample.image}: image is {image.shape[1]}x{image.shape[0]} but the dataset says "
                f"{sample.width}x{sample.height}"
            )
        return detector.preprocess(image)

    def finish_one(index: int, outputs: list[np.ndarray], rinfo) -> None:
        dets = detector.postprocess(outputs, rinfo, conf=conf)
        results[index] = dets if classes is None else dets[np.isin(dets.class_id, classes)]
        with lock:
            bar.update(1)

    try:
        # the detector's own queue when it is the detector's compilation (a served model's runs on its server)
        own = compiled is detector.compiled
        _run_queue(lambda done: detector.async_queue(jobs, done) if own else InferQueue(compiled, jobs, done),
                   samples, load_one, finish_one, n_outputs, errors, pending)
    finally:
        bar.close()
    if errors:
        raise errors[0]
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:  # pragma: no cover - would mean a lost callback
        raise RuntimeError(f"predict_samples: no result for {len(missing)} samples (first {samples[missing[0]].image})")
    return results  # type: ignore[return-value]


def _run_queue(make_queue, samples, load_one, finish_one, n_outputs, errors, pending) -> None:
    """Decode ahead on one thread, infer on ``make_queue(callback)``'s requests, postprocess on another thread;
    keep order by index. The queue is closed here (an :class:`InferQueue` waits until OpenVINO let go of the
    callback)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ovq-load") as loader, ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="ovq-post"
    ) as post:

        def on_done(request: ov.InferRequest, userdata: tuple[int, Any]) -> None:
            try:
                index, rinfo = userdata
                outputs = [request.get_output_tensor(i).data.copy() for i in range(n_outputs)]
                pending.append(post.submit(finish_one, index, outputs, rinfo))
            except Exception as exc:  # noqa: BLE001 - re-raised below; it must not vanish in OpenVINO's thread
                errors.append(exc)

        queue = make_queue(on_done)
        ahead = len(queue) + 2
        loads: collections.deque[Future] = collections.deque(
            loader.submit(load_one, i) for i in range(min(ahead, len(samples)))
        )
        try:
            for index in range(len(samples)):
                tensor, rinfo = loads.popleft().result()
                nxt = index + len(loads) + 1
                if nxt < len(samples):
                    loads.append(loader.submit(load_one, nxt))
                if errors:
                    break
                queue.start_async({0: tensor}, (index, rinfo))
        finally:
            queue.close()
            for f in loads:
                f.cancel()
        for f in pending:
            f.result()


def coco_results(
    samples: Sequence[Sample],
    predictions: Sequence[Detections],
    *,
    category_ids: Sequence[int] | Mapping[int, int] | None = None,
) -> list[dict[str, Any]]:
    """COCO result records of what is scored (the 100 best per image).

    Samples from a COCO JSON keep its image ids (``Sample.coco_id``), and with its ``category_ids`` (one per class
    index, ``Dataset.extra``) the records load against that JSON (pycocotools' ``loadRes``). Otherwise ``image_id``
    is the image file's stem (as an int when it is all digits, which matches COCO's own ids); when two images share
    a stem (``a.jpg`` and ``a.png``, or one name in two folders), every image is named by its path below the images'
    common folder instead, so no two images share an id; ``category_id`` is the contiguous class index. ``bbox``
    ``[x, y, w, h]`` is in original-image pixels.
    """
    ids: list[int | str]
    coco_ids = [s.coco_id for s in samples]
    if samples and None not in coco_ids:
        ids = [int(i) for i in coco_ids if i is not None]
    else:
        ids = [int(s.image.stem) if s.image.stem.isdigit() else s.image.stem for s in samples]
        if len(set(ids)) < len(ids):
            root = Path(os.path.commonpath([str(s.image.parent) for s in samples]))
            ids = [s.image.relative_to(root).as_posix() for s in samples]
            logger.warning("--save-json: images share file stems; image_id is each image's path below %s", root)
    records = []
    for image_id, dets in zip(ids, predictions, strict=True):
        dets = top_k(dets, MAX_DETS)
        for box, cls, score in zip(dets.xyxy.tolist(), dets.class_id.tolist(), dets.confidence.tolist()):
            records.append(
                {
                    "image_id": image_id,
                    "category_id": int(cls) if category_ids is None else int(category_ids[cls]),
                    "bbox": [round(box[0], 2), round(box[1], 2), round(box[2] - box[0], 2), round(box[3] - box[1], 2)],
                    "score": round(float(score), 5),
                }
            )
    return records


def evaluate(
    model: str | Path | Detector | RemoteDetector,
    data: str | Path | Dataset,
    *,
    split: str = "val",
    conf: float = DEFAULT_CONF,
    device: str = "CPU",
    precision: str | None = None,
    save_json: str | Path | None = None,
    progress: bool | str = True,
    images: str | Path | None = None,
    outputs: Mapping[str, str | Path | None] | None = None,
) -> EvalResult:
    """COCO mAP50-95 / mAP50 / per-class AP of ``model`` on one split of ``data``.

    ``model`` is a model path (folder, ``.xml``, ``.onnx``, ``.pt``) or a :class:`Detector` (then ``device``
    and ``precision`` are its own). ``precision``: ``None`` uses the model's stored compile settings, else
    the device default; ``default``/``f32``/``bf16`` override. ``save_json`` writes COCO-format results.
    ``images``: the image folder of a COCO JSON when it is not beside the JSON. Whether ``save_json`` can be
    written is checked before anything loads. ``outputs``: name (a CLI flag) -> file the caller writes after this;
    ``save_json`` and each of them are refused (:class:`ConfigError`) when they are a file of the dataset or inside
    its folders, before any inference.
    """
    start = time.perf_counter()
    check_thresholds(conf)  # 1.5 or NaN kept no detection: mAP 0.0000, exit 0
    if save_json is not None:
        check_output_file(save_json)
    if isinstance(model, (Detector, RemoteDetector)) or is_serving_url(model):
        detector = open_detector(model)
        labels = detector.labels
        ov_model = None
    else:
        ov_model, info = load(model)
        labels = info.labels
    dataset = data if isinstance(data, Dataset) else load_dataset(data, split=split, names=labels, images=images)
    _refuse_dataset_outputs(dataset, {"save_json": save_json, **(outputs or {})})
    dataset = fit_dataset(dataset, labels, model)
    if ov_model is not None:
        detector = Detector(ov_model, device=device, precision=precision, hint="throughput")
    logger.info(
        "evaluating on %s, %d images, inference precision %s", device if ov_model is not None else detector.device,
        len(dataset), detector.inference_precision,
    )
    preds = predict_samples(detector.compiled, detector, dataset.samples, conf=conf, progress=progress,
                            classes=dataset_classes(dataset))
    scored = coco_map(dataset.samples, preds, num_classes=len(labels), names=labels)
    if save_json is not None:
        # a COCO JSON's own category ids, so the file scores against it
        records = coco_results(dataset.samples, preds, category_ids=dataset.extra.get("category_ids"))
        write_text_atomic(save_json, json.dumps(records) + "\n")
        logger.info("wrote %s", save_json)
    return EvalResult(
        map50_95=scored.map50_95,
        map50=scored.map50,
        per_class=scored.per_class,
        images=len(dataset),
        seconds=time.perf_counter() - start,
        device=detector.device,
        precision=detector.inference_precision,
        model=str(model) if isinstance(model, (str, Path)) else (detector.info.source or "model"),
        data=str(dataset.source or dataset.root),
        split=dataset.split,
        boxes=dataset.boxes,
        conf=conf,
    )


def _refuse_dataset_outputs(dataset: Dataset, outputs: Mapping[str, str | Path | None]) -> None:
    """A :class:`ConfigError` for the first of ``outputs`` that would land on ``dataset`` (a caller's own name for a
    file, its CLI flag, is listed after ``save_json`` and named in its place)."""
    named = {str(Path(p)): name for name, p in outputs.items() if p is not None}
    for path, name in named.items():
        if is_stream(path):  # /dev/stdout, a FIFO: nothing is replaced
            continue
        clash = dataset_clash(dataset, path)
        if clash is not None:
            raise ConfigError(f"{name} {path}: {clash}; writing there would change the dataset (give a file outside it)")


MODEL_CLASSES = "model_classes"  # Dataset.extra: the model's class ids a dataset matched by name labels
GAP_NAMES = ("n/a", "__background__")  # a model's label for a class id it never predicts (torchvision's COCO gaps)


def fit_dataset(dataset: Dataset, labels: list[str], model: Any) -> Dataset:
    """``dataset`` with class ids that mean the model's classes, or :class:`ClassMismatch` saying why it cannot be.

    The dataset as it is when its names are the model's labels in order, or as many classes named otherwise (a
    warning). Otherwise, when every name of the dataset is one of the model's labels (a COCO JSON of a few of COCO's
    categories, an 80-class model), its classes are matched by name: its class ids become the model's, and only
    those classes are scored (:func:`dataset_classes`; the model's other classes are not labelled there, so their
    detections are neither right nor wrong). Names are compared ignoring case and '_' for ' '."""
    where = dataset.source or dataset.root
    if not dataset.labelled:
        raise DatasetError(f"{where}: split '{dataset.split}' has no labels; evaluation needs labelled images")
    if dataset.boxes == 0:
        raise DatasetError(f"{where}: split '{dataset.split}' has no labelled boxes; mAP is undefined")
    gaps = [n for n in labels if _key(n) in GAP_NAMES]
    if dataset.extra.get(NAMES_FROM_MODEL) and gaps:  # torchvision's COCO slots scored against YOLO ids: garbage
        raise ClassMismatch(
            f"{where}: the dataset names no classes, so its class ids would be the model's, but the model's "
            f"{len(labels)} classes are category slots with {len(gaps)} '{gaps[0]}' gaps (as torchvision's COCO "
            f"weights number COCO's categories), which YOLO class ids do not follow; name the dataset's classes, one "
            f"a line, in {NAME_FILES[0]} beside images/ and labels/ (COCO's 80 for COCO data) and they are matched "
            "to the model's by name")
    ours = [_key(n) for n in dataset.names]
    theirs = [_key(n) for n in labels]
    if ours != theirs:
        by_name = _by_name(ours, theirs)
        if by_name is not None:
            return _renumbered(dataset, labels, by_name, model)
        if len(dataset.names) != len(labels):
            if not labels:  # an SSD IR an earlier ovq converted: its classes are ids
                raise ClassMismatch(f"{where}: the model names no classes, so the dataset's ({_some(dataset.names)}) "
                                    "cannot be matched to its class ids; convert the model again (--labels names them)")
            absent = [n for n in dataset.names if _key(n) not in theirs]
            why = (f"{_some(absent)} {'is' if len(absent) == 1 else 'are'} not among the model's {len(labels)} "
                   f"classes ({_some(labels)})" if absent else
                   "its class names are not each the name of exactly one of the model's classes")
            subset = all(name in ours for name in theirs)  # a person detector and COCO's 80 classes
            hint = (f"; a copy of the dataset labelling only {_some(labels)} would be scored" if subset else "")
            raise ClassMismatch(f"{where}: {why}, so the dataset's {len(dataset.names)} classes cannot be matched to "
                               f"the model's by name (nor by position: the model has {len(labels)}){hint}")
    max_class = max(int(s.class_id.max()) for s in dataset.samples if len(s.class_id))
    if max_class >= len(labels):
        raise ClassMismatch(f"{where}: class {max_class} is out of range for the model's {len(labels)} classes")
    differ = [(i, a, b) for i, (a, b) in enumerate(zip(dataset.names, labels)) if _key(a) != _key(b)]
    if differ:
        i, a, b = differ[0]
        logger.warning(
            "%s: %d class names differ from the model's (first: class %d is '%s' in the data, '%s' in %s)",
            where, len(differ), i, a, b, model,
        )
    return dataset


def dataset_classes(dataset: Dataset | None) -> tuple[int, ...] | None:
    """The model's class ids a dataset matched by name labels (only they are scored), or ``None``: all of them."""
    return None if dataset is None else dataset.extra.get(MODEL_CLASSES)


def _key(name: str) -> str:
    """A class name as compared: case, and '_' for ' ' (Model API's rt_info labels, 'traffic_light'), left aside."""
    return name.lower().replace("_", " ").strip()


def _by_name(ours: list[str], theirs: list[str]) -> list[int] | None:
    """Per dataset class, the model's class of that name; ``None`` unless each name is exactly one model label."""
    if len(set(ours)) != len(ours) or any(theirs.count(name) != 1 for name in ours):
        return None
    return [theirs.index(name) for name in ours]


def _renumbered(dataset: Dataset, labels: list[str], by_name: list[int], model: Any) -> Dataset:
    table = np.asarray(by_name, np.int64)
    samples = [replace(s, class_id=table[s.class_id], crowd_class_id=table[s.crowd_class_id]) for s in dataset.samples]
    extra = {**dataset.extra, MODEL_CLASSES: tuple(by_name)}
    if "category_ids" in dataset.extra:  # --save-json: the JSON's own category id of each model class scored
        extra["category_ids"] = {k: dataset.extra["category_ids"][i] for i, k in enumerate(by_name)}
    logger.info("%s: its %d classes matched to %s's by name (%s); only they are scored",
                dataset.source or dataset.root, len(by_name), model,
                _some([f"{n} = {k}" for n, k in zip(dataset.names, by_name)]))
    return replace(dataset, names=list(labels), samples=samples, extra=extra)


def _some(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(f"'{n}'" if "=" not in n else n for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
