"""A compiled detector: resize in Python, preprocessing in the graph, decoding per family."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from ovq.core.detections import Detections
from ovq.core.errors import OvqError
from ovq.core.geometry import ResizeInfo, letterbox, stretch
from ovq.core.metadata import ModelInfo
from ovq.model.conversion import prepare
from ovq.model.decoders import DecodeParams, get_decoder
from ovq.runtime.compilation import compile_model, execution_precision, hint_config, new_core, precision_config
from ovq.runtime.cpu import int8_saturation_warning

logger = logging.getLogger(__name__)


def load(model: str | Path | ov.Model, *, core: ov.Core | None = None, **convert_options: Any) -> tuple[ov.Model, ModelInfo]:
    """An ovq model and its info from a folder, ``.xml``, ``.onnx`` or ``.pt`` (converted on the fly)."""
    if isinstance(model, ov.Model):
        from ovq.core.metadata import read_info

        info = read_info(model)
        if info is None:
            raise OvqError("the ov.Model carries no ovq metadata; convert it with ovq.model.conversion first")
        return model, info
    return prepare(model, core=core, **convert_options)


def compile_config(
    info: ModelInfo, *, precision: str | None = None, hint: str | None = None, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Compile settings: the ones stored in the model, then the explicit precision/hint/config on top."""
    cfg: dict[str, Any] = dict(info.compile_config)
    if precision is not None:
        cfg.pop("INFERENCE_PRECISION_HINT", None)
        cfg.update(precision_config(precision))
    cfg.update(hint_config(hint))
    cfg.update(config or {})
    return cfg


class Detector:
    """Detect objects in BGR images with one compiled model.

    ``detector(image)`` runs synchronously; ``preprocess``/``postprocess`` let an async pipeline put
    ``compiled`` (or an ``AsyncInferQueue`` over it) in between.
    """

    def __init__(
        self,
        model: str | Path | ov.Model,
        *,
        device: str = "CPU",
        conf: float | None = None,
        iou: float | None = None,
        agnostic_nms: bool | None = None,
        precision: str | None = None,
        hint: str | None = None,
        config: dict[str, Any] | None = None,
        core: ov.Core | None = None,
        cache: bool = True,
    ) -> None:
        self.core = core or new_core()
        self.model, self.info = load(model, core=self.core)
        self.decoder = get_decoder(self.info.family)
        self.device = device
        self.config = compile_config(self.info, precision=precision, hint=hint, config=config)
        self.compiled = compile_model(self.model, device, config=self.config, core=self.core, cache=cache)
        self.params = DecodeParams(
            input_size=self.info.input_size,
            conf_threshold=self.info.conf_threshold if conf is None else float(conf),
            iou_threshold=self.info.iou_threshold if iou is None else float(iou),
            max_det=self.info.max_det,
            agnostic=self.info.agnostic_nms if agnostic_nms is None else bool(agnostic_nms),
        )
        self._request: ov.InferRequest | None = None
        saturation = int8_saturation_warning(self.info.quantization, device)
        if saturation:
            logger.warning("%s: %s", self.info.source or "model", saturation)
        logger.info(
            "compiled %s (%s) on %s, inference precision %s",
            self.info.source or "model", self.info.family, device, self.inference_precision,
        )

    @property
    def labels(self) -> list[str]:
        return self.info.labels

    @property
    def inference_precision(self) -> str:
        return execution_precision(self.compiled)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, ResizeInfo]:
        """The model input (u8 NHWC, batch 1) for a BGR image, and how it was resized."""
        if image is None or image.ndim != 3 or image.shape[2] != 3:
            shape = None if image is None else image.shape
            raise ValueError(f"expected a BGR image of shape (H, W, 3), got {shape}")
        if self.info.resize == "letterbox":
            resized, rinfo = letterbox(
                image, self.info.input_size, pad_value=self.info.pad_value, center=self.info.letterbox_center
            )
        else:
            resized, rinfo = stretch(image, self.info.input_size)
        return np.ascontiguousarray(resized[None]), rinfo

    def postprocess(self, outputs: list[np.ndarray], rinfo: ResizeInfo, *, conf: float | None = None) -> Detections:
        params = self.params
        if conf is not None:
            params = replace(params, conf_threshold=float(conf))
        return self.decoder.decode(outputs, rinfo, params)

    def outputs_of(self, request: ov.InferRequest) -> list[np.ndarray]:
        return [request.get_output_tensor(i).data.copy() for i in range(len(self.compiled.outputs))]

    def __call__(self, image: np.ndarray, *, conf: float | None = None) -> Detections:
        tensor, rinfo = self.preprocess(image)
        if self._request is None:
            self._request = self.compiled.create_infer_request()
        self._request.infer({0: tensor})
        return self.postprocess(self.outputs_of(self._request), rinfo, conf=conf)

    def async_queue(self, jobs: int = 0, callback: Callable[[ov.InferRequest, Any], None] | None = None) -> ov.AsyncInferQueue:
        """An ``AsyncInferQueue`` over the compiled model (``jobs=0``: the device's optimal count)."""
        queue = ov.AsyncInferQueue(self.compiled, jobs)
        if callback is not None:
            queue.set_callback(callback)
        return queue
