"""Turn a source model (ONNX, IR, Ultralytics .pt) into ovq's self-describing IR.

The compiled model takes a u8 BGR NHWC image of the model's static input size; colour order, scale,
mean/std and layout of the source model happen inside the graph (OpenVINO's PrePostProcessor).
Resizing (letterbox or plain) happens once in Python, and its exact inverse maps boxes back.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import openvino as ov
from openvino.preprocess import ColorFormat, PrePostProcessor

from ovq.core.errors import DependencyError, ModelError, OutputError
from ovq.core.fileio import atomic_output_dir, check_output_dir, free_bytes
from ovq.core.labels import COCO80
from ovq.core.metadata import ModelInfo, read_info, read_ultralytics_rt_info, write_info
from ovq.model.decoders import SourcePreprocessing, get_decoder, infer_family
from ovq.runtime.compilation import first_line, new_core, read_model

logger = logging.getLogger(__name__)

MODEL_XML = "model.xml"
DEFAULT_IMGSZ = 640
SOURCE_SUFFIXES = (".xml", ".onnx", ".pt")


def resolve_model_path(src: str | Path) -> Path:
    """A model folder (with ``model.xml`` or one ``*.xml``), an ``.xml``, ``.onnx`` or ``.pt`` file."""
    path = Path(src)
    if not path.exists():
        raise ModelError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / MODEL_XML).exists():
            return path / MODEL_XML
        xmls = sorted(path.glob("*.xml"))
        if len(xmls) == 1:
            return xmls[0]
        if not xmls:
            raise ModelError(f"{path}: folder holds no model (.xml) file")
        raise ModelError(f"{path}: folder holds several .xml files; name one of {', '.join(x.name for x in xmls)}")
    if path.suffix.lower() not in SOURCE_SUFFIXES:
        raise ModelError(f"{path}: unsupported model file type '{path.suffix}'; expected .xml, .onnx or .pt")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: file is empty")
    return path


def prepare(
    src: str | Path,
    *,
    imgsz: int | tuple[int, int] | None = None,
    family: str | None = None,
    labels: list[str] | None = None,
    preprocessing: SourcePreprocessing | None = None,
    conf_threshold: float | None = None,
    iou_threshold: float | None = None,
    agnostic_nms: bool | None = None,
    core: ov.Core | None = None,
) -> tuple[ov.Model, ModelInfo]:
    """Load any supported model and return an ovq model (preprocessing in the graph) and its info.

    An ovq IR is returned as it is. Nothing is written.
    """
    core = core or new_core()
    path = resolve_model_path(src)
    suffix = path.suffix.lower()
    if suffix == ".xml":
        model = read_model(path, core)
        info = read_info(model)
        if info is not None:
            if imgsz is not None and _as_hw(imgsz) != tuple(info.input_size):
                raise ModelError(
                    f"{path}: already converted for input {info.input_size[0]}x{info.input_size[1]}; "
                    "convert the original model to change the input size"
                )
            info = _override(info, family=family, labels=labels, conf=conf_threshold, iou=iou_threshold,
                             agnostic=agnostic_nms)
            return model, info
        hints = _ultralytics_hints(model, path)
    elif suffix == ".onnx":
        model = _convert_onnx(path)
        hints = {}
    else:
        model, hints = _from_ultralytics(path, imgsz)
    return _build(
        model, path, imgsz=imgsz, family=family, labels=labels, preprocessing=preprocessing,
        conf=conf_threshold, iou=iou_threshold, agnostic=bool(agnostic_nms), hints=hints,
    )


def convert(
    src: str | Path,
    out_dir: str | Path,
    *,
    imgsz: int | tuple[int, int] | None = None,
    fp16: bool = False,
    family: str | None = None,
    labels: list[str] | None = None,
    preprocessing: SourcePreprocessing | None = None,
    conf_threshold: float | None = None,
    iou_threshold: float | None = None,
    agnostic_nms: bool | None = None,
) -> Path:
    """Convert ``src`` and write ``out_dir/model.xml`` + ``.bin``; returns the ``.xml`` path.

    Weights are stored in FP32 unless ``fp16``. ``agnostic_nms`` stores class-agnostic NMS as the
    model's default (for scenes where objects of different classes do not overlap, e.g. parts on a belt).
    Nothing is written when anything fails; whether ``out_dir`` can take the model (a folder, writable, with
    room for about the size of the source's weights) is checked before converting.
    """
    check_output_dir(out_dir, need_bytes=output_estimate(src, fp16=fp16))
    model, info = prepare(
        src, imgsz=imgsz, family=family, labels=labels, preprocessing=preprocessing,
        conf_threshold=conf_threshold, iou_threshold=iou_threshold, agnostic_nms=agnostic_nms,
    )
    write_info(model, info)
    return save(model, out_dir, fp16=fp16)


def save(model: ov.Model, out_dir: str | Path, *, fp16: bool = False, extra_files: dict[str, str] | None = None) -> Path:
    """Save ``model`` as ``out_dir/model.xml`` atomically (plus optional text files beside it).

    A failed write (OpenVINO reports a full disk as ``RuntimeError: basic_ios::clear: iostream error``) raises
    :class:`~ovq.core.errors.OutputError` naming ``out_dir`` and leaves it as it was.
    """
    with atomic_output_dir(out_dir) as tmp:
        try:
            ov.save_model(model, str(tmp / MODEL_XML), compress_to_fp16=fp16)
        except RuntimeError as exc:
            free = free_bytes(tmp)
            why = "no space left on the device" if free < 1_000_000 else f"the write failed ({first_line(exc)})"
            raise OutputError(f"{out_dir}: cannot save the model: {why}; nothing was written") from None
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
    return Path(out_dir) / MODEL_XML


def output_estimate(src: str | Path, *, fp16: bool = False) -> int:
    """Bytes the converted model of ``src`` will take, about: its weights (halved for FP16) plus the graph."""
    path = resolve_model_path(src)
    weights = path.with_suffix(".bin") if path.suffix == ".xml" else path
    size = weights.stat().st_size if weights.exists() else 0
    return (size // 2 if fp16 else size) + 1_000_000


# --- internals --------------------------------------------------------------------------------


def _as_hw(imgsz: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(imgsz, int):
        return (imgsz, imgsz)
    h, w = imgsz
    return (int(h), int(w))


def _override(info: ModelInfo, *, family, labels, conf, iou, agnostic=None) -> ModelInfo:
    changes: dict[str, Any] = {}
    if family:
        get_decoder(family)
        changes["family"] = family
    if labels:
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
        raise ModelError(f"{path}: cannot read ONNX model: {first_line(exc)}") from None


def _ultralytics_hints(model: ov.Model, path: Path) -> dict[str, Any]:
    hints = read_ultralytics_rt_info(model)
    meta = path.parent / "metadata.yaml"
    if meta.exists():
        import yaml

        try:
            data = yaml.safe_load(meta.read_text()) or {}
        except yaml.YAMLError:
            data = {}
        names = data.get("names")
        if isinstance(names, dict):
            hints["names"] = [str(names[k]) for k in sorted(names)]
        if data.get("imgsz"):
            hints["imgsz"] = data["imgsz"]
    return hints


def _from_ultralytics(path: Path, imgsz: int | tuple[int, int] | None) -> tuple[ov.Model, dict[str, Any]]:
    try:
        from ultralytics import YOLO
    except ImportError:
        raise DependencyError(
            f"{path}: converting .pt files needs Ultralytics; install it with: pip install 'ovq[ultralytics]'"
        ) from None
    logger.warning(
        "%s: loading through Ultralytics, which unpickles the file (only load .pt files you trust)", path
    )
    size = list(_as_hw(imgsz)) if imgsz is not None else DEFAULT_IMGSZ
    with tempfile.TemporaryDirectory(prefix="ovq-pt-") as tmp:
        local = Path(tmp) / path.name
        shutil.copyfile(path, local)  # Ultralytics exports beside the source; keep the source folder clean
        chatter = io.StringIO()
        try:
            with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter), _quiet("ultralytics"):
                yolo = YOLO(str(local), task="detect")
                names = [str(yolo.names[k]) for k in sorted(yolo.names)]
                head = yolo.model.model[-1]
                options: dict[str, Any] = {}
                if getattr(head, "one2one_cv2", None) is not None:
                    # YOLO26 / YOLOv10: export the NMS-free one-to-one head ([1, 300, 6]), the deploy mode
                    options["nms"] = False
                exported = yolo.export(
                    format="openvino", imgsz=size, dynamic=False, verbose=False, **options
                )
        except Exception as exc:  # noqa: BLE001 - Ultralytics raises anything from unpickling to export
            logger.debug("Ultralytics output:\n%s", chatter.getvalue())
            raise ModelError(f"{path}: Ultralytics could not load or export it: {first_line(exc)}") from None
        logger.debug("Ultralytics output:\n%s", chatter.getvalue())
        xml = resolve_model_path(exported)
        model = read_model(xml)
        hints = _ultralytics_hints(model, xml)
        hints["names"] = names
        hints["ultralytics"] = True
    return model, hints


@contextlib.contextmanager
def _quiet(name: str):
    """Hold a chatty library's logger at WARNING while it works."""
    lib_logger = logging.getLogger(name)
    level = lib_logger.level
    lib_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        lib_logger.setLevel(level)


def _static_input(model: ov.Model, path: Path, imgsz: int | tuple[int, int] | None, hints: dict[str, Any]) -> tuple[int, int]:
    if len(model.inputs) != 1:
        raise ModelError(f"{path}: expected one image input, the model has {len(model.inputs)}")
    port = model.inputs[0]
    pshape = port.get_partial_shape()
    if pshape.rank.is_dynamic or pshape.rank.get_length() != 4:
        raise ModelError(f"{path}: expected a 4-D NCHW image input, got {pshape}")
    channels = pshape[1]
    if channels.is_static and channels.get_length() != 3:
        raise ModelError(f"{path}: expected 3 colour channels in NCHW input, got shape {pshape}")
    if imgsz is not None:
        h, w = _as_hw(imgsz)
    elif pshape[2].is_static and pshape[3].is_static:
        h, w = pshape[2].get_length(), pshape[3].get_length()
    elif hints.get("imgsz"):
        h, w = _as_hw(hints["imgsz"])
    else:
        h, w = DEFAULT_IMGSZ, DEFAULT_IMGSZ
        logger.info("%s: input size is dynamic; using %dx%d (set --imgsz to change)", path, h, w)
    target = ov.PartialShape([1, 3, h, w])
    if pshape != target:
        try:
            model.reshape({port.any_name if port.names else 0: target} if port.names else target)
        except Exception as exc:  # noqa: BLE001 - OpenVINO's shape inference raises plain RuntimeErrors
            raise ModelError(f"{path}: cannot reshape input to {h}x{w}: {first_line(exc)}") from None
    return h, w


def _build(
    model: ov.Model,
    path: Path,
    *,
    imgsz,
    family: str | None,
    labels: list[str] | None,
    preprocessing: SourcePreprocessing | None,
    conf: float | None,
    iou: float | None,
    agnostic: bool,
    hints: dict[str, Any],
) -> tuple[ov.Model, ModelInfo]:
    if model.inputs and model.inputs[0].get_element_type() == ov.Type.u8:
        raise ModelError(f"{path}: input is already u8; is this an IR converted by another tool? convert its source")
    h, w = _static_input(model, path, imgsz, hints)
    out_shapes = [tuple(o.get_shape()) for o in model.outputs if o.get_partial_shape().is_static]
    if len(out_shapes) != len(model.outputs):
        raise ModelError(f"{path}: output shapes stay dynamic after fixing the input to {h}x{w}")
    if family is None:
        family = infer_family(out_shapes, (h, w))
        if family is None:
            raise ModelError(
                f"{path}: cannot tell the model family from its outputs {out_shapes}; pass --family"
            )
        logger.info("%s: decoder family '%s' inferred from output shapes %s", path, family, out_shapes)
    decoder = get_decoder(family)
    if preprocessing is None:
        preprocessing = decoder.preprocessing
    if labels is None:
        labels = hints.get("names") or _labels_from_hint(hints.get("labels"))
    if not labels:
        nc = decoder.num_classes(out_shapes)
        labels = list(COCO80) if nc == 80 else [f"class{i}" for i in range(nc or 0)]
    iou_default = decoder.default_iou
    info = ModelInfo(
        family=family,
        labels=list(labels),
        input_size=(h, w),
        resize=preprocessing.resize,
        pad_value=preprocessing.pad_value,
        letterbox_center=preprocessing.letterbox_center,
        conf_threshold=0.25 if conf is None else float(conf),
        iou_threshold=iou_default if iou is None else float(iou),
        agnostic_nms=agnostic,
        source=path.name,
        extra={
            "source_preprocessing": {
                "color": preprocessing.color,
                "mean": list(preprocessing.mean),
                "scale": list(preprocessing.scale),
            }
        },
    )
    from ovq.model.graph import fuse_focus

    fuse_focus(model)
    model = embed_preprocessing(model, preprocessing)
    write_info(model, info)
    return model, info


def _labels_from_hint(text: Any) -> list[str] | None:
    if not text:
        return None
    return [t for t in str(text).replace(",", " ").split() if t]


def embed_preprocessing(model: ov.Model, pre: SourcePreprocessing) -> ov.Model:
    """u8 BGR NHWC in; conversion to the source model's colour order, mean, scale and NCHW inside."""
    ppp = PrePostProcessor(model)
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
