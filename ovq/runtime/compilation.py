"""A thin runtime layer: reading models, checking devices, compiling with the right settings."""

from __future__ import annotations

import errno
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openvino as ov

from ovq.core.errors import DeviceError, ModelError
from ovq.core.fileio import free_bytes, unreadable
from ovq.runtime import capabilities, devices
from ovq.runtime.external_data import external_data_message

logger = logging.getLogger(__name__)

PRECISIONS = ("default", "f32", "bf16", "f16")
HINTS = ("throughput", "latency", "cumulative_throughput")


def new_core() -> ov.Core:
    return ov.Core()


def default_cache_dir() -> Path:
    """Compiled-model cache folder: $OVQ_CACHE_DIR, else $XDG_CACHE_HOME/ovq/ov_cache, else ~/.cache/..."""
    if os.environ.get("OVQ_CACHE_DIR"):
        return Path(os.environ["OVQ_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ovq" / "ov_cache"


def check_device(device: str, core: ov.Core | None = None) -> devices.DeviceSpec:
    """Parse ``device`` and check it against ``core.available_devices`` (see :mod:`ovq.runtime.devices`).

    Raises :class:`DeviceError` naming the available devices when it is absent; returns the parsed spec.
    """
    core = core or new_core()
    return devices.check_device(device, list(core.available_devices))


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
        if why := unreadable(bin_path):  # OpenVINO: "cannot read model: Loading input model"
            raise ModelError(f"{bin_path}: {why}")
    core = core or new_core()
    try:
        return core.read_model(str(path))
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError (and others) with multi-line text
        raise ModelError(external_data_message(path, str(exc)) or f"{path}: cannot read model: {first_line(exc)}") from None


def write_model(model: ov.Model, xml: str | Path, *, fp16: bool = False) -> None:
    """``ov.save_model`` with a failed write raised as :class:`OSError` (ENOSPC when the disk is full), as any other
    file write fails: OpenVINO reports it as ``RuntimeError: basic_ios::clear: iostream error``."""
    try:
        ov.save_model(model, str(xml), compress_to_fp16=fp16)
    except RuntimeError as exc:
        if free_bytes(Path(xml).parent) < 1_000_000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from None
        raise OSError(errno.EIO, f"cannot write the model ({first_line(exc)})") from None


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


@dataclass
class CompilePlan:
    """What :func:`compile_model` passes to OpenVINO: the device string, the model and the config."""

    device: devices.DeviceSpec
    model: ov.Model | str | Path
    config: dict[str, Any]
    cache_dir: Path | None
    static_shapes: bool


def compile_plan(
    model: ov.Model | str | Path,
    device: str = "CPU",
    *,
    config: dict[str, Any] | None = None,
    core: ov.Core | None = None,
    cache: bool | str | Path = True,
    available: list[str] | None = None,
) -> CompilePlan:
    """Check ``device`` against ``available`` (default: ``core.available_devices``) and work out the compile.

    Nothing is compiled: this is the part of :func:`compile_model` that does not need the device itself, so it
    can be inspected (and tested) for devices this machine lacks by passing the ``available`` list of the
    target machine.
    """
    core = core or new_core()
    if available is None:
        available = list(core.available_devices)
    spec = devices.effective_device(devices.check_device(device, available), available)
    cfg = devices.device_config(spec, config)
    if "INFERENCE_PRECISION_HINT" in cfg:
        caps = {d: capabilities.device_capabilities(core, d) for d in spec.physical if d in available}
        capabilities.check_precision(spec, str(cfg["INFERENCE_PRECISION_HINT"]), caps)
    cache_dir = _cache_dir(cache) if "CACHE_DIR" not in cfg else Path(cfg["CACHE_DIR"])
    if cache_dir is not None:
        cfg["CACHE_DIR"] = str(cache_dir)
    static = devices.needs_static_shapes(spec, available)
    if static:
        if not isinstance(model, ov.Model):
            model = read_model(model, core)
        from ovq.core.metadata import read_info

        info = read_info(model)
        devices.make_static(model, input_size=info.input_size if info else None, device=spec.text)
    return CompilePlan(device=spec, model=model, config=cfg, cache_dir=cache_dir, static_shapes=static)


def compile_model(
    model: ov.Model | str | Path,
    device: str = "CPU",
    *,
    config: dict[str, Any] | None = None,
    core: ov.Core | None = None,
    cache: bool | str | Path = True,
) -> ov.CompiledModel:
    """Check the device, then compile. Errors become :class:`DeviceError`/:class:`ModelError`.

    ``cache``: ``True`` caches compiled models in :func:`default_cache_dir` (a second start skips
    compilation), a path caches there, ``False`` compiles every time. A cache folder that cannot be created
    is logged and compilation goes on without it. An NPU gets static input shapes (a dynamic batch becomes 1,
    dynamic height/width take the ovq model's input size; otherwise a clear :class:`ModelError`) and the
    LATENCY hint unless one is set (see :func:`compile_plan`).
    """
    core = core or new_core()
    plan = compile_plan(model, device, config=config, core=core, cache=cache)
    blobs_before = _blob_count(plan.cache_dir)
    start = time.perf_counter()
    try:
        target = str(plan.model) if isinstance(plan.model, Path) else plan.model
        compiled = core.compile_model(target, plan.device.text, plan.config)
    except Exception as exc:  # noqa: BLE001 - plugins raise RuntimeError and others: one line for the user
        raise DeviceError(f"cannot compile for {plan.device.text}: {first_line(exc)}") from None
    seconds = time.perf_counter() - start
    if plan.cache_dir is None:
        cached = "off"
    else:
        try:
            hit = bool(compiled.get_property("LOADED_FROM_CACHE"))
        except (RuntimeError, TypeError):  # a plugin without the property: did a new blob appear?
            hit = _blob_count(plan.cache_dir) <= blobs_before
        cached = "hit" if hit else "miss, cached now"
    logger.info("compiled for %s in %.2f s (model cache: %s)", plan.device.text, seconds, cached)
    return compiled


def _cache_dir(cache: bool | str | Path) -> Path | None:
    if cache is False or cache is None:
        return None
    path = default_cache_dir() if cache is True else Path(cache).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        logger.warning("compiled-model cache %s is not usable (%s); compiling without a cache", path, exc.strerror)
        return None
    if not os.access(path, os.W_OK):
        logger.warning("compiled-model cache %s is not writable; compiling without a cache", path)
        return None
    return path


def _blob_count(cache_dir: Path | None) -> int:
    if cache_dir is None:
        return 0
    try:
        return sum(1 for _ in cache_dir.glob("*.blob"))
    except OSError:
        return 0


def execution_precision(compiled: ov.CompiledModel) -> str:
    """The inference precision the device actually uses for float layers.

    For AUTO/MULTI/HETERO it is read from the devices they compiled for: ``bf16``, or ``CPU:bf16,GPU:f16``
    when the devices differ.
    """
    try:
        return _type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
    except (RuntimeError, TypeError):
        logger.debug("no INFERENCE_PRECISION_HINT on the compiled model; reading DEVICE_PROPERTIES")
    try:
        per_device = compiled.get_property("DEVICE_PROPERTIES")
        found = {name: _type_name(props["INFERENCE_PRECISION_HINT"]) for name, props in per_device.items()
                 if isinstance(props, dict) and "INFERENCE_PRECISION_HINT" in props}
    except (RuntimeError, TypeError):
        return "unknown"
    if not found:
        return "unknown"
    if len(set(found.values())) == 1:
        return next(iter(found.values()))
    return ",".join(f"{name}:{value}" for name, value in sorted(found.items()))


def _type_name(value: Any) -> str:
    try:
        return value.to_string()
    except AttributeError:
        return str(value).lower()
