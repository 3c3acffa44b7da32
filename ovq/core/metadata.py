"""Model metadata stored in the IR's rt_info, so every later step needs no model flags."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
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
    ``quantization`` holds provenance written by ``ovq quantize``.
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
    source: str = ""
    compile_config: dict[str, str] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        self.labels = [str(x) for x in self.labels]
        if self.resize not in RESIZE_MODES:
            raise ModelError(f"resize mode '{self.resize}' is not one of {', '.join(RESIZE_MODES)}")

    def label(self, class_id: int) -> str:
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)

    def to_json(self) -> str:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def write_info(model: ov.Model, info: ModelInfo) -> None:
    """Store ``info`` in the model's rt_info (and Model API-style keys for other tools)."""
    model.set_rt_info(info.to_json(), [RT_KEY, "info"])
    model.set_rt_info(info.family, ["model_info", "model_type"])
    model.set_rt_info(" ".join(label.replace(" ", "_") for label in info.labels), ["model_info", "labels"])
    model.set_rt_info(str(info.conf_threshold), ["model_info", "confidence_threshold"])
    model.set_rt_info(str(info.iou_threshold), ["model_info", "iou_threshold"])


def read_info(model: ov.Model) -> ModelInfo | None:
    """The :class:`ModelInfo` stored by ovq, or ``None`` when the IR has none."""
    if not model.has_rt_info([RT_KEY, "info"]):
        return None
    text = model.get_rt_info([RT_KEY, "info"]).astype(str)
    return ModelInfo.from_json(text)
