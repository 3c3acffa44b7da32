"""A thin runtime layer: reading models, checking devices, compiling with the right settings."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import openvino as ov

from ovq.errors import DeviceError, ModelError

logger = logging.getLogger(__name__)

PRECISIONS = ("default", "f32", "bf16", "f16")
HINTS = ("throughput", "latency", "cumulative_throughput")
_VIRTUAL = ("AUTO", "MULTI", "HETERO", "BATCH")


def new_core() -> ov.Core:
    return ov.Core()


def default_cache_dir() -> Path:
    """Compiled-model cache folder: $OVQ_CACHE_DIR, else $XDG_CACHE_HOME/ovq/ov_cache, else ~/.cache/..."""
    if os.environ.get("OVQ_CACHE_DIR"):
        return Path(os.environ["OVQ_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ovq" / "ov_cache"


def physical_devices(device: str) -> list[str]:
    """The physical devices named by a device string: 'AUTO:GPU,CPU' -> ['GPU', 'CPU']."""
    device = device.strip()
    head, _, rest = device.partition(":")
    if head.upper() in _VIRTUAL:
        return [d.strip() for d in rest.split(",") if d.strip()] if rest else []
    return [device]


def check_device(device: str, core: ov.Core | None = None) -> None:
    """Raise :class:`DeviceError` naming the available devices when ``device`` is not present."""
    core = core or new_core()
    available = list(core.available_devices)
    if not device or not device.strip():
        raise DeviceError(f"empty device name; available: {', '.join(available)}")
    head = device.split(":")[0].upper()
    if head in _VIRTUAL:
        names = physical_devices(device)
    else:
        names = [device]
    for name in names:
        base = name.split(".")[0].upper()
        ok = name.upper() in (d.upper() for d in available) or (
            "." not in name and any(d.upper().split(".")[0] == base for d in available)
        )
        if not ok:
            raise DeviceError(
                f"device '{name}' is not available on this machine; available: {', '.join(available)}"
            )


def precision_config(precision: str | None) -> dict[str, str]:
    if precision in (None, "", "default"):
        return {}
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision '{precision}'; expected one of {', '.join(PRECISIONS)}")
    return {"INFERENCE_PRECISION_HINT": precision}


def hint_config(hint: str | None) -> dict[str, str]:
    if not hint:
        return {}
    if hint.lower() not in HINTS:
        raise DeviceError(f"unknown performance hint '{hint}'; expected one of {', '.join(HINTS)}")
    return {"PERFORMANCE_HINT": hint.upper()}


def read_model(path: str | Path, core: ov.Core | None = None) -> ov.Model:
    """Read an IR or ONNX file, turning OpenVINO's errors into one-line :class:`ModelError`."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if path.suffix == ".xml":
        check_ir_version(path)
        bin_path = path.with_suffix(".bin")
        if not bin_path.exists():
            raise ModelError(f"{path}: weights file {bin_path.name} is missing")
    core = core or new_core()
    try:
        return core.read_model(str(path))
    except Exception as exc:  # OpenVINO raises RuntimeError with multi-line text
        raise ModelError(f"{path}: cannot read model: {first_line(exc)}") from None


def check_ir_version(path: Path) -> None:
    """Reject IR files OpenVINO 2026 cannot read (IR v4..v9) before OpenVINO tries every front end on them."""
    import xml.etree.ElementTree as ET

    try:
        for _, elem in ET.iterparse(str(path), events=("start",)):
            version = elem.attrib.get("version")
            if elem.tag != "net":
                raise ModelError(f"{path}: not an OpenVINO IR file (root element <{elem.tag}>)")
            break
        else:
            raise ModelError(f"{path}: empty XML file")
    except ET.ParseError as exc:
        raise ModelError(f"{path}: not a valid IR .xml file ({exc})") from None
    if version is None or not version.isdigit():
        raise ModelError(f"{path}: IR file has no version attribute")
    if int(version) < 10:
        raise ModelError(
            f"{path}: legacy OpenVINO IR v{version}; this OpenVINO reads IR v10 and v11 only: "
            "convert the original model again with a current OpenVINO"
        )


def first_line(exc: BaseException) -> str:
    """The most telling single line of an OpenVINO/NNCF error message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    useful = [
        ln for ln in lines
        if not ln.lower().startswith(("check ", "exception from", "[ general_error ]", "traceback"))
        and not ln.startswith("/")
    ]
    if not useful:
        return lines[-1][:300]
    headers = [ln for ln in useful if ln.endswith(":")]
    body = [ln for ln in useful if not ln.endswith(":")]
    if headers and body:
        return f"{headers[0]} {body[0]}"[:300]
    return useful[0][:300]


def compile_model(
    model: ov.Model | str | Path,
    device: str = "CPU",
    *,
    config: dict[str, Any] | None = None,
    core: ov.Core | None = None,
    cache: bool = True,
) -> ov.CompiledModel:
    """Check the device, then compile. Errors become :class:`DeviceError`/:class:`ModelError`."""
    core = core or new_core()
    check_device(device, core)
    cfg = dict(config or {})
    if cache and "CACHE_DIR" not in cfg:
        cache_dir = default_cache_dir()
        cache_dir.mkdir(parents=True, exist_ok=True)
        cfg["CACHE_DIR"] = str(cache_dir)
    if any(d.upper().startswith("NPU") for d in physical_devices(device) or [device]):
        _check_static(model if isinstance(model, ov.Model) else None, device)
        cfg.setdefault("PERFORMANCE_HINT", "LATENCY")
    try:
        target = str(model) if isinstance(model, Path) else model
        return core.compile_model(target, device, cfg)
    except Exception as exc:
        raise DeviceError(f"cannot compile for {device}: {first_line(exc)}") from None


def _check_static(model: ov.Model | None, device: str) -> None:
    if model is None:
        return
    for port in model.inputs:
        if port.get_partial_shape().is_dynamic:
            raise ModelError(
                f"{device} needs static input shapes, but input '{port.any_name}' is "
                f"{port.get_partial_shape()}; convert with a fixed --imgsz"
            )


def execution_precision(compiled: ov.CompiledModel) -> str:
    """The inference precision the device actually uses for float layers."""
    try:
        value = compiled.get_property("INFERENCE_PRECISION_HINT")
    except Exception:
        return "unknown"
    try:
        return value.to_string()
    except AttributeError:
        return str(value).lower()
