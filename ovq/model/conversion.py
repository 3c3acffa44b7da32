"""Turn a source model (ONNX, IR, Ultralytics .pt) into ovq's self-describing IR.

The compiled model takes a u8 BGR NHWC image of the model's static input size; colour order, scale,
mean/std and layout of the source model happen inside the graph (OpenVINO's PrePostProcessor).
Resizing (letterbox or plain) happens once in Python, and its exact inverse maps boxes back.
The family (how outputs decode) and the class names are decided here, from the model itself
(:mod:`ovq.model.identify`), and stored in the IR with everything else a later step needs.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import openvino as ov
from openvino.preprocess import ColorFormat, PrePostProcessor

from ovq.core.errors import ConfigError, ModelError, unknown_key_message
from ovq.core.fileio import atomic_output_dir, check_output_dir
from ovq.core.metadata import ModelInfo, read_info, write_info
from ovq.model.decoders import SourcePreprocessing, get_decoder
from ovq.model.decoders.base import check_thresholds, nms_options_refused
from ovq.model.detection_list import pad_detection_list
from ovq.model.exporter import ExporterMetadata, read_exporter_metadata
from ovq.model.identify import EXPORTER_KEY, GRAPH_KEY, choose_family, choose_labels, facts_of, graph_said
from ovq.model.paths import MODEL_XML, SOURCE_SUFFIXES, refuse_replacing_source, refuse_urls, resolve_model_path
from ovq.model.raw_head import drop_raw_head_outputs
from ovq.runtime.compilation import first_line, new_core, read_model, write_model
from ovq.runtime.external_data import data_files, external_data_message

logger = logging.getLogger(__name__)

DEFAULT_IMGSZ = 640
__all__ = ["MODEL_XML", "SOURCE_SUFFIXES", "convert", "embed_preprocessing", "prepare", "resolve_model_path", "save"]


def prepare(
    src: str | Path,
    *,
    imgsz: int | tuple[int, int] | None = None,
    family: str | None = None,
    labels: list[str] | None = None,
    preprocessing: SourcePreprocessing | Mapping[str, Any] | None = None,
    conf_threshold: float | None = None,
    iou_threshold: float | None = None,
    agnostic_nms: bool | None = None,
    core: ov.Core | None = None,
) -> tuple[ov.Model, ModelInfo]:
    """Load any supported model and return an ovq model (preprocessing in the graph) and its info.

    ``preprocessing`` is the source network's whole input convention, or a mapping of the fields of
    :class:`SourcePreprocessing` to change in its family's (``{"resize": "stretch"}`` keeps the family's colour
    order and scale). An ovq IR is returned as it is (with ``labels``/thresholds overridden when given; its
    preprocessing is in its graph and cannot change). Nothing is written.
    """
    check_thresholds(conf_threshold, iou_threshold)
    if imgsz is not None:
        _as_hw(imgsz)  # 0 or -3 reached OpenVINO's reshape: "Kernel after dilation has size ... larger than ..."
    if isinstance(preprocessing, Mapping):
        known = {f.name for f in fields(SourcePreprocessing)}
        for key in preprocessing:
            if key not in known:
                raise ConfigError(unknown_key_message(key, known, where="preprocessing"))
        replace(SourcePreprocessing(), **preprocessing)  # each value checked now, before any conversion
    core = core or new_core()
    path = resolve_model_path(src)
    suffix = path.suffix.lower()
    if suffix == ".xml":
        model = read_model(path, core)
        info = read_info(model, path)
        if info is not None:
            if preprocessing:
                raise ModelError(
                    f"{path}: already converted (its preprocessing is in the graph); convert the original model "
                    f"to change {', '.join(_changed(preprocessing))}"
                )
            return model, _override(model, info, path, imgsz=imgsz, family=family, labels=labels,
                                    conf=conf_threshold, iou=iou_threshold, agnostic=agnostic_nms)
        meta = read_exporter_metadata(model, path)
    elif suffix == ".onnx":
        model = _convert_onnx(path)
        meta = read_exporter_metadata(model, path)
    else:
        from ovq.model.ultralytics import export_pt

        model, meta = export_pt(path, list(_as_hw(imgsz)) if imgsz is not None else DEFAULT_IMGSZ)
    return _build(
        model, path, imgsz=imgsz, family=family, labels=labels, preprocessing=preprocessing,
        conf=conf_threshold, iou=iou_threshold, agnostic=bool(agnostic_nms), meta=meta,
    )


def convert(
    src: str | Path,
    out_dir: str | Path,
    *,
    imgsz: int | tuple[int, int] | None = None,
    fp16: bool = False,
    family: str | None = None,
    labels: list[str] | None = None,
    preprocessing: SourcePreprocessing | Mapping[str, Any] | None = None,
    conf_threshold: float | None = None,
    iou_threshold: float | None = None,
    agnostic_nms: bool | None = None,
) -> Path:
    """Convert ``src`` and write ``out_dir/model.xml`` + ``.bin``; returns the ``.xml`` path.

    Weights are stored in FP32 unless ``fp16``. ``family`` is checked against the model's outputs (when
    not given, exactly one family must fit them). ``labels`` overrides the class names the model carries.
    ``agnostic_nms`` stores class-agnostic NMS as the model's default (for scenes where objects of different
    classes do not overlap, e.g. parts on a belt). Nothing is written when anything fails; whether ``out_dir``
    can take the model (a folder, writable, with room for about the size of the source's weights, not the source
    model's own files) is checked before converting.
    """
    refuse_urls([src], "convert reads a model's files; give a model folder, .xml, .onnx or .pt (a served model's files "
                       "are on its server: convert them there)")
    refuse_replacing_source(src, out_dir, held="the model being converted", by="the converted model")
    check_output_dir(out_dir, need_bytes=output_estimate(src, fp16=fp16))
    model, info = prepare(
        src, imgsz=imgsz, family=family, labels=labels, preprocessing=preprocessing,
        conf_threshold=conf_threshold, iou_threshold=iou_threshold, agnostic_nms=agnostic_nms,
    )
    write_info(model, info)
    return save(model, out_dir, fp16=fp16)


def save(model: ov.Model, out_dir: str | Path, *, fp16: bool = False, extra_files: dict[str, str] | None = None) -> Path:
    """Save ``model`` as ``out_dir/model.xml`` atomically (plus optional text files beside it).

    A failed write (a full disk) raises :class:`~ovq.core.errors.OutputError` naming ``out_dir`` and leaves it as
    it was.
    """
    with atomic_output_dir(out_dir) as tmp:
        write_model(model, tmp / MODEL_XML, fp16=fp16)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
    return Path(out_dir) / MODEL_XML


def output_estimate(src: str | Path, *, fp16: bool = False) -> int:
    """Bytes the converted model of ``src`` will take, about: its weights (halved for FP16) plus the graph. An ONNX
    model's weights may be in files beside it (the dynamo exporter's ``NAME.onnx.data``): they count."""
    path = resolve_model_path(src)
    weights = [path.with_suffix(".bin")] if path.suffix == ".xml" else [path, *data_files(path)]
    size = sum(f.stat().st_size for f in weights if f.exists())
    return (size // 2 if fp16 else size) + 1_000_000


# --- internals --------------------------------------------------------------------------------


def _pixels(n: Any) -> bool:
    return isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1


def _as_hw(imgsz: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """(height, width) of ``imgsz`` (N or (H, W)); :class:`ConfigError` unless whole numbers of at least 1."""
    sizes = [imgsz] if _pixels(imgsz) else list(imgsz) if isinstance(imgsz, (tuple, list)) else None
    if not sizes or len(sizes) > 2 or not all(_pixels(n) for n in sizes):
        raise ConfigError(f"imgsz {imgsz!r}: expected an input size in pixels, N (square) or (H, W), each at least 1")
    return (int(sizes[0]), int(sizes[-1]))


def _changed(preprocessing: SourcePreprocessing | Mapping[str, Any]) -> list[str]:
    return list(preprocessing) if isinstance(preprocessing, Mapping) else ["its preprocessing"]


def _override(model: ov.Model, info: ModelInfo, path: Path, *, imgsz, family, labels, conf, iou, agnostic) -> ModelInfo:
    """An ovq IR's info with new labels or thresholds; its input size and family are fixed by its graph."""
    if imgsz is not None and _as_hw(imgsz) != tuple(info.input_size):
        raise ModelError(
            f"{path}: already converted for input {info.input_size[0]}x{info.input_size[1]}; "
            "convert the original model to change the input size"
        )
    if family and family != info.family:
        raise ModelError(
            f"{path}: already converted as family '{info.family}' (its preprocessing is in the graph); "
            f"convert the original model to use --family {family}"
        )
    changes: dict[str, Any] = {}
    decoder = get_decoder(info.family)
    nms_options_refused(info.family, decoder, iou=iou, agnostic=agnostic)
    if labels:
        nc = decoder.num_classes(facts_of(model, info.input_size, info.extra.get(EXPORTER_KEY, {})))
        if nc is not None and len(labels) != nc:
            raise ModelError(f"{path}: --labels names {len(labels)} classes but the outputs have {nc}")
        changes["labels"] = list(labels)
    if conf is not None:
        changes["conf_threshold"] = float(conf)
    if iou is not None:
        changes["iou_threshold"] = float(iou)
    if agnostic is not None:
        changes["agnostic_nms"] = bool(agnostic)
    return replace(info, **changes) if changes else info


