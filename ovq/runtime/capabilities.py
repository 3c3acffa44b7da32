"""What OpenVINO reports about this machine's devices, and what it means for running detectors.

:func:`query_devices` is ``ovq devices``: every device with its full name, ``OPTIMIZATION_CAPABILITIES``,
default precision and plain-language notes (:func:`describe_device`). :func:`check_precision` rejects an
explicit ``--precision`` a named device cannot honour; :func:`machine_summary` is the one-line description of
the machine that benchmarks print.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import openvino as ov

from ovq.core.errors import DeviceError
from ovq.runtime import cpu
from ovq.runtime.devices import DeviceSpec, family_of

# Capabilities (OPTIMIZATION_CAPABILITIES) that matter for detectors, in the order they are shown.
KEY_CAPABILITIES = ("FP32", "BF16", "FP16", "INT8")


@dataclass
class DeviceInfo:
    """One device as OpenVINO reports it, and what its capabilities mean for running detectors."""

    name: str
    full_name: str
    device_type: str = ""
    architecture: str = ""
    capabilities: list[str] = field(default_factory=list)
    default_precision: str | None = None
    notes: list[str] = field(default_factory=list)

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities


@dataclass
class DevicesReport:
    """What ``ovq devices`` shows: the OpenVINO version and every device."""

    openvino_version: str
    devices: list[DeviceInfo]
    cache_dir: str = ""
    cache_writable: bool = False
    cpu_flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine_summary(core: ov.Core | None = None) -> str:
    """One line for benchmark output: CPU model, cores, INT8 kernels, the CPU's default precision for FP models."""
    core = core or ov.Core()
    default = _precision_name(_prop(core, "CPU", "INFERENCE_PRECISION_HINT")) if "CPU" in core.available_devices else None
    return (f"{cpu.cpu_model()}, {os.cpu_count()} cores, INT8 kernels: {cpu.int8_kernels()}, "
            f"FP models run in {default or 'n/a'} by default, OpenVINO {ov.get_version().split('-')[0]}")



def _prop(core: ov.Core, device: str, name: str) -> Any:
    try:
        return core.get_property(device, name)
    except (RuntimeError, TypeError):  # a property the plugin does not support (or cannot convert)
        return None


def _precision_name(value: Any) -> str | None:
    if value is None:
        return None
    try:
        text = value.to_string()
    except AttributeError:
        text = str(value)
    text = text.lower()
    return {"bfloat16": "bf16", "float16": "f16", "float32": "f32"}.get(text, text)


def describe_device(info: DeviceInfo, flags: Sequence[str] = ()) -> list[str]:
    """Plain-language notes on what a device's capabilities mean for the user."""
    fam = family_of(info.name)
    notes: list[str] = []
    flags = set(flags)
    if fam == "CPU":
        if info.default_precision == "bf16":
            unit = "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else "BF16"
            notes.append(
                f"{unit}: BF16 is the default for FP models: FP32/FP16 layers run in bf16 (faster, about 3 "
                "significant digits); use --precision f32 for exact FP32 results, e.g. to compare accuracy"
            )
        elif info.default_precision == "f16":
            notes.append("FP16 is the default for FP models on this CPU; use --precision f32 for exact FP32 results")
        elif info.default_precision:
            notes.append(f"FP models run in {info.default_precision} by default (no BF16 kernels on this CPU)")
        if info.has("INT8"):
            kernels = cpu.int8_kernels(sorted(flags))
            if kernels == "no-vnni":
                notes.append(
                    "INT8 without VNNI/AMX: products are summed in saturating 16-bit steps, so INT8 models need "
                    "NNCF's overflow fix on every layer (ovq quantize chooses it on this CPU; models quantized "
                    "on a CPU with VNNI can lose most of their accuracy here); smaller speed-up than newer CPUs"
                )
            else:
                unit = {"amx": "AMX-INT8", "vnni": "VNNI"}.get(kernels)
                extra = f" with {unit} kernels" if unit else ""
                notes.append(f"INT8: quantized models (ovq quantize) run{extra}; float layers left in them follow "
                             "the default precision above")
        if info.has("FP16"):
            notes.append("FP16: FP16-weight IRs load fine; --precision f16 runs float layers in f16")
    elif fam == "GPU":
        default = info.default_precision or "f16"
        notes.append(f"FP models run in {default} by default on the GPU; --precision f32 is exact but slower")
        if info.has("INT8"):
            notes.append("INT8: quantized models run with INT8 kernels")
        notes.append("first compile takes seconds; the compiled-model cache makes later starts fast")
    elif fam == "NPU":
        notes.append("NPU: needs a static-shape model (ovq models have one) and runs with the LATENCY hint")
        notes.append("first compile is slow; the compiled-model cache makes later starts fast")
        if info.has("INT8"):
            notes.append("INT8: quantized models run natively; FP models run in FP16")
    if "EXPORT_IMPORT" in info.capabilities:
        notes.append("compiled models can be cached (CACHE_DIR), so a second start skips compilation")
    return notes


def query_devices(core: ov.Core | None = None, *, cache_dir: Path | None = None) -> DevicesReport:
    """Every device OpenVINO sees, with its full name, capabilities, default precision and notes."""
    core = core or ov.Core()
    flags = cpu.cpu_flags()
    devices: list[DeviceInfo] = []
    for name in core.available_devices:
        caps = device_capabilities(core, name)
        dtype = _prop(core, name, "DEVICE_TYPE")
        info = DeviceInfo(
            name=name,
            full_name=str(_prop(core, name, "FULL_DEVICE_NAME") or name),
            device_type=(getattr(dtype, "name", None) or str(dtype or "")).lower(),
            architecture=str(_prop(core, name, "DEVICE_ARCHITECTURE") or ""),
            capabilities=caps,
            default_precision=_precision_name(_prop(core, name, "INFERENCE_PRECISION_HINT")),
        )
        info.notes = describe_device(info, flags if family_of(name) == "CPU" else ())
        devices.append(info)
    writable = False
    if cache_dir is not None:
        writable = _writable_dir(cache_dir)
    return DevicesReport(
        openvino_version=ov.get_version(),
        devices=devices,
        cache_dir=str(cache_dir or ""),
        cache_writable=writable,
        cpu_flags=flags,
    )


def _writable_dir(path: Path) -> bool:
    """Whether ``path`` exists (or could be created) and is writable, without creating it."""
    probe = Path(path)
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def device_capabilities(core: ov.Core, device: str) -> list[str]:
    """``OPTIMIZATION_CAPABILITIES`` of a physical device (empty when it is absent or does not say)."""
    return [str(c).upper() for c in (_prop(core, device, "OPTIMIZATION_CAPABILITIES") or [])]


def check_precision(spec: DeviceSpec, precision: str | None, capabilities: Mapping[str, Sequence[str]]) -> None:
    """Raise :class:`DeviceError` when a named device lacks the capability an explicit precision needs.

    ``capabilities`` maps device names to their ``OPTIMIZATION_CAPABILITIES`` (see
    :func:`device_capabilities`); devices missing from it are not checked. (``--precision bf16`` on a CPU
    without BF16 would otherwise be silently ignored by the plugin.)
    """
    need = {"bf16": "BF16", "f16": "FP16"}.get(str(precision or "").lower())
    if need is None:
        return
    for name in spec.physical:
        caps = [c.upper() for c in capabilities.get(name, ())]
        if caps and need not in caps:
            raise DeviceError(
                f"device '{name}' has no {need} support (capabilities: {', '.join(caps)}); "
                "choose another --precision"
            )
