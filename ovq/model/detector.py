"""A compiled detector: resize in Python, preprocessing in the graph, decoding per family."""

from __future__ import annotations

import copy
import difflib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import openvino as ov

from ovq.core.detections import Detections
from ovq.core.errors import ConfigError, ModelError, OvqError
from ovq.core.geometry import ResizeInfo, letterbox, stretch, stretch_info, then
from ovq.core.metadata import ModelInfo
from ovq.model.conversion import prepare
from ovq.model.decoders import DecodeParams, get_decoder
from ovq.model.decoders.base import check_thresholds, nms_options_refused
from ovq.model.identify import check_family
from ovq.runtime.compilation import (
    check_device,
    compile_model,
    execution_precision,
    hint_config,
    new_core,
    precision_config,
)
from ovq.runtime.cpu import int8_saturation_warning
from ovq.runtime.inference import InferQueue, WaitingQueue

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


def own_family(decoder: Any) -> bool:
    """Whether ``decoder`` is one of ovq's own families (all end in ``finish()`` or :class:`FinalBoxes`)."""
    return type(decoder).__module__.startswith("ovq.model.decoders.")


def check_max_det(max_det: int | None) -> None:
    if max_det is not None and int(max_det) < 1:
        raise ConfigError(f"max_det {max_det}: expected at least 1")


def decode_params(
    info: ModelInfo, *, conf: float | None = None, iou: float | None = None, agnostic_nms: bool | None = None,
    max_det: int | None = None, classes: Sequence[int | str] | None = None,
) -> DecodeParams:
    """The decoding settings: the model's own (``info``, from its rt_info) unless overridden here; ``iou`` and
    ``agnostic_nms`` refused for a family that runs no NMS (a stored class-agnostic default only warned about)."""
    check_max_det(max_det)
    check_thresholds(conf, iou)
    decoder = get_decoder(info.family)
    nms_options_refused(info.family, decoder, iou=iou, agnostic=agnostic_nms)
    if info.agnostic_nms and agnostic_nms is None and getattr(decoder, "no_nms", ""):
        logger.warning("%s: stores class-agnostic NMS, but family '%s' runs no NMS (%s): it changes nothing",
                       info.source or "the model", info.family, decoder.no_nms)
    return DecodeParams(
        input_size=info.input_size,
        conf_threshold=info.conf_threshold if conf is None else float(conf),
        iou_threshold=info.iou_threshold if iou is None else float(iou),
        max_det=info.max_det if max_det is None else int(max_det),
        agnostic=info.agnostic_nms if agnostic_nms is None else bool(agnostic_nms),
        classes=None if classes is None else class_ids(classes, info.labels),
        background_id=info.background_id,
    )


def class_ids(classes: Sequence[int | str], labels: Sequence[str]) -> tuple[int, ...]:
    """Class ids for ``classes`` given as ids or as names of ``labels`` (Ultralytics' ``classes=[0, 2]``)."""
    ids = []
    for c in classes:
        text = str(c).strip()
        if text.isdigit():
            cid = int(text)
            if labels and cid >= len(labels):
                raise ConfigError(f"classes: class id {cid} is out of range; the model has {len(labels)} classes")
        elif text in labels:
            cid = list(labels).index(text)
        else:
            close = difflib.get_close_matches(text, list(labels), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"classes: the model has no class '{text}'{hint}")
        ids.append(cid)
    if not ids:
        raise ConfigError("classes: give at least one class id or name")
    return tuple(ids)


def _running_on(compiled: ov.CompiledModel, device: str) -> str:
    """`` (running on CPU)`` when ``device`` (AUTO, ``run``'s default, or MULTI...) chose others than it names."""
    try:
        chosen = ",".join(compiled.get_property("EXECUTION_DEVICES"))
    except (RuntimeError, TypeError):
        return ""
    return f" (running on {chosen})" if chosen and chosen != device else ""