def _convert_onnx(path: Path) -> ov.Model:
    # convert_model (not read_model) runs OpenVINO's front-end transformations, e.g. fusing
    # Sigmoid*Mul into Swish: the graph NNCF later sees decides both INT8 accuracy and speed.
    from openvino.frontend import FrontEndManager

    if not FrontEndManager().load_by_framework("onnx").supported(str(path)):
        raise ModelError(f"{path}: not an ONNX model (the file does not parse as ONNX)")
    try:
        return ov.convert_model(str(path))
    except Exception as exc:  # noqa: BLE001 - the ONNX front end raises plain RuntimeErrors and others: one line
        why = external_data_message(path, str(exc)) or f"{path}: cannot read ONNX model: {first_line(exc)}"
        raise ModelError(why) from None


def _static_input(model: ov.Model, path: Path, imgsz: int | tuple[int, int] | None, meta: ExporterMetadata) -> tuple[int, int]:
    if len(model.inputs) != 1:
        raise ModelError(f"{path}: expected one image input, the model has {len(model.inputs)}")
    port = model.inputs[0]
    pshape = port.get_partial_shape()
    if pshape.rank.is_dynamic or pshape.rank.get_length() != 4:
        raise ModelError(f"{path}: expected a 4-D NCHW image input, got {pshape}")
    channels = pshape[1]
    if channels.is_static and channels.get_length() != 3:
        raise ModelError(f"{path}: expected 3 colour channels in NCHW input, got shape {pshape}")
    exported = pshape[2].is_static and pshape[3].is_static
    guessed = False
    if imgsz is not None:
        h, w = _as_hw(imgsz)
    elif exported:
        h, w = pshape[2].get_length(), pshape[3].get_length()
    elif meta.imgsz() is not None:
        h, w = meta.imgsz()
        logger.info("%s: input size is dynamic; using %dx%d, the size the exporter wrote", path, h, w)
    else:
        h, w = DEFAULT_IMGSZ, DEFAULT_IMGSZ
        guessed = True
        logger.info("%s: input size is dynamic; using %dx%d (set --imgsz to change)", path, h, w)
    target = ov.PartialShape([1, 3, h, w])
    if pshape != target:
        try:
            _reshape(model, h, w)
        except Exception as exc:  # noqa: BLE001 - OpenVINO's shape inference raises plain RuntimeErrors
            batch = pshape[0].get_length() if pshape[0].is_static else 1
            if batch != 1:  # e.g. Ultralytics' export(batch=4) writes the batch into the head's Reshape constants
                raise ModelError(f"{path}: the input has a fixed batch of {batch} and the graph cannot run one image "
                                 "at a time (ovq's unit); export it with batch 1 or a dynamic batch") from None
            logger.debug("%s: reshaping to %dx%d: %s", path, h, w, exc)
            raise ModelError(_reshape_failure(model, path, h, w, exc, pshape, guessed=guessed)) from None
    return h, w


