"""Model metadata stored in the IR's rt_info, so every later step needs no model flags."""

from __future__ import annotations

import json
import logging
import numbers
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import openvino as ov

from ovq.core.errors import ModelError

logger = logging.getLogger(__name__)

RT_KEY = "ovq"
RESIZE_MODES = ("letterbox", "stretch")


@dataclass
class ModelInfo:
    """What ovq needs to know to feed and decode a model.

    ``input_size`` is (height, width). ``resize`` is ``letterbox`` (keep ratio, pad with ``pad_value``,
    centred or top-left) or ``stretch``. ``compile_config`` holds the compile settings the model was
    validated with (e.g. ``INFERENCE_PRECISION_HINT``); whoever compiles the model applies them.
    ``quantization`` holds provenance written by ``ovq quantize``. ``background_id`` is the raw class id the
    model's output reserves for the background (SSD ``DetectionOutput``'s ``background_label_id``), ``None`` when
    it reserves none: decoding moves the ids above it down one, so classes are 0..K-1 as in every other family.
    """

    family: str
    labels: list[str]
    input_size: tuple[int, int]
    resize: str = "letterbox"
    pad_value: int = 114
    letterbox_center: bool = True
    conf_threshold: float = 0.25
    iou_threshold: float = 0.45
    agnostic_nms: bool = False
    max_det: int = 300
    background_id: int | None = None
    source: str = ""
    compile_config: dict[str, str] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.family, str) or not self.family:
            raise ModelError(f"family {self.family!r} is not a name")
        if not isinstance(self.labels, (list, tuple)):
            raise ModelError(f"labels {self.labels!r} are not a list")
        size = self.input_size
        if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(_whole(x) and x > 0 for x in size):
            raise ModelError(f"input_size {size!r} is not [height, width] in pixels")
        self.input_size = (int(size[0]), int(size[1]))
        self.labels = [str(x) for x in self.labels]
        if self.resize not in RESIZE_MODES:
            raise ModelError(f"resize mode '{self.resize}' is not one of {', '.join(RESIZE_MODES)}")
        for name in ("conf_threshold", "iou_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
                raise ModelError(f"{name} {value!r} is not a number in [0, 1]")
        if not _whole(self.max_det) or self.max_det < 1:
            raise ModelError(f"max_det {self.max_det!r} is not a whole number of at least 1")
        if self.background_id is not None and (not _whole(self.background_id) or self.background_id < 0):
            raise ModelError(f"background_id {self.background_id!r} is not a class id (a whole number >= 0)")
        self.background_id = None if self.background_id is None else int(self.background_id)
        if not _whole(self.pad_value) or not 0 <= self.pad_value <= 255:
            raise ModelError(f"pad_value {self.pad_value!r} is not a pixel value (0-255)")
        for name in ("compile_config", "quantization", "extra"):
            if not isinstance(getattr(self, name), dict):
                raise ModelError(f"{name} {getattr(self, name)!r} is not a mapping")

    def label(self, class_id: int) -> str:
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)

    def to_json(self) -> str:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        """Read :meth:`to_json`'s text; :class:`ModelError` saying what is wrong when it is not that."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ModelError(f"ovq metadata is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ModelError("ovq metadata is not a JSON object")
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise ModelError(f"ovq metadata lacks {', '.join(missing)}")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except ModelError as exc:
            raise ModelError(f"ovq metadata is corrupt: {exc}") from None


def _whole(value: object) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, numbers.Integral) or isinstance(value, float) and value.is_integer()


def write_info(model: ov.Model, info: ModelInfo) -> None:
    """Store ``info`` in the model's rt_info (and Model API-style keys for other tools)."""
    model.set_rt_info(info.to_json(), [RT_KEY, "info"])
    model.set_rt_info(info.family, ["model_info", "model_type"])
    model.set_rt_info(" ".join(label.replace(" ", "_") for label in info.labels), ["model_info", "labels"])
    model.set_rt_info(str(info.conf_threshold), ["model_info", "confidence_threshold"])
    model.set_rt_info(str(info.iou_threshold), ["model_info", "iou_threshold"])


def read_info(model: ov.Model, where: object = None) -> ModelInfo | None:
    """The :class:`ModelInfo` stored by ovq, or ``None`` when the IR has none; :class:`ModelError` (naming
    ``where``, the model's file, when given) when what is stored is not ovq's metadata."""
    if not model.has_rt_info([RT_KEY, "info"]):
        return None
    text = model.get_rt_info([RT_KEY, "info"]).astype(str)
    try:
        return ModelInfo.from_json(text)
    except ModelError as exc:
        raise ModelError(f"{where}: {exc}" if where is not None else str(exc)) from None