class Detector:
    """Detect objects in BGR images with one compiled model.

    ``detector(image)`` runs synchronously; ``preprocess``/``postprocess`` let an async pipeline put
    ``compiled`` (or an ``AsyncInferQueue`` over it) in between. The model's family (built in or from a plug-in)
    is checked against its outputs when it loads. ``conf``, ``iou``, ``agnostic_nms`` and ``max_det`` override
    the model's stored defaults; ``classes`` keeps only those class ids or names; ``labels`` renames the classes.
    ``graph_nms``: NMS in the graph will be asked for (:meth:`with_nms_in_graph`); a family or threshold that cannot
    take it is refused before the model compiles.
    """

    def __init__(
        self,
        model: str | Path | ov.Model,
        *,
        device: str = "CPU",
        conf: float | None = None,
        iou: float | None = None,
        agnostic_nms: bool | None = None,
        classes: Sequence[int | str] | None = None,
        max_det: int | None = None,
        labels: Sequence[str] | None = None,
        precision: str | None = None,
        hint: str | None = None,
        config: dict[str, Any] | None = None,
        core: ov.Core | None = None,
        cache: bool = True,
        graph_nms: bool = False,
    ) -> None:
        check_max_det(max_det)  # before the model loads: a bad option is the first thing to say
        check_thresholds(conf, iou)
        self.core = core or new_core()
        self.model, self.info = load(model, core=self.core, **({"labels": list(labels)} if labels else {}))
        if labels and isinstance(model, ov.Model):
            self.info = replace(self.info, labels=list(labels))
        check_device(device, self.core)  # a missing device is the first thing to say, before the model's fit
        self.decoder = check_family(self.model, self.info, self.info.source or "model")
        # decoding options before compiling: a refused one is said at once
        self.params = decode_params(self.info, conf=conf, iou=iou, agnostic_nms=agnostic_nms, max_det=max_det,
                                    classes=classes)
        if graph_nms:  # asked for NMS in the graph (--nms graph): a family that cannot is said before compiling
            from ovq.model.decoders.graph_nms import supports_graph_nms

            if (why := supports_graph_nms(self.decoder, self.params)) is not None:
                raise ConfigError(f"NMS in the graph: {why}")
        self.device = device
        self.config = compile_config(self.info, precision=precision, hint=hint, config=config)
        self.compiled = compile_model(self.model, device, config=self.config, core=self.core, cache=cache)
        self._cache = cache
        self._request: ov.InferRequest | None = None
        self.source_size: tuple[int, int] | None = None  # (h, w) the graph resizes from; None: Python resizes
        self._source_rinfo: ResizeInfo | None = None
        self.nms_in_graph = False  # True: the model outputs the final boxes (with_nms_in_graph)
        self._variants: dict[tuple[Any, Any], Detector] = {}
        self._variants_lock = threading.Lock()
        saturation = int8_saturation_warning(self.info.quantization, device)
        if saturation:
            logger.warning("%s: %s", self.info.source or "model", saturation)
        logger.info(
            "compiled %s (%s) on %s%s, inference precision %s",
            self.info.source or "model", self.info.family, device, _running_on(self.compiled, device),
            self.inference_precision,
        )

    @property
    def labels(self) -> list[str]:
        return self.info.labels

    @property
    def inference_precision(self) -> str:
        return execution_precision(self.compiled)

    def for_source(self, height: int, width: int) -> Detector:
        """This detector with the resize in the graph, for frames of ``height`` x ``width`` (compiled once per size).

        Its ``preprocess`` hands such a frame to OpenVINO as it is (no Python resize, no copy); a frame of another
        size is first stretched to the variant's size in Python, with the box mapping composed, so boxes stay
        exact. Everything else (decoding, thresholds, labels) is shared with this detector.
        """
        return self._variant((int(height), int(width)), self.nms_in_graph)

    def with_nms_in_graph(self, conf: float | None = None) -> Detector:
        """This detector with decoding, thresholds and NMS appended to the graph (compiled once), so the model
        outputs the final boxes (:mod:`ovq.model.decoders.graph_nms`); ``conf`` overrides the threshold built in.
        :class:`ConfigError` when the family decodes in Python only (see :meth:`why_not_nms_in_graph`)."""
        return self._variant(self.source_size, True, conf)

    def why_not_nms_in_graph(self, conf: float | None = None) -> str | None:
        """Why :meth:`with_nms_in_graph` would fail, or ``None`` when it works."""
        from ovq.model.decoders.graph_nms import supports_graph_nms

        base = self if self.source_size is None and not self.nms_in_graph else self._base
        params = base.params if conf is None else replace(base.params, conf_threshold=float(conf))
        return supports_graph_nms(base.decoder, params)

    def _variant(self, source: tuple[int, int] | None, nms: bool, conf: float | None = None) -> Detector:
        from ovq.model.decoders.graph_nms import FinalBoxes, nms_variant
        from ovq.model.ingraph import resize_variant

        base = self if self.source_size is None and not self.nms_in_graph else self._base
        if nms and conf is None and self.nms_in_graph:
            conf = self.params.conf_threshold  # a resize added to an NMS variant keeps its threshold
        params = base.params if conf is None else replace(base.params, conf_threshold=float(conf))
        if source is None and not nms:
            return base
        key = (source, params if nms else None)
        with base._variants_lock:
            view = base._variants.get(key)
            if view is None:
                model, rinfo = base.model, None
                if source is not None:
                    model, rinfo = resize_variant(model, base.info, source)
                if nms:
                    model = nms_variant(model, base.decoder, params)
                view = copy.copy(base)
                view._base = base
                view.compiled = compile_model(model, base.device, config=base.config, core=base.core, cache=base._cache)
                view.source_size, view._source_rinfo, view._request = source, rinfo, None
                view._warned_size = False
                view.nms_in_graph = nms
                if nms:
                    view.decoder, view.params = FinalBoxes(base.decoder), params
                base._variants[key] = view
                where = "the graph" if source is None else f"the graph from {source[1]}x{source[0]}"
                logger.info("%s: %s in %s", base.info.source or "model",
                            "resizing, decoding and NMS" if source and nms else "decoding and NMS" if nms
                            else "resizing", where)
        return view

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, ResizeInfo]:
        """The model input (u8 NHWC, batch 1) for a BGR image, and how it was resized."""
        if image is None or image.ndim != 3 or image.shape[2] != 3:
            shape = None if image is None else image.shape
            raise ValueError(f"expected a BGR image of shape (H, W, 3), got {shape}")
        if self.source_size is not None:
            return self._preprocess_in_graph(image)
        if self.info.resize == "letterbox":
            resized, rinfo = letterbox(
                image, self.info.input_size, pad_value=self.info.pad_value, center=self.info.letterbox_center
            )
        else:
            resized, rinfo = stretch(image, self.info.input_size)
        return np.ascontiguousarray(resized[None]), rinfo

    def _preprocess_in_graph(self, image: np.ndarray) -> tuple[np.ndarray, ResizeInfo]:
        h, w = self.source_size
        if image.shape[:2] == (h, w):
            return np.ascontiguousarray(image)[None], self._source_rinfo
        if not self._warned_size:  # a live source reconnected at another resolution, say
            self._warned_size = True
            logger.warning(
                "%s: a %dx%d frame for a graph that resizes from %dx%d: stretching it in Python first",
                self.info.source or "model", image.shape[1], image.shape[0], w, h,
            )
        first = stretch_info(image.shape[:2], (h, w))
        resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        return resized[None], then(first, self._source_rinfo)

    def postprocess(self, outputs: list[np.ndarray], rinfo: ResizeInfo, *, conf: float | None = None) -> Detections:
        """Decode raw outputs; a decoder that fails or yields confidences outside [0, 1] is a :class:`ModelError`."""
        params = self.params
        if conf is not None:
            params = replace(params, conf_threshold=float(conf))
        where = f"{self.info.source or 'model'} (family {self.info.family})"
        if self.nms_in_graph and params.conf_threshold < self.params.conf_threshold:
            raise ConfigError(f"{where}: conf {params.conf_threshold:g} is under {self.params.conf_threshold:g}, "
                              "the threshold its NMS in the graph was built with")
        try:
            dets = self.decoder.decode(outputs, rinfo, params)
        except OvqError as exc:
            raise ModelError(f"{where}: {exc}") from exc
        except Exception as exc:
            raise ModelError(f"{where}: decoding failed: {type(exc).__name__}: {exc}") from exc
        if own_family(self.decoder):  # finish() or FinalBoxes checked and filtered already
            return dets
        if not isinstance(dets, Detections):
            raise ModelError(f"{where}: the decoder returned {type(dets).__name__}, not Detections")
        if len(dets) and (dets.confidence.min() < 0 or dets.confidence.max() > 1 or np.isnan(dets.confidence).any()):
            raise ModelError(f"{where}: decoded confidences up to {dets.confidence.max():.3g} are not in [0, 1]")
        if params.classes is not None and len(dets):
            dets = dets[np.isin(dets.class_id, params.classes)]
        return dets

    @property
    def decodes_into_new_arrays(self) -> bool:
        """Whether decoding keeps no reference to the raw outputs (true of ovq's own families, which all end in
        :func:`~ovq.model.decoders.base.finish`), so a caller may reuse the output arrays after ``postprocess``."""
        return own_family(self.decoder)

    def outputs_of(self, request: ov.InferRequest) -> list[np.ndarray]:
        """The request's outputs, copied (the request overwrites its own on its next inference)."""
        return [request.get_output_tensor(i).data.copy() for i in range(len(self.compiled.outputs))]

    def output_views(self, request: ov.InferRequest) -> list[np.ndarray]:
        """The request's outputs where they are, no copy: valid until the request runs again."""
        # by index, not ``request.output_tensors``: that one throws and catches a C++ exception inside OpenVINO
        # on every call (14.8 vs 1.5 us a frame, one output, openvino 2026.4, EPYC Zen 5)
        return [request.get_output_tensor(i).data for i in range(len(self.compiled.outputs))]

    def __call__(self, image: np.ndarray, *, conf: float | None = None) -> Detections:
        tensor, rinfo = self.preprocess(image)
        if self._request is None:
            self._request = self.compiled.create_infer_request()
        self._request.infer({0: tensor})
        return self.postprocess(self.outputs_of(self._request), rinfo, conf=conf)

    def async_queue(self, jobs: int = 0, callback: Callable[[ov.InferRequest, Any], None] | None = None) -> InferQueue:
        """An :class:`~ovq.runtime.inference.InferQueue` over the compiled model (``jobs=0``: the device's optimal
        count); ``close()`` it when done, so no OpenVINO thread holds the callback at exit."""
        return InferQueue(self.compiled, jobs, callback)

    def completion_queue(self, jobs: int = 0, callback: Callable[[ov.InferRequest, Any], None] | None = None) -> WaitingQueue:
        """A :class:`~ovq.runtime.inference.WaitingQueue`: ``callback`` runs on a Python thread of its own, before the
        request is reused, so it may decode from :meth:`output_views` (no copy) without holding up OpenVINO."""
        return WaitingQueue(self.compiled, jobs, callback)