def _reshape(model: ov.Model, h: int, w: int) -> None:
    port = model.inputs[0]
    target = ov.PartialShape([1, 3, h, w])
    model.reshape({port.any_name: target} if port.names else target)


def _reshapes(model: ov.Model, h: int, w: int) -> bool:
    try:
        _reshape(model, h, w)
    except Exception:  # noqa: BLE001 - OpenVINO's shape inference raises plain RuntimeErrors
        return False
    return True


def _reshape_failure(model: ov.Model, path: Path, h: int, w: int, exc: Exception, exported: ov.PartialShape, *,
                     guessed: bool = False) -> str:
    """One line for a model that OpenVINO cannot reshape to ``h`` x ``w``, where OpenVINO's message names a node deep
    in the graph and was cut at 300 characters, mid-word. A size off the model's largest stride (YOLOX-Nano at 417:
    its 2x2 Focus slices and upsampled feature maps no longer line up) is said so when the multiples on either side
    reshape (tried on ``model``, which is left at one of them). Else, for a model ``exported`` at a fixed size
    (Ultralytics' static export: its DFL Reshape holds the cell count; FastestDet's Reshape constants fix 352x352),
    to export it again; for a dynamic one at ovq's ``guessed`` default size, to pass --imgsz; else OpenVINO's
    reason, as the node and its last line."""
    import re

    port = model.inputs[0]
    what = f"{path}: cannot reshape input '{port.any_name}'" if port.names else f"{path}: cannot reshape the input"
    for stride in (32, 64):
        if h % stride == 0 and w % stride == 0:
            continue
        near = list(dict.fromkeys(((max(stride, h // stride * stride), max(stride, w // stride * stride)),
                                   (-(-h // stride) * stride, -(-w // stride) * stride))))
        if all(_reshapes(model, nh, nw) for nh, nw in near):
            fits = " and ".join(f"{nh}x{nw}" for nh, nw in near)
            return f"{what} to {h}x{w}: its sides must be multiples of {stride}, the model's largest stride ({fits} reshape)"
    if exported[2].is_static and exported[3].is_static:
        return (f"{path}: exported for input {exported[2]}x{exported[3]}, and its graph does not run at {h}x{w} "
                f"(sizes fixed at export); export it at {h}x{w}, or with a dynamic input size")
    if guessed:
        return (f"{path}: its input size is dynamic, but the graph does not run at {h}x{w}, ovq's default for a model "
                "that says no size; pass --imgsz with the size it was exported at")
    text = str(exc)
    node = re.search(r"While validating node '\w+::(\w+) .*?' with friendly_name '([^']*)'", text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    why = f"{node[1]} node '{node[2]}': {lines[-1].rstrip('.')}" if node else first_line(exc)
    return f"{what} to {h}x{w}: OpenVINO: {why}"


def _build(
    model: ov.Model,
    path: Path,
    *,
    imgsz,
    family: str | None,
    labels: list[str] | None,
    preprocessing: SourcePreprocessing | Mapping[str, Any] | None,
    conf: float | None,
    iou: float | None,
    agnostic: bool,
    meta: ExporterMetadata,
) -> tuple[ov.Model, ModelInfo]:
    if model.inputs and model.inputs[0].get_element_type() == ov.Type.u8:
        raise ModelError(f"{path}: input is already u8; is this an IR converted by another tool? convert its source")
    task = meta.values.get("task")
    if task not in (None, "detect"):
        raise ModelError(f"{path}: {meta.where['task']} says its task is '{task}'; ovq runs detection models ('detect')")
    h, w = _static_input(model, path, imgsz, meta)
    model = drop_raw_head_outputs(model, path) or model  # Ultralytics' .model exported by torch.onnx.export itself
    model = pad_detection_list(model) or model  # torchvision's boxes/scores/labels of data-dependent length
    if any(not o.get_partial_shape().is_static for o in model.outputs):
        raise ModelError(f"{path}: output shapes stay dynamic after fixing the input to {h}x{w}")
    facts = facts_of(model, (h, w), meta.values)
    family, decoder = choose_family(facts, family, str(path))
    nms_options_refused(family, decoder, iou=iou, agnostic=agnostic)
    if meta.exported_with_nms():
        _say_nms_inside(model, path)
    labels = choose_labels(decoder, facts, labels, meta, str(path))
    if preprocessing is None:
        preprocessing = decoder.preprocessing
    elif isinstance(preprocessing, Mapping):
        preprocessing = replace(decoder.preprocessing, **preprocessing)
    background_id = getattr(decoder, "background_id", None)  # a family whose labels count a background (ssd)
    info = ModelInfo(
        family=family,
        labels=list(labels),
        background_id=background_id(facts) if callable(background_id) else None,
        input_size=(h, w),
        resize=preprocessing.resize,
        pad_value=preprocessing.pad_value,
        letterbox_center=preprocessing.letterbox_center,
        conf_threshold=0.25 if conf is None else float(conf),
        iou_threshold=decoder.default_iou if iou is None else float(iou),
        agnostic_nms=agnostic,
        source=path.name,
        extra={
            "source_preprocessing": {
                "color": preprocessing.color,
                "mean": list(preprocessing.mean),
                "scale": list(preprocessing.scale),
            },
            EXPORTER_KEY: meta.kept(),
            GRAPH_KEY: graph_said(model),
        },
    )
    from ovq.model.graph import fuse_focus

    fuse_focus(model)
    model = embed_preprocessing(model, preprocessing)
    write_info(model, info)
    return model, info


def fixed_in_graph(model: ov.Model) -> tuple[float | None, float | None]:
    """The confidence threshold (floats Greater than a scalar) and NMS IoU threshold a graph applies, where it has
    them (Ultralytics' OpenVINO export also compares a shape's remainder with 0: integers, not scores)."""
    conf = iou = None
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "Greater" or (kind == "NonMaxSuppression" and op.get_input_size() > 3):
            value = op.input_value(1 if kind == "Greater" else 3)
            source = value.get_node()
            if (source.get_type_name() == "Constant" and source.get_data().size == 1
                    and value.get_element_type().is_real()):
                value = round(float(source.get_data().reshape(-1)[0]), 4)
                conf, iou = (value, iou) if kind == "Greater" else (conf, value)
    return conf, iou


def _say_nms_inside(model: ov.Model, path: Path) -> None:
    """Ultralytics' export(nms=True) thresholds (conf 0.25 unless given) and runs NMS (IoU 0.7) in the graph."""
    conf, iou = fixed_in_graph(model)
    logger.warning(
        "%s: Ultralytics exported it with nms=True: its graph drops detections under %s and runs its own NMS%s, "
        "so a lower --conf, --iou and --agnostic-nms change nothing, and mAP (at conf 0.001) reads low; export it "
        "with nms=False for ovq to threshold and NMS", path,
        f"conf {conf}" if conf is not None else "the conf it was exported with", f" at IoU {iou}" if iou else "",
    )


def embed_preprocessing(model: ov.Model, pre: SourcePreprocessing) -> ov.Model:
    """u8 BGR NHWC in; conversion to the source model's colour order, mean, scale and NCHW inside; float outputs
    out as f32 (a float16 ONNX's f16 ones too: the decoders and the graph's NMS compute in f32)."""
    ppp = PrePostProcessor(model)
    for i, out in enumerate(model.outputs):
        if out.get_element_type().is_real() and out.get_element_type() != ov.Type.f32:
            ppp.output(i).tensor().set_element_type(ov.Type.f32)
    inp = ppp.input(0)
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    inp.model().set_layout(ov.Layout("NCHW"))
    steps = inp.preprocess().convert_element_type(ov.Type.f32)
    if pre.color.upper() == "RGB":
        steps.convert_color(ColorFormat.RGB)
    elif pre.color.upper() != "BGR":
        raise ModelError(f"unknown colour order '{pre.color}'; expected RGB or BGR")
    if any(m != 0 for m in pre.mean):
        steps.mean(list(pre.mean))
    if any(s != 1 for s in pre.scale):
        steps.scale(list(pre.scale))
    return ppp.build()
