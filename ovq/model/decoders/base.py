"""The decoder protocol: what a model family provides, and what ovq hands it.

This is the contract for third-party families too (import it from :mod:`ovq.decoders`, the stable place):
a class with the attributes and methods of :class:`Decoder`, which ovq instantiates with no arguments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ovq.core.detections import Detections
from ovq.core.errors import ConfigError, ModelError
from ovq.core.geometry import ResizeInfo, nms, scale_boxes

# Decoded confidences may stray this far outside [0, 1] through float rounding (bf16 keeps 8 bits of mantissa).
CONFIDENCE_SLACK = 1e-2


@dataclass(frozen=True)
class SourcePreprocessing:
    """How the *source* model expects its input; ovq builds this into the IR's graph.

    ``color`` is the channel order the network wants ("RGB" or "BGR"); the input is divided by
    ``scale`` after ``mean`` is subtracted (per channel in the network's colour order).
    """

    color: str = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: tuple[float, float, float] = (255.0, 255.0, 255.0)
    resize: str = "letterbox"
    letterbox_center: bool = True
    pad_value: int = 114

    def __post_init__(self) -> None:
        # A zero or non-finite scale converts "fine" and then every output is NaN: refused here, where it is said.
        if str(self.color).upper() not in ("RGB", "BGR"):
            raise ConfigError(f"colour order '{self.color}': expected RGB or BGR")
        for name in ("mean", "scale"):
            values = getattr(self, name)
            if len(values) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise ConfigError(f"{name} {list(values)}: expected three finite numbers, one per channel")
        if any(v == 0 for v in self.scale):
            raise ConfigError(f"scale {list(self.scale)}: a channel divided by 0 has no value")
        if any(v < 0 for v in self.scale):  # converted "fine", and the model saw every pixel with its sign flipped
            raise ConfigError(f"scale {list(self.scale)}: a divisor below 0 flips the channel's sign; expected > 0")
        if self.resize not in ("letterbox", "stretch"):
            raise ConfigError(f"resize '{self.resize}': expected letterbox or stretch")
        if not 0 <= int(self.pad_value) <= 255:
            raise ConfigError(f"pad value {self.pad_value}: expected a pixel value from 0 to 255")


def check_thresholds(conf: float | None = None, iou: float | None = None) -> None:
    """:class:`ConfigError` for a confidence or IoU threshold outside [0, 1] (NaN too: it would turn NMS off)."""
    for name, value in (("conf", conf), ("iou", iou)):
        if value is not None and not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"{name} {value}: expected a number from 0 to 1")


def nms_options_refused(family: str, decoder: Any, *, iou: float | None, agnostic: bool | None) -> None:
    """:class:`ConfigError` for an IoU threshold or class-agnostic NMS given for a family that runs no NMS (its
    decoder's ``no_nms`` says why): the option would change nothing, which a user who set it would not expect.
    The message starts with the option's Python name (``iou``, ``agnostic_nms``), for the CLI to name its flag."""
    why = getattr(decoder, "no_nms", "")
    if not why:
        return
    said = f"ovq runs no NMS for family '{family}' ({why}), so"
    if iou is not None:
        raise ConfigError(f"iou {iou:g}: {said} an IoU threshold changes nothing; leave it out")
    if agnostic:
        raise ConfigError(f"agnostic_nms: {said} class-agnostic NMS changes nothing; leave it out")


@dataclass(frozen=True)
class DecodeParams:
    input_size: tuple[int, int]
    conf_threshold: float
    iou_threshold: float
    max_det: int = 300
    max_nms: int = 30000
    agnostic: bool = False  # NMS across classes: one box per object whatever its class
    classes: tuple[int, ...] | None = None  # keep only these class ids (None: every class)
    # the raw label a model's output reserves for the background (ModelInfo.background_id); None: none
    background_id: int | None = None


@dataclass(frozen=True)
class ModelFacts:
    """What ovq knows about a model when it asks a family whether the model is one of its own.

    ``output_shapes``: the static shape of every output, in the model's output order.
    ``input_size``: (height, width) of the image input.
    ``metadata``: what the exporter wrote about the model, as strings: ONNX ``metadata_props`` (Ultralytics:
    ``task``, ``head``, ``end2end``, ``stride``, ``imgsz``; YOLOv5: ``stride``), Ultralytics' ``metadata.yaml``,
    OpenVINO Model API ``model_info`` (``model_type``). Empty when the model says nothing.
    ``graph``: the ``openvino.Model`` itself, for families told apart by their graph; ``None`` when only the
    shapes are known (then a family that needs the graph to be sure must not claim the model).
    ``output_names``: each output's tensor name, in order (a served model's as its server lists them); empty when
    not known.
    """

    output_shapes: tuple[tuple[int, ...], ...]
    input_size: tuple[int, int]
    metadata: Mapping[str, str] = field(default_factory=dict)
    graph: Any = None
    output_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_shapes", tuple(tuple(int(d) for d in s) for s in self.output_shapes))
        object.__setattr__(self, "input_size", (int(self.input_size[0]), int(self.input_size[1])))
        object.__setattr__(self, "output_names", tuple(str(n) for n in self.output_names))

    @property
    def single_output(self) -> tuple[int, ...] | None:
        """The shape of the only output, or ``None`` when the model has several (or none)."""
        return self.output_shapes[0] if len(self.output_shapes) == 1 else None


class Decoder(Protocol):
    """A model family: how it wants its input, whether a model is one of its own, how to decode its outputs.

    ``family`` is the name stored in converted models (for a plug-in: its entry point's name);
    ``expects`` says in one line which outputs the family takes (shown by ``ovq families`` and in errors).
    ``matches`` must check *every* output's count and shape (and the graph or metadata where shapes alone
    could fit another family): ovq refuses a model two families claim; ``None`` when the shapes fit but only the
    graph could tell and there is none (a served model, whose family its IR named at conversion: taken at its
    word; at conversion ``None`` is no claim). ``num_classes`` is the class count
    the outputs imply, or ``None`` when they do not say. ``decode`` returns detections in original-image
    pixels with confidences in [0, 1]; :func:`finish` does the common tail (threshold, NMS, mapping back).
    Optional: ``background_id(facts)``, the raw label a family's outputs reserve for the background (read from the
    graph at conversion, stored in the IR, handed back as ``DecodeParams.background_id``; see the ``ssd`` family).
    Optional: ``no_nms``, a string saying why the family runs no NMS (its graph does, or its head needs none): ovq
    then refuses an IoU threshold or class-agnostic NMS given for it, which would change nothing.
    Optional: ``ambiguity(facts)``, why ``matches`` could not tell how outputs that may be the family's are laid out
    (``None`` when it could): conversion then says that, not that no family fits (see the ``yolo`` family).
    """

    family: str
    expects: str
    preprocessing: SourcePreprocessing
    default_iou: float

    def matches(self, facts: ModelFacts) -> bool | None: ...

    def num_classes(self, facts: ModelFacts) -> int | None: ...

    def decode(self, outputs: list[np.ndarray], resize: ResizeInfo, params: DecodeParams) -> Detections: ...


def check_confidences(scores: np.ndarray) -> np.ndarray:
    """``scores`` clipped to [0, 1]; :class:`ModelError` when any is NaN or clearly outside [0, 1].

    Confidences outside [0, 1] mean the outputs are not what the family thinks they are (raw logits, a
    different layout): that is an error, never an output.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if scores.size == 0:
        return scores
    lo, hi = float(scores.min()), float(scores.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -CONFIDENCE_SLACK or hi > 1 + CONFIDENCE_SLACK:
        nan = int(np.count_nonzero(~np.isfinite(scores)))
        finite = scores[np.isfinite(scores)]
        span = f"{float(finite.min()):.3g}..{float(finite.max()):.3g}" if finite.size else "none finite"
        raise ModelError(
            f"decoded confidences {span}{f' ({nan} not finite)' if nan else ''} are not in [0, 1]: "
            "the outputs do not fit this family"
        )
    return scores.clip(0.0, 1.0)


def finish(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    class_id: np.ndarray,
    resize: ResizeInfo,
    params: DecodeParams,
    *,
    run_nms: bool = True,
) -> Detections:
    """Check the confidences, threshold, keep the wanted classes and the top ``max_nms`` candidates, NMS
    (class-aware unless ``params.agnostic``), map boxes to the original image."""
    scores = check_confidences(scores)
    keep = scores >= params.conf_threshold
    if params.classes is not None:
        keep &= np.isin(class_id, params.classes)
    boxes_xyxy, scores, class_id = boxes_xyxy[keep], scores[keep], class_id[keep]
    if not np.isfinite(boxes_xyxy).all():
        raise ModelError("decoded boxes are not finite: the outputs do not fit this family")
    if len(scores) > params.max_nms:
        top = np.argpartition(-scores, params.max_nms)[: params.max_nms]
        boxes_xyxy, scores, class_id = boxes_xyxy[top], scores[top], class_id[top]
    if run_nms:
        classes = None if params.agnostic else class_id
        idx = nms(boxes_xyxy, scores, classes, iou_threshold=params.iou_threshold, max_det=params.max_det)
    else:
        idx = np.argsort(-scores, kind="stable")[: params.max_det]
    return Detections(
        xyxy=scale_boxes(boxes_xyxy[idx], resize),
        confidence=scores[idx],
        class_id=class_id[idx],
    )
